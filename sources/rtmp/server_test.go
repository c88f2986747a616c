package rtmp

import (
	"context"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sinks/fmp4"
)

// clientPublish connects a gortmplib client that asks to publish at
// base#key and returns it (or the error of its publish command).
func clientPublish(ctx context.Context, t testing.TB, base, key string) (*gortmplib.Client, error) {
	t.Helper()
	u, err := url.Parse(base + "#" + key)
	if err != nil {
		t.Fatal(err)
	}
	c := &gortmplib.Client{URL: u, Publish: true}
	if err := c.Initialize(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// TestFFmpegPublish: ffmpeg publishes a generated H.264 + AAC clip (4 s,
// with B-frames, a keyframe every second) to the server; an fMP4 sink
// records the broadcast at live/test, and the recording decodes cleanly,
// has both streams, lasts about 4 s and starts at a keyframe. Meanwhile a
// second publisher on the same key is refused without disturbing the
// first, and when ffmpeg disconnects the broadcast ends.
func TestFFmpegPublish(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 40*time.Second)
	srv := startServer(t, Config{})

	sink := fmp4.New(fmp4.Config{Dir: t.TempDir(), Path: "live/test"})
	consumed := make(chan error, 1)
	go func() { consumed <- sdk.Consume(ctx, srv.origin, "live/test", sink, sdk.ConsumeOptions{}) }()

	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30",
		"-c:a", "aac", "-t", "4", "-f", "flv", srv.url+"/live/test")
	out := &testkit.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ffmpegDone := make(chan error, 1)
	go func() { ffmpegDone <- cmd.Wait() }()

	line := srv.log.WaitLog(t, 15*time.Second, "rtmp: publishing", "path=live/test")
	if !strings.Contains(line, "H.264, AAC") {
		t.Errorf("publishing line does not list H.264 and AAC: %s", line)
	}
	// ffmpeg announces its tracks in onMetaData: the analysis ends at
	// their sequence headers, not after 2 s of media.
	if !strings.Contains(line, "from_metadata=true") {
		t.Errorf("the track analysis was not cut short by the metadata: %s", line)
	}
	// A second publisher on the live path is refused.
	if c, err := clientPublish(ctx, t, srv.url+"/live", "test"); err == nil {
		c.Close()
		t.Error("a second publisher on live/test was accepted")
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: refused: a publisher is already live at this path", "remote=127.0.0.1:", "path=live/test")

	select {
	case err := <-ffmpegDone:
		if err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, out.String())
		}
	case <-ctx.Done():
		t.Fatal("ffmpeg did not finish")
	}
	select {
	case err := <-consumed:
		if err != nil {
			t.Fatalf("Consume: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the recording did not end after the publisher left")
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: publisher disconnected", "path=live/test")
	if live := srv.pub.Live(); len(live) != 0 {
		t.Errorf("still live after the publisher left: %v", live)
	}

	files := sink.Files()
	if len(files) != 1 {
		t.Fatalf("recorded %d files, want 1: %v", len(files), files)
	}
	f := files[0]
	if b, err := exec.Command("ffmpeg", "-v", "error", "-i", f, "-f", "null", "-").CombinedOutput(); err != nil || len(b) > 0 {
		t.Errorf("the recording does not decode cleanly: %v\n%s", err, b)
	}
	probe := func(args ...string) string {
		t.Helper()
		b, err := exec.Command("ffprobe", append(append([]string{"-v", "error"}, args...), f)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %v: %v\n%s", args, err, b)
		}
		return strings.TrimSpace(string(b))
	}
	if got := strings.Join(strings.Fields(probe("-show_entries", "stream=codec_name", "-of", "csv=p=0")), ","); got != "h264,aac" {
		t.Errorf("streams %q, want h264,aac", got)
	}
	d, err := strconv.ParseFloat(probe("-show_entries", "format=duration", "-of", "csv=p=0"), 64)
	if err != nil || d < 3.5 || d > 4.5 {
		t.Errorf("duration %v (%v), want about 4 s", d, err)
	}
	if first := strings.SplitN(probe("-select_streams", "v:0", "-show_entries", "packet=flags", "-of", "csv=p=0"), "\n", 2)[0]; !strings.HasPrefix(first, "K") {
		t.Errorf("the first video packet has flags %q, want a keyframe", first)
	}
	frames := probe("-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0")
	t.Logf("recorded %s: %.3f s, %s video frames", f, d, frames)
	if n, _ := strconv.Atoi(frames); n < 110 || n > 121 {
		t.Errorf("%s video frames, want about 120", frames)
	}
}

// TestRefusedKey: with Keys set, a publisher with another stream key is
// refused (its publish command fails), the refusal is logged with its
// address and its connection closed; an allowed key is accepted.
func TestRefusedKey(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	srv := startServer(t, Config{Keys: []string{"secret"}})

	if c, err := clientPublish(ctx, t, srv.url+"/live", "wrong"); err == nil {
		c.Close()
		t.Fatal("a wrong stream key was accepted")
	}
	line := srv.log.WaitLog(t, 5*time.Second, "rtmp: refused: stream key not allowed", "remote=127.0.0.1:")
	if strings.Contains(line, "wrong") {
		t.Errorf("the refusal logs the stream key: %s", line)
	}

	c, err := clientPublish(ctx, t, srv.url+"/live", "secret")
	if err != nil {
		t.Fatalf("the allowed key was refused: %v", err)
	}
	c.Close()
	srv.log.WaitLog(t, 5*time.Second, "path=live/secret")
}

// TestSecondPublisher: while a publisher holds live/a (its tracks not
// known yet), a second one on the same key is refused and one on another
// key is not.
func TestSecondPublisher(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	srv := startServer(t, Config{})
	first, err := clientPublish(ctx, t, srv.url+"/live", "a")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if c, err := clientPublish(ctx, t, srv.url+"/live", "a"); err == nil {
		c.Close()
		t.Fatal("a second publisher on live/a was accepted")
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: refused: a publisher is already live at this path", "path=live/a")
	other, err := clientPublish(ctx, t, srv.url+"/live", "b")
	if err != nil {
		t.Fatalf("a publisher on live/b was refused: %v", err)
	}
	other.Close()
}

// TestPlayRefused: a client that wants to play is refused.
func TestPlayRefused(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	srv := startServer(t, Config{})
	u, _ := url.Parse(srv.url + "/live#a")
	c := &gortmplib.Client{URL: u}
	if err := c.Initialize(ctx); err == nil {
		c.Close()
		t.Fatal("a player was accepted")
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: refused: playing is not supported")
}

// TestMaxConns: beyond MaxConns clients at once a connection is closed at
// once, with a log line, and a slot frees when a client goes.
func TestMaxConns(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	srv := startServer(t, Config{MaxConns: 2})
	held := fillSlots(t, srv, 2)
	srv.log.WaitLog(t, 5*time.Second, "rtmp: connection refused: the server serves its maximum of clients", "max_conns=2")
	for _, c := range held {
		_ = c.Close()
	}
	// Slots free again: a publisher gets in.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := clientPublish(ctx, t, srv.url+"/live", "after")
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after the clients left: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMaxConnsPerAddr: beyond MaxConnsPerAddr clients from one address a
// connection from it is closed at once, with a log line, while another
// address still gets in.
func TestMaxConnsPerAddr(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	srv := startServer(t, Config{MaxConns: 10, MaxConnsPerAddr: 2})
	for _, c := range fillSlots(t, srv, 2) {
		defer c.Close()
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: connection refused: its address has its maximum of clients", "max_conns_per_addr=2")

	// Another loopback address is another host.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	u, _ := url.Parse(srv.url + "/live#other")
	c := &gortmplib.Client{URL: u, Publish: true, DialContext: d.DialContext}
	if err := c.Initialize(ctx); err != nil {
		t.Fatalf("a publisher from 127.0.0.2 was refused: %v", err)
	}
	c.Close()
}

// fillSlots opens n connections from 127.0.0.1, waits until the server
// serves them all, and checks that one more is closed at once; it returns
// the n held connections.
func fillSlots(t *testing.T, srv *testServer, n int) []net.Conn {
	t.Helper()
	addr := srv.Addr().String()
	var held []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// The server takes a client's slot when it accepts the connection.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		srv.mu.Lock()
		served := srv.conns
		srv.mu.Unlock()
		if served == n || time.Now().After(deadline) {
			break
		}
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Errorf("connection %d was served", n+1)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("connection %d was left open", n+1)
	}
	return held
}

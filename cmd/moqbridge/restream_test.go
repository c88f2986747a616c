package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// TestRestream: `moqbridge serve`, `moqbridge publish --loop` of an fMP4
// clip (H.264 with B-frames, AAC) and `moqbridge restream --duration` to
// `ffmpeg -listen 1`, all separate processes. restream exits 0, ffmpeg
// writes an MP4 file whose two streams decode cleanly, start at a
// keyframe near 0 and have increasing decode times, and restream's log
// shows neither the stream key nor anything but what it did.
func TestRestream(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	startServe(t, ctx, port)
	startProcess(t, ctx, "publish", "--loop", "--broadcast", "test/restream",
		"../../sources/fmp4/testdata/h264_aac_bframes.mp4", url)

	rtmpPort := freePort(t)
	out := filepath.Join(t.TempDir(), "out.mp4")
	rcv := startReceiver(t, ctx, rtmpPort, out)
	rs := startProcess(t, ctx, "restream", "--duration", "6s", "--rtmp-reconnect-min", "100ms", "--rtmp-reconnect-max", "500ms",
		url, "test/restream", fmt.Sprintf("rtmp://127.0.0.1:%d/live/key", rtmpPort))
	if code := rs.wait(t, ctx, "restream"); code != 0 {
		t.Fatalf("restream exited %d:\n%s", code, rs.stderr.String())
	}
	rcv.wait(t, ctx, "ffmpeg")
	log := rs.stderr.String()
	if strings.Contains(log, "/live/key") {
		t.Errorf("the stream key is in the log:\n%s", log)
	}
	for _, want := range []string{"rtmp: publishing", "codecs=H.264,AAC", "flv=legacy", "restream: done"} {
		if !strings.Contains(log, want) {
			t.Errorf("restream log lacks %q:\n%s", want, log)
		}
	}

	if b, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-xerror", "-i", out, "-f", "null", "-").CombinedOutput(); err != nil || len(bytes.TrimSpace(b)) > 0 {
		t.Errorf("%s does not decode cleanly: %v\n%s", out, err, b)
	}
	b, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", out).CombinedOutput()
	if got := strings.Join(strings.Fields(string(b)), ","); err != nil || got != "h264,aac" {
		t.Errorf("streams %q (%v), want h264,aac", got, err)
	}
	for _, stream := range []string{"v:0", "a:0"} {
		dts := testkit.PacketTimes(t, ctx, out, stream)
		if len(dts) < 90 {
			t.Fatalf("%s: %d packets, want about 5 s", stream, len(dts))
		}
		if dts[0] > 0.2 {
			t.Errorf("%s starts at %.3f s, want near 0", stream, dts[0])
		}
		for i := 1; i < len(dts); i++ {
			if dts[i] <= dts[i-1] {
				t.Fatalf("%s packet %d: dts %.3f after %.3f", stream, i, dts[i], dts[i-1])
			}
		}
	}
	flags, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
		"-of", "csv=p=0", "-read_intervals", "%+#1", out).Output()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(flags)), "K") {
		t.Errorf("the first video packet is not a keyframe: %q (%v)", flags, err)
	}
}

// TestRestreamRefusesBadValues: bad RTMP URLs and flag values are refused
// before connecting, with a message that names the problem and never the
// stream key.
func TestRestreamRefusesBadValues(t *testing.T) {
	relay := "moql://127.0.0.1:9"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{relay, "live"},
			`moqbridge: restream needs URL, BROADCAST and RTMP_URL, got 2 arguments (see "moqbridge restream --help")`},
		{[]string{relay, "live", "http://example.com/live/key"},
			`moqbridge: rtmp: URL "http://example.com/live/<key>": the scheme must be rtmp:// or rtmps:// (RTMP_URL, e.g. rtmp://a.rtmp.youtube.com/live2/STREAM-KEY)`},
		{[]string{relay, "live", "rtmp://example.com/live"},
			`moqbridge: rtmp: URL "rtmp://example.com/live": want rtmp://HOST[:PORT]/APP/STREAM-KEY (RTMP_URL, e.g. rtmp://a.rtmp.youtube.com/live2/STREAM-KEY)`},
		{[]string{relay, "live", "rtmp:///live/key"},
			`moqbridge: rtmp: URL "rtmp:///live/<key>" has no host (RTMP_URL, e.g. rtmp://a.rtmp.youtube.com/live2/STREAM-KEY)`},
		{[]string{relay, "live", "rtmp://example.com:99999/live/key"},
			`moqbridge: rtmp: URL "rtmp://example.com:99999/live/<key>": port 99999 out of range (RTMP_URL, e.g. rtmp://a.rtmp.youtube.com/live2/STREAM-KEY)`},
		{[]string{"--rtmp-give-up", "-1s", relay, "live", "rtmp://example.com/live/key"},
			`moqbridge: --rtmp-give-up -1s: must not be negative (0 turns it off)`},
		{[]string{"--duration", "-2s", relay, "live", "rtmp://example.com/live/key"},
			`moqbridge: --duration -2s: must not be negative (0 turns it off)`},
		{[]string{"--rtmp-reconnect-min", "0", relay, "live", "rtmp://example.com/live/key"},
			`moqbridge: --rtmp-reconnect-min 0s and --rtmp-reconnect-max 10s: want 0 < min <= max`},
		{[]string{"--rtmp-reconnect-min", "2s", "--rtmp-reconnect-max", "1s", relay, "live", "rtmp://example.com/live/key"},
			`moqbridge: --rtmp-reconnect-min 2s and --rtmp-reconnect-max 1s: want 0 < min <= max`},
		{[]string{"localhost:4443", "live", "rtmp://example.com/live/key"},
			`moqbridge: "localhost:4443" is not a relay URL: use moql://HOST:PORT (QUIC), https://HOST:PORT/ (WebTransport), ws:// or wss:// (WebSocket), e.g. moql://localhost:4443, or http://localhost:4443/ for a development relay (moqbridge serve)`},
	} {
		wantError(t, tc.want, append([]string{"restream"}, tc.args...)...)
	}
}

// TestRestreamNothingSent: a relay whose broadcast never appears within
// --wait ends restream with an error, a restream that sent nothing before
// --duration says so, and one whose RTMP server stays unreachable for
// --rtmp-give-up exits with the reason.
func TestRestreamNothingSent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, url, fp := startRelay(t, ctx)
	code, _, stderr := runCLI(t, ctx, "restream", "--fingerprint", fp, "--wait", "1s", url, "test/none", "rtmp://127.0.0.1:9/live/key")
	if want := `moqbridge: broadcast "test/none" did not appear within --wait 1s`; code == 0 || strings.TrimSpace(stderr) != want {
		t.Errorf("exit %d, stderr %q, want %q", code, stderr, want)
	}

	publishClip(t, ctx, url, fp, "test/unreachable")
	code, _, stderr = runCLI(t, ctx, "restream", "--fingerprint", fp, "--duration", "3s", "--rtmp-reconnect-min", "100ms",
		url, "test/unreachable", "rtmp://127.0.0.1:9/live/key")
	if want := `moqbridge: nothing was sent to rtmp://127.0.0.1:9/live/<key>: the RTMP server did not take the broadcast (see the log)`; code == 0 || strings.TrimSpace(stderr) != want {
		t.Errorf("exit %d, stderr %q, want %q", code, stderr, want)
	}

	code, _, stderr = runCLI(t, ctx, "restream", "--fingerprint", fp, "--rtmp-give-up", "1s", "--rtmp-reconnect-min", "100ms",
		url, "test/unreachable", "rtmp://127.0.0.1:9/live/key")
	if prefix := `moqbridge: rtmp://127.0.0.1:9/live/<key>: rtmp: gave up reconnecting after `; code == 0 || !strings.HasPrefix(stderr, prefix) ||
		!strings.HasSuffix(stderr, "connection refused (--rtmp-give-up)\n") {
		t.Errorf("--rtmp-give-up: exit %d, stderr %q", code, stderr)
	}
}

// ffmpegReceiver is `ffmpeg -listen 1` copying what it receives into a
// file.
type ffmpegReceiver struct {
	out  testkit.LogBuffer
	done chan error
}

// startReceiver starts ffmpeg listening for rtmp://127.0.0.1:port/live/key.
func startReceiver(t *testing.T, ctx context.Context, port int, file string) *ffmpegReceiver {
	t.Helper()
	r := &ffmpegReceiver{done: make(chan error, 1)}
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-listen", "1", "-i", fmt.Sprintf("rtmp://127.0.0.1:%d/live/key", port), "-c", "copy", "-f", "mp4", "-y", file)
	cmd.Stdout, cmd.Stderr = &r.out, &r.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-r.done
		r.done <- err
	})
	return r
}

// wait waits for ffmpeg to exit and fails the test unless it exits 0.
func (r *ffmpegReceiver) wait(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, r.out.String())
		}
	case <-ctx.Done():
		t.Fatalf("%s did not exit", what)
	}
}

// TestRestreamRelayRestart: the relay restarts while restream runs. The
// lost broadcast ends the RTMP publish (ffmpeg closes its file), restream
// waits for the broadcast to come back through the reconnected relay and
// publishes again, to a new ffmpeg on the same port, from a keyframe.
func TestRestreamRelayRestart(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	relay := startServe(t, ctx, port)
	startProcess(t, ctx, "publish", "--loop", "--reconnect-max", "1s", "--broadcast", "test/restart",
		"../../sources/fmp4/testdata/h264_aac_bframes.mp4", url)
	rtmpPort := freePort(t)
	dir := t.TempDir()
	first := startReceiver(t, ctx, rtmpPort, filepath.Join(dir, "first.mp4"))
	rs := startProcess(t, ctx, "restream", "--reconnect-max", "1s", "--rtmp-reconnect-min", "100ms", "--rtmp-reconnect-max", "500ms",
		url, "test/restart", fmt.Sprintf("rtmp://127.0.0.1:%d/live/key", rtmpPort))
	waitFor(t, ctx, "the first publish", func() bool { return strings.Contains(rs.stderr.String(), "rtmp: publishing") })
	time.Sleep(2 * time.Second)

	relay.stop(t, syscall.SIGTERM)
	relay = startServe(t, ctx, port)
	first.wait(t, ctx, "the first ffmpeg, once the broadcast was lost")
	second := filepath.Join(dir, "second.mp4")
	rcv := startReceiver(t, ctx, rtmpPort, second)
	waitFor(t, ctx, "the second publish", func() bool { return strings.Count(rs.stderr.String(), "rtmp: publishing") >= 2 })
	time.Sleep(3 * time.Second)
	_ = rs.cmd.Process.Signal(os.Interrupt)
	if code := rs.wait(t, ctx, "restream"); code != 0 {
		t.Fatalf("restream exited %d:\n%s", code, rs.stderr.String())
	}
	rcv.wait(t, ctx, "the second ffmpeg")
	_ = relay
	if !strings.Contains(rs.stderr.String(), "lost the broadcast; waiting for it to come back") {
		t.Errorf("restream log:\n%s", rs.stderr.String())
	}
	for _, f := range []string{filepath.Join(dir, "first.mp4"), second} {
		if b, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-xerror", "-i", f, "-f", "null", "-").CombinedOutput(); err != nil || len(bytes.TrimSpace(b)) > 0 {
			t.Errorf("%s does not decode cleanly: %v\n%s", f, err, b)
		}
		if dts := testkit.PacketTimes(t, ctx, f, "v:0"); len(dts) < 45 || dts[0] > 0.2 {
			t.Errorf("%s: %d video packets from %v s", f, len(dts), dts[:min(1, len(dts))])
		}
	}
}

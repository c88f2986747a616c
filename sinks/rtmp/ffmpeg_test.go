package rtmp

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testclip"
	"github.com/moqbridge/moqbridge/internal/testkit"
)

// receiver is `ffmpeg -listen 1` receiving one RTMP publish into an MP4
// file (stream copy). ffmpeg 5.1 reads legacy FLV only.
type receiver struct {
	cmd  *exec.Cmd
	file string
	out  bytes.Buffer
	done chan error
}

// startReceiver starts ffmpeg listening on port for rtmp://…/live/x.
func startReceiver(t testing.TB, port int, file string) *receiver {
	t.Helper()
	r := &receiver{file: file, done: make(chan error, 1)}
	r.cmd = exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-listen", "1", "-i", fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port),
		"-c", "copy", "-f", "mp4", "-y", file)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		err := <-r.done
		r.done <- err
	})
	return r
}

// wait waits for ffmpeg to exit and returns its error.
func (r *receiver) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("ffmpeg did not exit within %v; output:\n%s", d, r.out.String())
		return nil
	}
}

// kill ends ffmpeg with SIGKILL, as a server that vanishes.
func (r *receiver) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	err := <-r.done
	r.done <- err
}

// fileSize returns the size of a file, 0 if it is missing.
func fileSize(name string) int64 {
	st, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return st.Size()
}

// TestFFmpegReceives restreams H.264 with B-frames and AAC (an fMP4 clip
// published in real time, looped) to ffmpeg, which copies it into an MP4
// file: the file passes the checks of check-fmp4.sh on both streams, with
// sensible packet counts, and the sink's log says what it did.
func TestFFmpegReceives(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 60*time.Second)
	origin := testclip.Publish(t, testclip.Path("h264_aac_bframes.mp4"), "live/x")
	port := freePort(t)
	out := filepath.Join(t.TempDir(), "out.mp4")
	rcv := startReceiver(t, port, out)
	lb := &testkit.LogBuffer{}
	sink := newSink(t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port), lb, Config{})
	stop := testclip.RunSink(t, origin, "live/x", sink)
	lb.WaitLogContext(t, ctx, "rtmp: publishing", "codecs=H.264,AAC", "flv=legacy")
	time.Sleep(4 * time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := rcv.wait(t, 10*time.Second); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, rcv.out.String())
	}
	v := checkFile(t, out, "v:0")
	a := checkFile(t, out, "a:0")
	st := sink.Stats()
	t.Logf("video %+v, audio %+v, stats %+v", v, a, st)
	// About 4 s at 30 fps, GOPs of 0.5 s; AAC at 48 kHz is 47 frames/s.
	if v.Packets < 90 || v.Keyframes < 6 || v.Decoded < 90 {
		t.Errorf("video: %+v, want about 4 s at 30 fps", v)
	}
	if a.Packets < 120 {
		t.Errorf("audio: %+v, want about 4 s of AAC", a)
	}
	if st.Connections != 1 || st.Frames < uint64(v.Packets+a.Packets) || st.DroppedGOPs != 0 {
		t.Errorf("stats %+v", st)
	}
	if strings.Contains(lb.String(), "/live/x") || !strings.Contains(lb.String(), "rtmp=rtmp://127.0.0.1:"+strconv.Itoa(port)+"/live/<key>") {
		t.Errorf("the log does not show the URL with the stream key hidden:\n%s", lb.String())
	}
}

// TestReconnectAfterReceiverKilled: ffmpeg is killed mid-stream and a new
// one listens on the same port; the sink reconnects by itself, and the
// second file starts at a keyframe and decodes cleanly.
func TestReconnectAfterReceiverKilled(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 90*time.Second)
	origin := testclip.Publish(t, testclip.Path("h264_aac_bframes.mp4"), "live/x")
	port := freePort(t)
	dir := t.TempDir()
	first := startReceiver(t, port, filepath.Join(dir, "first.mp4"))
	lb := &testkit.LogBuffer{}
	sink := newSink(t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port), lb, Config{WriteTimeout: 2 * time.Second})
	stop := testclip.RunSink(t, origin, "live/x", sink)
	lb.WaitLogContext(t, ctx, "rtmp: publishing")
	time.Sleep(2 * time.Second)
	first.kill()
	lb.WaitLogContext(t, ctx, "rtmp: connection lost; reconnecting")

	second := filepath.Join(dir, "second.mp4")
	rcv := startReceiver(t, port, second)
	lb.WaitLogContext(t, ctx, "rtmp: reconnected; publishing from a keyframe")
	time.Sleep(3 * time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := rcv.wait(t, 10*time.Second); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, rcv.out.String())
	}
	v := checkFile(t, second, "v:0")
	a := checkFile(t, second, "a:0")
	st := sink.Stats()
	t.Logf("second file: video %+v, audio %+v; stats %+v", v, a, st)
	if v.Packets < 60 || a.Packets < 90 {
		t.Errorf("second file: video %+v, audio %+v, want about 3 s", v, a)
	}
	if st.Connections != 2 {
		t.Errorf("stats %+v, want 2 connections", st)
	}
	// The second connection's timestamps start near 0 again.
	if dts := testkit.PacketTimes(t, ctx, second, "v:0"); len(dts) == 0 || dts[0] > 0.2 {
		t.Errorf("second file starts at %v s", dts[:min(len(dts), 1)])
	}
}

// checkFile runs the checks of check-fmp4.sh on one stream of f. ffmpeg
// writes every packet's duration into the MP4 files it receives over
// RTMP, so a missing one is an error here too.
func checkFile(t testing.TB, f, stream string) testkit.FMP4Check {
	t.Helper()
	res := testkit.CheckFMP4(t, f, stream)
	if res.NoDuration > 0 {
		t.Errorf("%s %s: %d packets without a duration", f, stream, res.NoDuration)
	}
	return res
}

package rtp

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testclip"
	"github.com/moqbridge/moqbridge/internal/testkit"
)

// TestFFmpegReadsSDP: a clip published in real time goes through the sink
// to ffmpeg, which opens the SDP file the sink wrote
// (-protocol_whitelist file,udp,rtp -i out.sdp) and copies three seconds
// into a Matroska file: ffmpeg reports no error, and the file has both
// streams, starting at a keyframe, and decodes cleanly.
func TestFFmpegReadsSDP(t *testing.T) {
	testkit.NeedFFmpeg(t)
	for _, tc := range []struct {
		clip, codecs string
		decode       bool
	}{
		{"h264_opus.mp4", "h264,opus", false},
		// RTP carries no decode times, so ffmpeg copies no H.264 with
		// B-frames from RTP ("Can't write packet with unknown
		// timestamp"); it decodes them, and a decode error would show.
		{"h264_aac_bframes.mp4", "h264,aac", true},
	} {
		t.Run(strings.TrimSuffix(tc.clip, ".mp4"), func(t *testing.T) {
			ctx := testkit.Context(t, 60*time.Second)
			dir := t.TempDir()
			out := filepath.Join(dir, "out.mkv")
			origin := testclip.Publish(t, testclip.Path(tc.clip), "live/in")
			port := testkit.FreeUDPPorts(t, 4)
			ff := &ffmpegReader{done: make(chan error, 1)}
			lb := &testkit.LogBuffer{}
			sink := newSink(t, lb, Config{Dest: fmt.Sprintf("127.0.0.1:%d", port), SDPFile: filepath.Join(dir, "out.sdp"),
				OnSDP: func([]byte) { ff.start(t, ctx, filepath.Join(dir, "out.sdp"), out, port, tc.decode) }})
			stop := testclip.RunSink(t, origin, "live/in", sink)
			ff.wait(t, ctx)
			if err := stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
			if st := sink.Stats(); st.SenderReports < 3 || st.Frames < 100 {
				t.Errorf("sink stats %+v", st)
			}
			judgeRecording(t, ctx, out, tc.codecs, 2.5)
		})
	}
}

// judgeRecording checks that file has the streams codecs (in order), of
// at least seconds each, the video starting at a keyframe, and that it
// decodes with no error.
func judgeRecording(t *testing.T, ctx context.Context, file, codecs string, seconds float64) {
	t.Helper()
	b, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", file).CombinedOutput()
	if got := strings.Join(strings.Fields(string(b)), ","); err != nil || got != codecs {
		t.Fatalf("streams %q (%v), want %s", got, err, codecs)
	}
	if b, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-xerror", "-i", file, "-f", "null", "-").CombinedOutput(); err != nil || len(bytes.TrimSpace(b)) > 0 {
		t.Errorf("%s does not decode cleanly: %v\n%s", file, err, b)
	}
	for _, stream := range []string{"v:0", "a:0"} {
		dts := testkit.PacketTimes(t, ctx, file, stream)
		if len(dts) < 2 || dts[len(dts)-1]-dts[0] < seconds {
			t.Errorf("%s: %d packets, want %.1f s", stream, len(dts), seconds)
		}
	}
	flags, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
		"-of", "csv=p=0", "-read_intervals", "%+#1", file).Output()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(flags)), "K") {
		t.Errorf("the first video packet is not a keyframe: %q (%v)", flags, err)
	}
}

// ffmpegReader is ffmpeg receiving the RTP the SDP describes into a file.
type ffmpegReader struct {
	stderr testkit.LogBuffer
	done   chan error
	cmd    *exec.Cmd
}

// start runs ffmpeg on the SDP file and waits until it has bound the
// ports of both media, so that the sink's first packets reach it.
// With decode, it decodes and encodes again rather than copying.
func (f *ffmpegReader) start(t *testing.T, ctx context.Context, sdp, out string, port int, decode bool) {
	if f.cmd != nil {
		return
	}
	codecs := []string{"-c", "copy"}
	if decode {
		codecs = []string{"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"}
	}
	args := append([]string{"-hide_banner", "-v", "error", "-nostdin", "-protocol_whitelist", "file,udp,rtp", "-i", sdp, "-t", "3"},
		codecs...)
	f.cmd = exec.CommandContext(ctx, "ffmpeg", append(args, "-y", out)...)
	f.cmd.Stderr = &f.stderr
	if err := f.cmd.Start(); err != nil {
		t.Errorf("ffmpeg: %v", err)
		f.done <- err
		return
	}
	go func() { f.done <- f.cmd.Wait() }()
	t.Cleanup(func() {
		_ = f.cmd.Process.Kill()
		err := <-f.done
		f.done <- err
	})
	if err := testkit.WaitUDPBound(ctx, port, port+2); err != nil {
		t.Error(err) // not Fatal: start runs in the sink's goroutine
	}
}

// wait waits for ffmpeg to exit 0 with nothing on stderr (-v error).
func (f *ffmpegReader) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case err := <-f.done:
		f.done <- err
		if err != nil || strings.TrimSpace(f.stderr.String()) != "" {
			t.Fatalf("ffmpeg: %v\n%s", err, f.stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("ffmpeg did not exit:\n%s", f.stderr.String())
	}
}

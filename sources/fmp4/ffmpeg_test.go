package fmp4

import (
	"os/exec"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestFFmpegLive reads ffmpeg's fMP4 output live from a pipe.
func TestFFmpegLive(t *testing.T) {
	testkit.NeedTools(t, "ffmpeg")
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	cmd := exec.CommandContext(ctx, bin, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=160x96:rate=30",
		"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "15",
		"-f", "mp4", "-movflags", "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame", "-")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var n, keys int
	var last time.Duration
	s := New(out, Options{})
	s.tap = func(_ int, _ *sdk.TrackWriter, f sdk.Frame) error {
		if n > 0 && f.PTS <= last {
			t.Errorf("frame %d: PTS %v after %v", n, f.PTS, last)
		}
		last = f.PTS
		n++
		if f.Keyframe {
			keys++
		}
		return nil
	}
	runErr := s.Run(ctx, nil)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	if runErr != nil {
		t.Fatal(runErr)
	}
	if n < 50 || keys < 3 {
		t.Errorf("%d frames, %d keyframes from 2 s at 30 fps", n, keys)
	}
}

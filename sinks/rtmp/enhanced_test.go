package rtmp

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"

	"github.com/moqbridge/moqbridge/internal/testclip"
	"github.com/moqbridge/moqbridge/internal/testkit"
)

// TestEnhancedCodecs restreams the H.265, AV1 and VP9 clips and H.264 with
// Opus to an in-process gortmplib server (ffmpeg 5.1 cannot receive
// Enhanced RTMP): the server finds the tracks with their codecs and
// receives video starting at a keyframe, with increasing decode times
// starting near 0, and the audio packets; Opus keeps its channel count.
func TestEnhancedCodecs(t *testing.T) {
	for _, tc := range []struct {
		file   string
		codecs string // what the sink logs
		video  string // the received video codec type
		audio  string
	}{
		{"hevc.mp4", "H.265", "*codecs.H265", ""},
		{"av1.mp4", "AV1", "*codecs.AV1", ""},
		{"vp9.mp4", "VP9", "*codecs.VP9", ""},
		{"h264_opus.mp4", "H.264,Opus", "*codecs.H264", "*codecs.Opus"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ctx := testkit.Context(t, 30*time.Second)
			origin := testclip.Publish(t, testclip.Path(tc.file), "live/x")
			srv := startServer(t, serverOptions{})
			lb := &testkit.LogBuffer{}
			sink := newSink(t, srv.url("enh"), lb, Config{})
			stop := testclip.RunSink(t, origin, "live/x", sink)
			lb.WaitLogContext(t, ctx, "rtmp: publishing", "codecs="+tc.codecs, "flv=enhanced")
			conn := srv.waitConn(t, ctx, 1)
			// gortmplib's Reader reports the tracks after 2 s of media.
			time.Sleep(1500 * time.Millisecond)
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			tracks, frames := conn.snapshot()
			var got []string
			for _, tr := range tracks {
				got = append(got, fmt.Sprintf("%T", tr.Codec))
				if op, ok := tr.Codec.(*codecs.Opus); ok && (op.IDHeader == nil || op.IDHeader.ChannelCount != 2) {
					t.Errorf("Opus header %+v, want 2 channels", op.IDHeader)
				}
			}
			want := []string{tc.video}
			if tc.audio != "" {
				want = append(want, tc.audio)
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("tracks %v, want %v", got, want)
			}
			var video, audio []rxFrame
			for _, f := range frames {
				if f.video {
					video = append(video, f)
				} else {
					audio = append(audio, f)
				}
			}
			t.Logf("%d video frames, %d audio frames", len(video), len(audio))
			// About 3.5 s at 30 fps; Opus 20 ms packets.
			if len(video) < 60 || (tc.audio != "" && len(audio) < 100) {
				t.Fatalf("%d video and %d audio frames", len(video), len(audio))
			}
			if !video[0].key || video[0].dts > 100*time.Millisecond {
				t.Errorf("first video frame: key %v at %v, want a keyframe near 0", video[0].key, video[0].dts)
			}
			checkTimes(t, video)
			checkTimes(t, audio)
			if tc.file == "av1.mp4" {
				seq := false
				for _, obu := range video[0].units {
					seq = seq || av1.OBUType((obu[0]>>3)&0xf) == av1.OBUTypeSequenceHeader
				}
				if !seq {
					t.Errorf("the first AV1 temporal unit has no sequence header")
				}
			}
		})
	}
}

// checkTimes checks that decode times increase and presentation times
// are not before them.
func checkTimes(t testing.TB, fs []rxFrame) {
	t.Helper()
	for i, f := range fs {
		if f.pts < f.dts {
			t.Errorf("frame %d: pts %v before dts %v", i, f.pts, f.dts)
		}
		if i > 0 && f.dts <= fs[i-1].dts {
			t.Errorf("frame %d: dts %v after %v", i, f.dts, fs[i-1].dts)
		}
	}
}

// TestBFramesDecodeTimes: H.264 and H.265 with B-frames, whose legacy
// tracks carry presentation times only, arrive with decode times derived
// from the slices that increase, and composition offsets where frames are
// reordered.
func TestBFramesDecodeTimes(t *testing.T) {
	testkit.NeedFFmpeg(t)
	h265 := filepath.Join(t.TempDir(), "hevc_bframes.mp4")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc2=size=160x96:rate=30", "-t", "2",
		"-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-tag:v", "hvc1",
		"-x265-params", "keyint=15:min-keyint=15:bframes=2:scenecut=0:log-level=error",
		"-f", "mp4", "-movflags", "cmaf+separate_moof+delay_moov+skip_trailer+frag_keyframe", h265)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	for _, file := range []string{testclip.Path("h264_aac_bframes.mp4"), h265} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			ctx := testkit.Context(t, 30*time.Second)
			origin := testclip.Publish(t, file, "live/x")
			srv := startServer(t, serverOptions{})
			lb := &testkit.LogBuffer{}
			sink := newSink(t, srv.url("b"), lb, Config{})
			stop := testclip.RunSink(t, origin, "live/x", sink)
			conn := srv.waitConn(t, ctx, 1)
			time.Sleep(1500 * time.Millisecond)
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			_, frames := conn.snapshot()
			var video []rxFrame
			reordered := 0
			for _, f := range frames {
				if f.video {
					video = append(video, f)
					if f.pts > f.dts {
						reordered++
					}
				}
			}
			if len(video) < 60 || !video[0].key {
				t.Fatalf("%d video frames", len(video))
			}
			checkTimes(t, video)
			t.Logf("%d video frames, %d with a composition offset", len(video), reordered)
			if reordered < len(video)/4 {
				t.Errorf("%d of %d frames with a composition offset", reordered, len(video))
			}
		})
	}
}

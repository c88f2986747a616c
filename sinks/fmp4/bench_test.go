package fmp4

import (
	"errors"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

// BenchmarkRecord measures the recorder alone (no transport): each
// iteration adds one 10 kB H.264 frame (GOP 30) and one 200 B Opus frame
// and writes fragments to a file.
func BenchmarkRecord(b *testing.B) {
	in := readClip(b, "../../sdk/testdata/h264_bframes_cmaf.mp4")
	video := sdkTrack(b, in[0])
	video.Framerate = 30
	audio, err := sdk.OpusFromChannels(2)
	if err != nil {
		b.Fatal(err)
	}
	cfg := New(Config{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)}).cfg
	rec, err := newRecorder(&cfg, []sdk.Track{video, audio})
	if err != nil {
		b.Fatal(err)
	}
	rec.setOrigin(0)
	vp := make([]byte, 10000)
	ap := make([]byte, 200)
	ap[0] = 0xfc // CELT 20 ms, one frame
	const frameDur = time.Second / 30
	b.SetBytes(int64(len(vp) + len(ap)))
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for i := range b.N {
		t := time.Duration(i) * frameDur
		vf := sdk.Frame{PTS: t, Keyframe: i%30 == 0, Payload: vp}
		if err := rec.frame(0, &vf); err != nil {
			b.Fatal(err)
		}
		af := sdk.Frame{PTS: t, Keyframe: true, Payload: ap}
		if err := rec.frame(1, &af); err != nil {
			b.Fatal(err)
		}
	}
	if err := rec.finish(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(2*b.N), "allocs/frame")
}

// TestDiskFull reports a write error naming the file.
func TestDiskFull(t *testing.T) {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	in := readClip(t, "../../sdk/testdata/opus_cmaf.mp4")
	cfg := New(Config{Logger: slog.New(slog.DiscardHandler)}).cfg
	rec, err := newRecorder(&cfg, []sdk.Track{sdkTrack(t, in[0])})
	if err != nil {
		t.Fatal(err)
	}
	rec.setOrigin(0)
	rec.seg = &segment{path: "/dev/full", f: f}
	for _, tf := range interleave(in) {
		if err := rec.frame(0, &tf.f); err != nil {
			t.Fatal(err)
		}
	}
	err = rec.finish()
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "/dev/full") {
		t.Fatalf("err %v", err)
	}
	if rec.seg != nil {
		t.Error("segment left open")
	}
}

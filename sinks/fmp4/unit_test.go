package fmp4

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

func TestStripTemporalDelimiter(t *testing.T) {
	for _, c := range []struct{ in, want []byte }{
		{[]byte{0x12, 0x00, 0x0a, 0x01, 0xff}, []byte{0x0a, 0x01, 0xff}},
		{[]byte{0x16, 0x00, 0x00, 0x0a, 0x00}, []byte{0x0a, 0x00}}, // with extension header
		{[]byte{0x0a, 0x01, 0xff}, []byte{0x0a, 0x01, 0xff}},       // no delimiter
		{[]byte{0x12, 0x05}, []byte{0x12, 0x05}},                   // truncated: left alone
	} {
		if got := stripTemporalDelimiter(c.in); !bytes.Equal(got, c.want) {
			t.Errorf("%x: got %x, want %x", c.in, got, c.want)
		}
	}
}

func TestExpandTemplate(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct{ tmpl, path, want string }{
		{DefaultFileTemplate, "live/test", "live/test/20260102-030405.mp4"},
		{"{path}/{start:2006}/{seq}.mp4", "/../a/./b/", "a/b/2026/0007.mp4"},
		{"{start}-{unknown}.mp4", "", "20260102-030405-{unknown}.mp4"},
		{"{path}.mp4", "..", "broadcast.mp4"},
	} {
		if got := expandTemplate(c.tmpl, c.path, start, 7); got != c.want {
			t.Errorf("%q %q: got %q, want %q", c.tmpl, c.path, got, c.want)
		}
	}
}

func TestOpusDuration(t *testing.T) {
	cases := map[byte]int64{
		0x00: 480, 0x08: 960, 0x10: 1920, 0x18: 2880, // SILK 10/20/40/60 ms
		0x60: 480, 0x68: 960, // Hybrid 10/20 ms
		0x80: 120, 0x88: 240, 0x90: 480, 0x98: 960, // CELT 2.5/5/10/20 ms
	}
	for toc, want := range cases {
		if got := opusDuration([]byte{toc}); got != want {
			t.Errorf("toc %#x: %d, want %d", toc, got, want)
		}
		if got := opusDuration([]byte{toc | 1}); got != 2*want {
			t.Errorf("toc %#x: %d, want %d", toc|1, got, 2*want)
		}
		if got := opusDuration([]byte{toc | 3, 5}); got != 5*want {
			t.Errorf("toc %#x code 3: %d, want %d", toc, got, 5*want)
		}
	}
	if opusDuration(nil) != 0 || opusDuration([]byte{3}) != 0 {
		t.Error("short packets")
	}
}

func TestTicks(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		ts   uint32
		want int64
	}{
		{33333 * time.Microsecond, 15360, 512},
		{33333 * time.Microsecond, 90000, 3000},
		{time.Second, 48000, 48000},
		{-time.Second, 1000, -1000},
		{100 * time.Hour, 90000, 100 * 3600 * 90000},
	} {
		if got := ticks(c.d, c.ts); got != c.want {
			t.Errorf("ticks(%v, %d) = %d, want %d", c.d, c.ts, got, c.want)
		}
	}
}

// TestAudioWithoutVideo writes audio on its own when the video stalls.
func TestAudioWithoutVideo(t *testing.T) {
	video := sdkTrack(t, readClip(t, "../../sdk/testdata/h264_bframes_cmaf.mp4")[0])
	audio := sdkTrack(t, readClip(t, "../../sdk/testdata/opus_cmaf.mp4")[0])
	cfg := New(Config{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}).cfg
	rec, err := newRecorder(&cfg, []sdk.Track{video, audio})
	if err != nil {
		t.Fatal(err)
	}
	rec.setOrigin(0)
	vf := sdk.Frame{Keyframe: true, Payload: []byte{0, 0, 0, 1, 0x65}}
	if err := rec.frame(0, &vf); err != nil {
		t.Fatal(err)
	}
	for i := range 300 { // 6 s of 20 ms packets
		af := sdk.Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: []byte{0xfc, byte(i)}}
		if err := rec.frame(1, &af); err != nil {
			t.Fatal(err)
		}
	}
	if rec.stats.fragments.Load() != 1 || len(rec.tracks[0].pending) != 1 {
		t.Errorf("fragments %d, video pending %d: want the audio out alone", rec.stats.fragments.Load(), len(rec.tracks[0].pending))
	}
	if err := rec.finish(); err != nil {
		t.Fatal(err)
	}
	out := readClip(t, rec.files[0])
	if len(out[0].samples) != 1 || len(out[1].samples) != 300 {
		t.Errorf("samples %d video, %d audio", len(out[0].samples), len(out[1].samples))
	}
}

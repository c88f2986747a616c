package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	fmp4src "github.com/moqbridge/moqbridge/sources/fmp4"
)

const testdata = "../sources/fmp4/testdata"

var clips = []string{"h264_aac_bframes.mp4", "h264_opus.mp4", "hevc.mp4", "av1.mp4", "vp9.mp4", "progressive.mp4"}

// videoTimescale is the timescale of the first video track of in, so that
// the recording's ticks compare exactly (0: the sink's default).
func videoTimescale(in []*track) uint32 {
	for _, tr := range in {
		if tr.video() {
			return tr.timescale
		}
	}
	return 0
}

// roundTrip records a clip file through tr and compares the recording
// with the clip.
func roundTrip(t *testing.T, tr transport, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join(testdata, name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in := readInput(t, data)
	res := record(t, ctx, tr, videoTimescale(in), func(opt fmp4src.Options) *fmp4src.Source {
		return fmp4src.New(bytes.NewReader(data), opt)
	})
	if len(res.tracks) != len(in) {
		t.Fatalf("source published %d tracks, the clip has %d", len(res.tracks), len(in))
	}
	drops := 0
	for i, tr := range in {
		if _, n := expected(tr); n > 0 {
			t.Logf("%s track %d: %d of %d samples do not advance in time; the sink drops them", name, i, n, len(tr.samples))
			drops += n
		}
	}
	if drops > 0 {
		// The committed clips have clean timelines (gen.sh cuts fragments
		// at keyframes); only live ffmpeg input is expected to need drops.
		t.Errorf("%s: %d samples do not advance in time; regenerate the clip", name, drops)
	}
	if res.stats.Dropped != uint64(drops) {
		t.Errorf("sink dropped %d frames, want %d", res.stats.Dropped, drops)
	}
	compare(t, name, in, readRecording(t, res.file))
	return res.file
}

// TestClipRoundTrip records every clip of sources/fmp4/testdata through
// the fMP4 source, sdk writer, an in-process Origin, sdk reader and fMP4
// sink, and requires every sample of the recording to equal the clip's
// (see compare).
func TestClipRoundTrip(t *testing.T) {
	for _, name := range clips {
		t.Run(name, func(t *testing.T) {
			roundTrip(t, inProcess, name)
		})
	}
}

// TestClipRoundTripOverNetwork is TestClipRoundTrip for the H.264 with
// B-frames and AAC clip through a relay over raw QUIC.
func TestClipRoundTripOverNetwork(t *testing.T) {
	roundTrip(t, overNetwork, "h264_aac_bframes.mp4")
}

package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	mcfmp4 "github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"
)

// sample is one MP4 sample; times are in the track's timescale.
type sample struct {
	dts, pts int64
	dur      int64 // duration in the input (fragmented inputs)
	key      bool  // a sync sample: from the bitstream for video inputs, see readInput
	data     []byte
}

// track is one track of an MP4 file as mediacommon reads it.
type track struct {
	id        int
	timescale uint32
	codec     codecs.Codec
	samples   []sample
}

func (t *track) video() bool {
	switch t.codec.(type) {
	case *codecs.H264, *codecs.H265, *codecs.AV1, *codecs.VP9:
		return true
	}
	return false
}

// bitstreamKey decides whether a video sample is a random access point
// from its bitstream.
func bitstreamKey(c codecs.Codec, p []byte) (bool, error) {
	switch c.(type) {
	case *codecs.H264:
		var au h264.AVCC
		if err := au.Unmarshal(p); err != nil {
			return false, err
		}
		return h264.IsRandomAccess(au), nil
	case *codecs.H265:
		var au h264.AVCC
		if err := au.Unmarshal(p); err != nil {
			return false, err
		}
		return h265.IsRandomAccess(au), nil
	case *codecs.AV1:
		var bs av1.Bitstream
		if err := bs.Unmarshal(p); err != nil {
			return false, err
		}
		return av1.IsRandomAccess2(bs), nil
	case *codecs.VP9:
		return vp9.IsRandomAccess(p), nil
	}
	return true, nil
}

// topBoxes walks the complete top-level boxes of b.
func topBoxes(b []byte, fn func(typ string, off, size int)) {
	off := 0
	for off+8 <= len(b) {
		size := int(binary.BigEndian.Uint32(b[off:]))
		hdr := 8
		if size == 1 {
			if off+16 > len(b) {
				return
			}
			size, hdr = int(binary.BigEndian.Uint64(b[off+8:])), 16
		}
		if size < hdr || off+size > len(b) {
			return
		}
		fn(string(b[off+4:off+8]), off, size)
		off += size
	}
}

// readFragmented reads a fragmented MP4 with mediacommon: the init
// segment (ftyp+moov) and every moof+mdat. Decode times are the tfdt of
// each fragment plus the sample durations before the sample in it; the
// sync flag is mediacommon's (trun sample flags).
func readFragmented(t testing.TB, b []byte) []*track {
	t.Helper()
	initEnd := -1
	topBoxes(b, func(typ string, off, size int) {
		if typ == "moov" && initEnd < 0 {
			initEnd = off + size
		}
	})
	if initEnd < 0 {
		t.Fatal("no moov")
	}
	var in mcfmp4.Init
	if err := in.Unmarshal(bytes.NewReader(b[:initEnd])); err != nil {
		t.Fatalf("init: %v", err)
	}
	var parts mcfmp4.Parts
	if err := parts.Unmarshal(b[initEnd:]); err != nil {
		t.Fatalf("fragments: %v", err)
	}
	var out []*track
	byID := map[int]*track{}
	for _, it := range in.Tracks {
		tr := &track{id: it.ID, timescale: it.TimeScale, codec: it.Codec}
		out = append(out, tr)
		byID[it.ID] = tr
	}
	for _, p := range parts {
		for _, pt := range p.Tracks {
			tr := byID[pt.ID]
			if tr == nil {
				t.Fatalf("fragment of unknown track %d", pt.ID)
			}
			dts := int64(pt.BaseTime)
			for _, s := range pt.Samples {
				tr.samples = append(tr.samples, sample{dts: dts, pts: dts + int64(s.PTSOffset), dur: int64(s.Duration), key: !s.IsNonSyncSample, data: s.Payload})
				dts += int64(s.Duration)
			}
		}
	}
	return out
}

// readProgressive reads a progressive MP4 with mediacommon's pmp4: the
// sample tables (stts, ctts, stss, stsz, stco) of the moov.
func readProgressive(t testing.TB, b []byte) []*track {
	t.Helper()
	var pres pmp4.Presentation
	if err := pres.Unmarshal(bytes.NewReader(b)); err != nil {
		t.Fatalf("pmp4: %v", err)
	}
	var out []*track
	for _, pt := range pres.Tracks {
		tr := &track{id: pt.ID, timescale: pt.TimeScale, codec: pt.Codec}
		var dts int64
		for _, s := range pt.Samples {
			p, err := s.GetPayload()
			if err != nil {
				t.Fatal(err)
			}
			tr.samples = append(tr.samples, sample{dts: dts, pts: dts + int64(s.PTSOffset), key: !s.IsNonSyncSample, data: p})
			dts += int64(s.Duration)
		}
		out = append(out, tr)
	}
	return out
}

// isProgressive reports whether b is a progressive MP4 (no moof).
func isProgressive(b []byte) bool {
	frag := false
	topBoxes(b, func(typ string, _, _ int) { frag = frag || typ == "moof" })
	return !frag
}

// readInput reads a clip the source is given. For video the sync flag is
// taken from the bitstream: mediacommon does not apply trun
// first-sample-flags and trex defaults, which ffmpeg's fragments rely on
// (for progressive clips the stss flag is checked against the bitstream
// too).
func readInput(t testing.TB, b []byte) []*track {
	t.Helper()
	prog := isProgressive(b)
	var tracks []*track
	if prog {
		tracks = readProgressive(t, b)
	} else {
		tracks = readFragmented(t, b)
	}
	for _, tr := range tracks {
		for j := range tr.samples {
			s := &tr.samples[j]
			if !tr.video() {
				s.key = true
				continue
			}
			key, err := bitstreamKey(tr.codec, s.data)
			if err != nil {
				t.Fatalf("track %d sample %d: %v", tr.id, j, err)
			}
			if prog && key != s.key {
				t.Errorf("input track %d sample %d: stss says sync %v, bitstream %v", tr.id, j, s.key, key)
			}
			s.key = key
		}
	}
	return tracks
}

// readRecording reads a file the sink wrote; the sync flags are the
// sink's own trun sample flags as mediacommon reads them.
func readRecording(t testing.TB, path string) []*track {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return readFragmented(t, b)
}

// sinkTicks converts a duration to ticks, rounding to nearest, as the
// sink does.
func sinkTicks(d time.Duration, ts uint32) int64 {
	neg := d < 0
	if neg {
		d = -d
	}
	hi, lo := bits.Mul64(uint64(d), uint64(ts))
	lo, c := bits.Add64(lo, 5e8, 0)
	hi += c
	q, _ := bits.Div64(hi, lo, 1e9)
	if neg {
		return -int64(q)
	}
	return int64(q)
}

// micros is a time in ticks as the legacy container carries it: whole
// microseconds (the source converts ticks to nanoseconds, truncating; the
// writer rounds to the microsecond).
func micros(v int64, ts uint32) time.Duration {
	d := time.Duration(v/int64(ts))*time.Second + time.Duration(v%int64(ts))*time.Second/time.Duration(ts)
	return d.Round(time.Microsecond)
}

// expected returns the samples of an input track the sink records, with
// the times the fMP4 source gives them: ffmpeg's frag_every_frame output
// has audio fragments whose tfdt repeats or skips the previous one by a
// frame (and some with a zero duration); the source snaps those onto the
// running timeline. An audio sample whose time is still not after the
// previous recorded one is dropped (sinks/fmp4 drops a frame whose time is
// not after what its track already has); dropped counts them.
func expected(tr *track) (keep []sample, dropped int) {
	if tr.video() {
		return tr.samples, 0
	}
	var lastDur int64
	for _, s := range tr.samples {
		// The source repairs ffmpeg's per-frame audio fragments: a zero
		// duration takes the previous one, and a decode time within one
		// frame of the running timeline snaps onto it.
		if s.dur == 0 {
			s.dur = lastDur
		}
		lastDur = s.dur
		if n := len(keep); n > 0 && s.dur > 0 {
			if want := keep[n-1].dts + keep[n-1].dur; s.dts != want && max(s.dts, want)-min(s.dts, want) <= s.dur {
				s.pts += want - s.dts
				s.dts = want
			}
		}
		if len(keep) > 0 && s.pts <= keep[len(keep)-1].pts {
			dropped++
			continue
		}
		keep = append(keep, s)
	}
	return keep, dropped
}

// compare checks that the recording out holds exactly the samples of in
// (less those expected drops), track by track in the same order:
//
//   - the same number of samples, timescale and codec type;
//   - every payload byte for byte;
//   - the sync flag: out's trun flag equals in's (bitstream for video,
//     always for audio);
//   - PTS: out = in − o, where o is the sink's time origin (the smallest
//     first PTS over the tracks, in microseconds) in the track's ticks;
//   - DTS: out = in + shift − o, where shift = PTS − DTS of the track's
//     first input sample, the constant shift that gives the first
//     keyframe PTS = DTS (0 for audio).
func compare(t testing.TB, name string, in, out []*track) {
	t.Helper()
	if len(in) != len(out) {
		t.Fatalf("%s: %d tracks recorded, want %d", name, len(out), len(in))
	}
	origin := time.Duration(-1)
	for _, tr := range in {
		if len(tr.samples) == 0 {
			continue
		}
		if d := micros(tr.samples[0].pts, tr.timescale); origin < 0 || d < origin {
			origin = d
		}
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.timescale != b.timescale {
			t.Errorf("%s track %d: timescale %d, want %d", name, i, b.timescale, a.timescale)
			continue
		}
		if fmt.Sprintf("%T", a.codec) != fmt.Sprintf("%T", b.codec) {
			t.Errorf("%s track %d: codec %T, want %T", name, i, b.codec, a.codec)
		}
		want, _ := expected(a)
		if len(want) != len(b.samples) {
			t.Errorf("%s track %d: %d samples, want %d", name, i, len(b.samples), len(want))
			continue
		}
		o := sinkTicks(origin, a.timescale)
		shift := want[0].pts - want[0].dts
		bad := 0
		for j, s := range want {
			g := b.samples[j]
			var diffs []string
			if !bytes.Equal(g.data, s.data) {
				diffs = append(diffs, fmt.Sprintf("payload %d bytes, want %d bytes (equal prefix %d)", len(g.data), len(s.data), commonPrefix(g.data, s.data)))
			}
			if g.key != s.key {
				diffs = append(diffs, fmt.Sprintf("sync %v, want %v", g.key, s.key))
			}
			if g.pts != s.pts-o {
				diffs = append(diffs, fmt.Sprintf("pts %d, want %d", g.pts, s.pts-o))
			}
			if g.dts != s.dts+shift-o {
				diffs = append(diffs, fmt.Sprintf("dts %d, want %d", g.dts, s.dts+shift-o))
			}
			if len(diffs) > 0 {
				if bad++; bad <= 10 {
					t.Errorf("%s track %d (%T) sample %d: %s", name, i, a.codec, j, strings.Join(diffs, "; "))
				}
			}
		}
		if bad > 10 {
			t.Errorf("%s track %d: %d samples differ in all", name, i, bad)
		}
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

package fmp4

import (
	"cmp"
	"slices"
	"time"

	"github.com/moqbridge/moqbridge/internal/mp4"
	"github.com/moqbridge/moqbridge/sdk"
)

// maxFragSamples bounds the samples of one fragment.
const maxFragSamples = 1 << 16

// fragSample is one sample of a moof+mdat fragment.
type fragSample struct {
	t    *trackInfo
	dts  int64
	cts  int32
	dur  uint32
	key  bool
	data []byte
}

// parseFragment extracts the samples of a moof (body at moofBody, box at
// moofOff with header moofHdr) and the following mdat (body at mdatBody,
// starting at stream offset mdatBodyOff). next holds the next decode time
// of every track, for fragments without tfdt. Samples of tracks that are
// not in the movie are dropped.
func parseFragment(m *movie, moof []byte, moofOff int64, moofHdr int, mdat []byte, mdatBodyOff int64, next map[uint32]int64) ([]fragSample, error) {
	var out []fragSample
	box := mp4.Box{Type: "moof", Body: moof, Offset: moofOff, HeaderLen: moofHdr}
	err := mp4.Trafs(box, func(tf mp4.Traf) error {
		trafOff := tf.Offset()
		base, ok := tf.DataStart(moofOff) // absolute stream offset of the data base
		if !ok {
			return formatErr(trafOff, "tfhd base data offset %d out of range", tf.Tfhd.BaseDataOffset)
		}
		if tf.HasDecodeTime && tf.DecodeTime > 1<<62 {
			return formatErr(trafOff, "tfdt %d out of range", tf.DecodeTime)
		}
		if !tf.HasTfhd {
			return nil
		}
		id := tf.Tfhd.TrackID
		t := m.byID[id]
		if t == nil {
			return nil
		}
		def := tf.Tfhd.Apply(t.defaults)
		dts, haveTfdt := int64(tf.DecodeTime), tf.HasDecodeTime
		pos := int64(-1) // absolute offset of the next sample's data
		return tf.Runs(maxFragSamples, func(r mp4.Trun, off int64) error {
			// An audio tfdt within one frame of where the track's
			// timeline already is snaps to it: ffmpeg (5.1) with
			// frag_every_frame writes audio tfdt values that repeat or
			// skip their predecessor's by one frame, which would
			// otherwise read as time going backwards or a gap.
			want, continuing := next[id]
			snap := haveTfdt && continuing && t.track.Kind != sdk.KindVideo && dts != want
			if !haveTfdt {
				dts, haveTfdt = want, true
			}
			if r.Flags&mp4.TrunDataOffset != 0 {
				pos = base + int64(r.DataOffset)
			} else if pos < 0 {
				pos = base
			}
			for i := range int(r.Count) {
				rs := r.Sample(i, def)
				// Version 0 offsets are unsigned; values above 2^31 are
				// read as negative, as writers mean them.
				s := fragSample{t: t, dts: dts, dur: rs.Duration, cts: int32(rs.CompositionOffset)}
				if t.track.Kind != sdk.KindVideo {
					// ffmpeg's per-frame audio fragments may carry a
					// zero duration; audio frames are of constant
					// length, so the last known one stands in.
					if s.dur == 0 {
						s.dur = t.lastDur
					}
					t.lastDur = s.dur
				}
				if i == 0 && snap && max(dts, want)-min(dts, want) <= int64(s.dur) {
					dts, s.dts = want, want
				}
				// Audio samples are all sync samples.
				s.key = t.track.Kind != sdk.KindVideo || mp4.IsSync(rs.Flags)
				size := rs.Size
				rel := pos - mdatBodyOff
				if rel < 0 || rel > int64(len(mdat)) || int64(size) > int64(len(mdat))-rel {
					return formatErr(off, "track %d sample %d: data at byte %d (%d bytes) is outside the mdat body (bytes %d to %d)",
						id, i, pos, size, mdatBodyOff, mdatBodyOff+int64(len(mdat)))
				}
				if size == 0 {
					return formatErr(off, "track %d sample %d: empty sample", id, i)
				}
				s.data = mdat[rel : rel+int64(size)]
				pos += int64(size)
				dts += int64(s.dur)
				out = append(out, s)
				if len(out) > maxFragSamples {
					return formatErr(off, "fragment with more than %d samples", maxFragSamples)
				}
			}
			next[id] = dts
			return nil
		})
	})
	if err != nil {
		return nil, fromMP4(err)
	}
	return out, nil
}

// Bounds of a fragMerge's look-ahead, in media time and in samples.
const (
	mergeWindow     = 10 * time.Second
	mergeMaxSamples = 1 << 16
)

// fragMerge writes the samples of a paced file's fragments in decode time
// order across tracks. A fragment holds a run of samples per track, and
// files cut for live streaming (ffmpeg's separate_moof, the demo clip)
// put each track in its own fragment: a GOP of video, then the same
// second of audio. Written in file order, a paced file would hand out the
// video in real time and then a fragment's worth of audio at once, up to
// a fragment late, which subscribers and real-time sinks (RTP) see as
// audio in bursts.
//
// A sample is written once every track has a later one pending (its next
// one cannot be earlier), once the samples pending span more than
// mergeWindow or number more than mergeMaxSamples (a track that ended or
// pauses), and at the end of the pass. Only files are merged: reading
// ahead in a file costs nothing, while a stream (paced or not) is written
// as it comes, since its next fragment may be long in coming (a live
// stream's fragments are as late as they are).
type fragMerge struct {
	pending []fragSample // in decode time order, each track's order kept
	// seen counts the samples pending per track of the movie (and any
	// other seen); waiting is how many of those tracks have none pending.
	seen    map[*trackInfo]int
	waiting int
}

// add takes the samples of one fragment and writes those whose turn it
// is.
func (fm *fragMerge) add(m *movie, samples []fragSample, write func(fragSample) error) error {
	if fm.seen == nil {
		fm.seen = map[*trackInfo]int{}
		for _, t := range m.tracks {
			fm.seen[t] = 0
		}
		fm.waiting = len(fm.seen)
	}
	for _, s := range samples {
		n, ok := fm.seen[s.t]
		if ok && n == 0 {
			fm.waiting--
		}
		fm.seen[s.t] = n + 1
	}
	fm.pending = append(fm.pending, samples...)
	slices.SortStableFunc(fm.pending, func(a, b fragSample) int { return cmp.Compare(a.at(), b.at()) })
	n := 0
	for ; n < len(fm.pending) && !fm.mayWait(fm.pending[n:]); n++ {
		s := fm.pending[n]
		if err := write(s); err != nil {
			return err
		}
		if fm.seen[s.t]--; fm.seen[s.t] == 0 {
			fm.waiting++
		}
	}
	fm.pending = slices.Delete(fm.pending, 0, n)
	return nil
}

// mayWait reports whether the earliest of the samples pending may wait
// for more fragments.
func (fm *fragMerge) mayWait(rest []fragSample) bool {
	if len(rest) > mergeMaxSamples || rest[len(rest)-1].at()-rest[0].at() > mergeWindow {
		return false
	}
	return fm.waiting > 0
}

// flush writes every sample pending, at the end of a pass, and forgets
// the tracks seen.
func (fm *fragMerge) flush(write func(fragSample) error) error {
	for _, s := range fm.pending {
		if err := write(s); err != nil {
			return err
		}
	}
	*fm = fragMerge{}
	return nil
}

// at is the sample's decode time.
func (s fragSample) at() time.Duration { return ticks(s.dts, s.t.timescale) }

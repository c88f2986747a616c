package fmp4

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moqbridge/moqbridge/sdk"
)

// track is the recording state of one track.
type track struct {
	t       sdk.Track
	e       entry
	video   bool
	ts      uint32
	nominal int64 // nominal frame duration, ticks

	nal *annexB // H.264/H.265 from Annex B: parameter sets followed, payloads converted

	waitKey bool     // drop until the next keyframe
	gap     bool     // media was lost after the last pending sample
	pending []sample // samples of the open fragment; dts holds PTS until flushed
	lastDTS int64    // last written decode time, -1 before the first
	lastDur int64
	ended   bool
	dropped uint64
}

// ticks converts a duration to ticks of timescale ts, rounding to nearest.
func ticks(d time.Duration, ts uint32) int64 {
	neg := d < 0
	if neg {
		d = -d
	}
	hi, lo := bits.Mul64(uint64(d), uint64(ts))
	lo, c := bits.Add64(lo, 5e8, 0)
	hi += c
	q, _ := bits.Div64(hi%1e9, lo, 1e9) // hi%1e9 keeps Div64 from panicking on absurd inputs
	if neg {
		return -int64(q)
	}
	return int64(q)
}

// opusDuration returns the duration of an Opus packet in 48 kHz samples
// from its TOC byte (RFC 6716 §3.1), 0 if it cannot tell.
func opusDuration(p []byte) int64 {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	cfg := int64(toc >> 3)
	var size int64 // in 1/10 ms... expressed at 48 kHz
	switch {
	case cfg < 12:
		size = []int64{480, 960, 1920, 2880}[cfg%4]
	case cfg < 16:
		size = []int64{480, 960}[cfg%2]
	default:
		size = []int64{120, 240, 480, 960}[cfg%4]
	}
	var n int64
	switch toc & 3 {
	case 0:
		n = 1
	case 1, 2:
		n = 2
	default:
		if len(p) < 2 {
			return 0
		}
		n = int64(p[1] & 0x3f)
	}
	return n * size
}

// codecDuration is the intrinsic duration of an audio frame in ticks, or
// the nominal duration.
func (k *track) codecDuration(p []byte) int64 {
	switch k.e.fourcc {
	case "Opus":
		if d := opusDuration(p); d > 0 {
			return d * int64(k.ts) / 48000
		}
	case "mp4a":
		return 1024
	}
	return k.nominal
}

// recorder turns frames into fragments and segment files. It is driven by
// one goroutine. A Sink keeps its recorder from one Run to the next (see
// reset), so files, numbering, retention and media time continue.
type recorder struct {
	cfg    *Config
	log    *slog.Logger
	tracks []*track
	hasVid bool
	init   []byte // init segment of tracks

	origin    time.Duration
	originSet bool          // this Run fixed the origin
	timed     bool          // an earlier Run fixed it: media time continues
	end       time.Duration // media time up to which earlier Runs wrote
	lastKey   time.Duration // media time of the last keyframe (without video: frame) taken

	seg      *segment
	last     *segment      // closed at the end of the last Run; the next may continue it
	segStart time.Duration // media time of the open (or last) segment's first fragment
	seq      uint32        // mfhd sequence number
	nseg     int
	out      []byte // reused fragment buffer
	runs     []traf

	finished []segInfo // closed segments, oldest first
	files    []string  // every segment created
	stats    *stats
}

// segInfo is a finished segment file.
type segInfo struct {
	path string
	size int64
	end  time.Time
}

// segment is an open segment file.
type segment struct {
	path  string
	f     *os.File
	size  int64 // bytes of whole boxes written
	frags int
	start time.Time
}

func newRecorder(cfg *Config, all []sdk.Track) (*recorder, error) {
	r := &recorder{cfg: cfg, log: cfg.Logger, stats: &stats{}}
	r.tracks, r.hasVid = newTracks(cfg, all)
	if len(r.tracks) == 0 {
		return nil, errNoTrack
	}
	r.init = initSegment(r.tracks)
	return r, nil
}

// errNoTrack is permanent: waiting and retrying gives the same catalog.
var errNoTrack = sdk.Permanent(errors.New("fmp4: no track can be recorded"))

// newTracks returns the recording state of the tracks MP4 can carry,
// logging the others.
func newTracks(cfg *Config, all []sdk.Track) (tracks []*track, hasVid bool) {
	for _, t := range all {
		// H.264 and H.265 without a decoder configuration are Annex B
		// with in-band parameter sets: the sample entry is completed from
		// them (see annexB).
		nal := newAnnexB(t)
		var (
			e   entry
			err error
		)
		if nal != nil {
			e = nal.entry(t)
		} else {
			e, err = sampleEntry(t)
		}
		if err != nil {
			cfg.Logger.Warn("fmp4: track not recorded", "path", cfg.Path, "track", t.Name, "codec", t.Codec, "err", err)
			continue
		}
		k := &track{t: t, e: e, video: t.Kind == sdk.KindVideo, lastDTS: -1, nal: nal}
		if k.video {
			k.ts = cfg.VideoTimescale
			k.nominal = int64(k.ts) / 30
			if t.Framerate > 0 {
				k.nominal = max(1, int64(float64(k.ts)/t.Framerate+0.5))
			}
			k.waitKey = true
			hasVid = true
		} else {
			k.ts = uint32(e.rate)
			if e.fourcc == "Opus" || k.ts == 0 {
				k.ts = 48000
			}
			k.nominal = k.codecDuration(nil)
			if e.fourcc == "Opus" {
				k.nominal = 960 * int64(k.ts) / 48000
			}
		}
		k.e.id = uint32(len(tracks) + 1)
		k.e.timescale = k.ts
		tracks = append(tracks, k)
	}
	return tracks, hasVid
}

// initSegment returns the init segment (ftyp + moov) of tracks.
func initSegment(tracks []*track) []byte {
	es := make([]entry, 0, len(tracks))
	for _, k := range tracks {
		es = append(es, k.e)
	}
	return appendInit(nil, es)
}

// reset prepares the recorder for the next Run of its Sink, over the
// tracks of a new broadcast. The segment the previous Run closed at its end
// (r.last) is continued by the next fragment if the recorded tracks are the
// same (same names, byte-identical init segment); otherwise the next
// fragment starts a new file. Either way the file numbering, the retention
// list and the media time continue: setOrigin places the new frames after
// everything written so far. On error the recorder is left as it was.
func (r *recorder) reset(all []sdk.Track) error {
	tracks, hasVid := newTracks(r.cfg, all)
	if len(tracks) == 0 {
		return errNoTrack
	}
	for _, k := range r.tracks {
		if k.lastDTS >= 0 {
			r.end = max(r.end, tickDuration(k.lastDTS+k.lastDur, k.ts))
		}
	}
	r.timed = r.timed || r.originSet
	r.originSet = false
	init := initSegment(tracks)
	same := bytes.Equal(init, r.init) && len(tracks) == len(r.tracks)
	for i := 0; same && i < len(tracks); i++ {
		same = tracks[i].t.Name == r.tracks[i].t.Name
	}
	if same {
		// Decode times continue in the same file.
		for i, k := range tracks {
			old := r.tracks[i]
			k.lastDTS, k.lastDur = old.lastDTS, old.lastDur
			if k.video && k.t.Framerate <= 0 {
				k.nominal = old.nominal
			}
		}
	} else if r.last != nil {
		r.log.Info("fmp4: the tracks changed, the recording goes on in a new file", "path", r.cfg.Path, "previous", r.last.path)
		r.last = nil
	}
	r.tracks, r.hasVid, r.init = tracks, hasVid, init
	return nil
}

// setOrigin fixes the media time that maps to 0 in every track, given
// the first timestamp of this Run. The first Run maps first to 0. A later
// Run keeps the origin when its frames lie after everything written
// (a gap stays a gap), and otherwise (a publisher that restarted its clock)
// moves it, once for all tracks, so that first maps to the end of what was
// written: decode times keep increasing in every track and the tracks stay
// aligned.
func (r *recorder) setOrigin(first time.Duration) {
	o := first
	if r.timed {
		o = min(r.origin, first-r.end)
		if t := first - r.origin; t < r.end && t >= r.lastKey {
			// A resumed subscription starts at the latest group the
			// relay holds, which may be the group written last, in
			// part: the same clock, so the origin stays and what was
			// written already is dropped as a repeat.
			o = r.origin
		}
		if o != r.origin {
			r.log.Info("fmp4: timestamps went back, recording continues after what was written",
				"path", r.cfg.Path, "shift", r.origin-o)
		}
	}
	r.origin, r.originSet = o, true
}

// tickDuration converts ticks of timescale ts to a duration, rounding up
// (so that ticks(tickDuration(v, ts), ts) >= v).
func tickDuration(v int64, ts uint32) time.Duration {
	if v <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(v), uint64(time.Second))
	lo, c := bits.Add64(lo, uint64(ts)-1, 0)
	hi += c
	q, _ := bits.Div64(hi%uint64(ts), lo, uint64(ts)) // hi%ts keeps Div64 from panicking on absurd inputs
	return time.Duration(min(q, 1<<62))
}

// frame adds one frame of track i.
func (r *recorder) frame(i int, f *sdk.Frame) error {
	r.leaveOutUnconfigured()
	k := r.tracks[i]
	if f.Discontinuity {
		k.gap = true
		if k.video {
			k.waitKey = true
		}
	}
	if k.waitKey && !f.Keyframe {
		k.dropped++
		r.stats.dropped.Add(1)
		return nil
	}
	t := f.PTS - r.origin
	if t < 0 {
		k.dropped++
		r.stats.dropped.Add(1)
		k.waitKey = k.video
		return nil
	}
	pts := ticks(t, k.ts)
	// Keep decode times increasing: a frame at or before what the track
	// already has is dropped (and video waits for a keyframe beyond it).
	// Non-key video frames may precede their keyframe in presentation
	// (open GOPs); videoTiming keeps their decode times increasing.
	last := k.lastDTS
	if n := len(k.pending); n > 0 && !k.video {
		last = k.pending[n-1].dts
	}
	if k.video && len(k.pending) > 0 {
		last = max(last, k.pending[0].dts)
	}
	if (f.Keyframe || !k.video) && pts <= last {
		k.dropped++
		r.stats.dropped.Add(1)
		k.waitKey = k.video
		if k.dropped == 1 || k.dropped%100 == 0 {
			r.log.Warn("fmp4: timestamp went backwards, frames dropped", "track", k.t.Name, "dropped", k.dropped)
		}
		return nil
	}
	data := f.Payload
	if k.nal != nil {
		// Annex B: to length-prefixed NAL units; a keyframe may bring
		// the first or new parameter sets.
		var changed bool
		if data, changed = k.nal.convert(r, k, f); data == nil {
			k.dropped++
			r.stats.dropped.Add(1)
			k.waitKey = true
			return nil
		}
		if changed {
			if err := r.newConfig(k, pts); err != nil {
				return err
			}
		}
	}
	k.waitKey = false
	if f.Keyframe && (k.video || !r.hasVid) {
		r.lastKey = max(r.lastKey, t)
	}
	if k.video && f.Keyframe && len(k.pending) > 0 {
		if err := r.flush(pts, k); err != nil {
			return err
		}
		if r.cfg.SegmentDuration > 0 && r.seg != nil && t-r.segStart >= r.cfg.SegmentDuration {
			if err := r.closeSegment(); err != nil {
				return err
			}
		}
	}
	if k.e.fourcc == "av01" {
		data = stripTemporalDelimiter(data)
	}
	k.pending = append(k.pending, sample{dts: pts, key: f.Keyframe || !k.video, data: data})
	if !k.video {
		span := time.Duration((pts - k.pending[0].dts) * int64(time.Second) / int64(k.ts))
		if r.videoActive() {
			// Audio goes out with the video groups; if the video stalls,
			// it goes out on its own rather than piling up.
			if span >= maxAudioWait {
				return r.flushKind(-1, nil, sdk.KindAudio)
			}
			return nil
		}
		if span >= r.cfg.PartDuration {
			if err := r.flush(-1, nil); err != nil {
				return err
			}
			// With video, files are cut at keyframes only: after the video
			// ended the rest goes into the open file, so that no file lacks
			// samples of a track its moov declares.
			if !r.hasVid && r.cfg.SegmentDuration > 0 && r.seg != nil && t-r.segStart >= r.cfg.SegmentDuration {
				return r.closeSegment()
			}
		}
	}
	return nil
}

// videoActive reports whether a video track still paces the fragments.
func (r *recorder) videoActive() bool {
	for _, k := range r.tracks {
		if k.video && !k.ended {
			return true
		}
	}
	return false
}

// endTrack marks track i ended; its pending samples go out with the next
// fragment.
func (r *recorder) endTrack(i int) { r.tracks[i].ended = true }

// flush writes the pending samples of every track as one fragment. next
// is the presentation time of the keyframe of vk that follows, or -1.
func (r *recorder) flush(next int64, vk *track) error {
	return r.flushKind(next, vk, 0)
}

// maxAudioWait is how much audio waits for a video group to go out with.
const maxAudioWait = 5 * time.Second

// flushKind is flush for the tracks of one kind (0: all).
func (r *recorder) flushKind(next int64, vk *track, kind sdk.Kind) error {
	r.runs = r.runs[:0]
	var start time.Duration = -1
	for _, k := range r.tracks {
		if len(k.pending) == 0 || (kind != 0 && k.t.Kind != kind) {
			continue
		}
		ss := k.pending
		if k.video {
			r.videoTiming(k, ss, next, k == vk)
		} else {
			for i := range ss {
				ss[i].cts = 0
				if i+1 < len(ss) {
					ss[i].duration = uint32(ss[i+1].dts - ss[i].dts)
				} else {
					ss[i].duration = uint32(k.codecDuration(ss[i].data))
				}
			}
		}
		k.lastDTS = ss[len(ss)-1].dts
		k.lastDur = int64(ss[len(ss)-1].duration)
		k.gap = false
		if st := time.Duration(ss[0].dts * int64(time.Second) / int64(k.ts)); start < 0 || st < start {
			start = st
		}
		r.runs = append(r.runs, traf{id: k.e.id, samples: ss})
	}
	if len(r.runs) == 0 {
		return nil
	}
	err := r.write(start)
	for _, k := range r.tracks {
		if kind != 0 && k.t.Kind != kind {
			continue
		}
		clear(k.pending) // drop the payload references
		k.pending = k.pending[:0]
	}
	return err
}

// videoTiming reconstructs decode times and durations of one group given
// in decode order with presentation times in dts: the decode times are the
// group's presentation times sorted (so the keyframe of a closed GOP has
// PTS = DTS and B-frames get negative composition offsets, the layout of
// ffmpeg's cmaf mode), kept above the previous group's.
func (r *recorder) videoTiming(k *track, ss []sample, next int64, haveNext bool) {
	var sorted [64]int64
	pts := sorted[:0]
	reordered := false
	for i := range ss {
		pts = append(pts, ss[i].dts)
		if i > 0 && ss[i].dts < ss[i-1].dts {
			reordered = true
		}
	}
	if reordered {
		slices.Sort(pts)
	}
	prev := k.lastDTS
	for i := range ss {
		d := max(pts[i], prev+1)
		ss[i].cts = ss[i].dts - d
		ss[i].dts = d
		prev = d
	}
	// Measured frame spacing when the track has no framerate.
	if k.t.Framerate <= 0 && len(ss) > 2 {
		k.nominal = max(1, (ss[len(ss)-1].dts-ss[0].dts)/int64(len(ss)-1))
	}
	for i := range ss {
		var d int64
		if i+1 < len(ss) {
			d = ss[i+1].dts - ss[i].dts
		} else if haveNext && !k.gap && next > ss[i].dts && next-ss[i].dts <= 3*k.nominal {
			d = next - ss[i].dts
		} else {
			d = k.nominal
		}
		ss[i].duration = uint32(max(d, 1))
	}
}

// write appends the built fragment to the open segment, opening one first
// if needed: the one the previous Run left (see reset) when it can be
// continued, else a new file. The init segment and the first fragment of a
// new file go out in one write, so a file on disk always holds at least one
// whole fragment. A failed write is undone (see failed).
func (r *recorder) write(start time.Duration) error {
	if r.seg == nil && r.last != nil {
		r.reopen(start)
	}
	r.out = r.out[:0]
	fresh := r.seg == nil
	if fresh {
		r.out = append(r.out, r.init...)
	}
	r.seq++
	r.out = appendFragment(r.out, r.seq, r.runs)
	if fresh {
		if err := r.openSegment(); err != nil {
			r.seq--
			return err
		}
		r.segStart = start
	}
	s := r.seg
	if _, err := s.f.Write(r.out); err != nil {
		return r.failed("write", err)
	}
	if r.cfg.Sync == SyncFragment {
		if err := s.f.Sync(); err != nil {
			return r.failed("sync", err)
		}
	}
	s.size += int64(len(r.out))
	s.frags++
	r.stats.fragments.Add(1)
	r.stats.bytes.Add(uint64(len(r.out)))
	r.log.Debug("fmp4: fragment written", "file", s.path, "seq", r.seq, "bytes", len(r.out))
	return nil
}

// failed handles a write or sync of a fragment that failed (a full disk):
// the open segment is cut back to its whole fragments, closed, and removed
// if that leaves no fragment; the error is logged and returned naming the
// file. Only regular files are cut or removed.
func (r *recorder) failed(op string, cause error) error {
	s := r.seg
	r.seg = nil
	r.seq-- // the fragment is not in the file
	err := fmt.Errorf("fmp4: %s %s: %w", op, s.path, cause)
	regular := false
	if st, serr := s.f.Stat(); serr == nil {
		regular = st.Mode().IsRegular()
	}
	if regular {
		if terr := s.f.Truncate(s.size); terr != nil {
			r.log.Error("fmp4: cannot cut the segment back to its last fragment", "path", r.cfg.Path, "file", s.path, "err", terr)
		}
	}
	_ = s.f.Close()
	kept := true
	if regular && s.frags == 0 {
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			r.log.Error("fmp4: cannot remove the empty segment", "path", r.cfg.Path, "file", s.path, "err", rerr)
		} else {
			kept = false
			if n := len(r.files); n > 0 && r.files[n-1] == s.path {
				r.files = r.files[:n-1]
			}
		}
	}
	r.log.Error("fmp4: recording stopped: "+op+" failed", "path", r.cfg.Path, "file", s.path, "err", cause,
		"fragments", s.frags, "bytes", s.size, "kept", kept)
	if kept {
		r.finished = append(r.finished, segInfo{path: s.path, size: s.size, end: r.cfg.Now()})
		r.retain()
	}
	return err
}

// reopen makes the segment the previous Run left the open one again, for
// appending, unless rotation is due at media time start or the file is not
// as that Run left it. r.last is consumed either way.
func (r *recorder) reopen(start time.Duration) {
	l := r.last
	r.last = nil
	if r.cfg.SegmentDuration > 0 && start-r.segStart >= r.cfg.SegmentDuration {
		return
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		r.log.Warn("fmp4: cannot continue the last segment, starting a new one", "path", r.cfg.Path, "file", l.path, "err", err)
		return
	}
	if st, err := f.Stat(); err != nil || st.Size() != l.size {
		_ = f.Close()
		r.log.Warn("fmp4: the last segment changed since it was closed, starting a new one", "path", r.cfg.Path, "file", l.path)
		return
	}
	r.seg = &segment{path: l.path, f: f, size: l.size, frags: l.frags, start: l.start}
	for i, fi := range r.finished {
		if fi.path == l.path {
			r.finished = slices.Delete(r.finished, i, i+1)
			break
		}
	}
	r.log.Info("fmp4: recording continues", "path", r.cfg.Path, "file", l.path)
}

// openSegment creates the next segment file.
func (r *recorder) openSegment() error {
	now := r.cfg.Now()
	r.nseg++
	name := expandTemplate(r.cfg.FileTemplate, r.cfg.Path, now, r.nseg)
	path := filepath.Join(r.cfg.Dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("fmp4: create directory for %s: %w", path, err)
	}
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext)
	for n := 1; ; n++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			r.last = nil
			r.seg = &segment{path: path, f: f, start: now}
			r.files = append(r.files, path)
			r.stats.segments.Add(1)
			r.log.Info("fmp4: recording", "file", path)
			return nil
		}
		if !errors.Is(err, os.ErrExist) || n > 1000 {
			return fmt.Errorf("fmp4: create %s: %w", path, err)
		}
		path = fmt.Sprintf("%s-%d%s", base, n, ext)
	}
}

// closeSegment syncs and closes the open segment and applies retention.
func (r *recorder) closeSegment() error {
	s := r.seg
	if s == nil {
		return nil
	}
	r.seg = nil
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	r.finished = append(r.finished, segInfo{path: s.path, size: s.size, end: r.cfg.Now()})
	if err != nil {
		r.log.Error("fmp4: closing the segment failed", "path", r.cfg.Path, "file", s.path, "err", err)
		r.retain()
		return fmt.Errorf("fmp4: close %s: %w", s.path, err)
	}
	r.log.Info("fmp4: segment closed", "file", s.path, "bytes", s.size, "fragments", s.frags)
	r.retain()
	return nil
}

// retain deletes the oldest finished segments beyond MaxAge or
// MaxTotalBytes. The newest finished segment is always kept.
func (r *recorder) retain() {
	now := r.cfg.Now()
	var total int64
	for _, s := range r.finished {
		total += s.size
	}
	for len(r.finished) > 1 { // the newest finished segment is kept
		s := r.finished[0]
		old := r.cfg.MaxAge > 0 && now.Sub(s.end) > r.cfg.MaxAge
		big := r.cfg.MaxTotalBytes > 0 && total > r.cfg.MaxTotalBytes
		if !old && !big {
			return
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("fmp4: retention: cannot delete segment", "file", s.path, "err", err)
		} else {
			r.log.Info("fmp4: retention: segment deleted", "file", s.path, "bytes", s.size)
		}
		total -= s.size
		r.finished = r.finished[1:]
	}
}

// finish flushes what is pending and closes the open segment, which the
// next Run may continue.
func (r *recorder) finish() error {
	err := r.flush(-1, nil)
	s := r.seg
	cerr := r.closeSegment()
	if err == nil && cerr == nil && s != nil {
		r.last = &segment{path: s.path, size: s.size, frags: s.frags, start: s.start}
	}
	if err == nil {
		err = cerr
	}
	return err
}

// abort closes the open segment after an error without flushing. The file
// holds whole fragments; it is kept, under retention.
func (r *recorder) abort() {
	if s := r.seg; s != nil {
		r.seg = nil
		_ = s.f.Close()
		r.finished = append(r.finished, segInfo{path: s.path, size: s.size, end: r.cfg.Now()})
		r.retain()
	}
}

// expandTemplate fills in a file name template.
func expandTemplate(tmpl, path string, start time.Time, seq int) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			break
		}
		j := strings.IndexByte(tmpl[i:], '}')
		if j < 0 {
			b.WriteString(tmpl)
			break
		}
		b.WriteString(tmpl[:i])
		key, arg, _ := strings.Cut(tmpl[i+1:i+j], ":")
		switch key {
		case "path":
			b.WriteString(cleanPath(path))
		case "start":
			if arg == "" {
				arg = "20060102-150405"
			}
			b.WriteString(start.UTC().Format(arg))
		case "seq":
			fmt.Fprintf(&b, "%04d", seq)
		default:
			b.WriteString(tmpl[i : i+j+1])
		}
		tmpl = tmpl[i+j+1:]
	}
	return b.String()
}

// cleanPath makes a broadcast path safe as a relative file path that any
// file system opens: no leading slash, no "." or ".." elements, no control
// characters or characters file systems reserve (\ : * ? " < > |, each
// replaced by '_'), and no element longer than maxNameElement bytes.
// Broadcast paths are validated before they get here (moq.ValidatePath);
// this is the recording directory's own guarantee.
func cleanPath(p string) string {
	var parts []string
	for _, e := range strings.Split(p, "/") {
		if e == "" || e == "." || e == ".." {
			continue
		}
		e = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || strings.ContainsRune(`\:*?"<>|`, r) {
				return '_'
			}
			return r
		}, e)
		parts = append(parts, truncateUTF8(e, maxNameElement))
	}
	if len(parts) == 0 {
		return "broadcast"
	}
	return filepath.Join(parts...)
}

// maxNameElement bounds one element of a path made from a broadcast path,
// leaving room under the common 255-byte file name limit for what a
// template appends to the last one.
const maxNameElement = 200

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// stripTemporalDelimiter removes a leading AV1 temporal delimiter OBU,
// which MP4 samples must not contain (AV1-ISOBMFF §2.4).
func stripTemporalDelimiter(b []byte) []byte {
	if len(b) < 2 || (b[0]>>3)&0xf != 2 || b[0]&2 == 0 {
		return b
	}
	n := 1
	if b[0]&4 != 0 {
		n++ // extension header
	}
	var size, shift uint
	for ; n < len(b) && shift < 56; shift += 7 {
		c := b[n]
		n++
		size |= uint(c&0x7f) << shift
		if c&0x80 == 0 {
			if uint(len(b)-n) < size {
				return b
			}
			return b[n+int(size):]
		}
	}
	return b
}

// Package fmp4 is the MP4 source of moqbridge: it reads fragmented MP4
// (a file, or a live byte stream such as the standard output of ffmpeg
// -movflags cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame)
// and progressive MP4 files (a moov with sample tables), and writes their
// H.264, H.265, AV1, VP9, AAC and Opus tracks into an sdk.BroadcastWriter.
//
// Samples are passed through unchanged (length-prefixed NAL units for
// H.264 and H.265, as stored in MP4, with the avcC/hvcC as the track's
// decoder configuration). Frame timestamps are the media timestamps of the
// file: DTS from tfdt and sample durations (stts in progressive files),
// PTS = DTS + composition offset; edit lists are ignored, as the reference
// importer does. Frames are written in decode order; Frame.DTS is set
// where it differs from PTS. One repair: ffmpeg (5.1) with frag_every_frame
// writes audio fragments whose tfdt repeats or skips its predecessor's by a
// frame, some with a zero duration; an audio tfdt within one frame of the
// track's running timeline snaps onto it, and a zero audio duration takes
// the previous one, so the audio timeline stays continuous.
package fmp4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

// Options tune a Source. The zero value paces files in real time.
type Options struct {
	// Fast writes frames as fast as possible. By default a seekable
	// input (a file) is paced in real time: every frame is written when
	// the wall clock since the first frame reaches its decode time.
	// Streams are never paced unless Realtime is set (a live stream comes
	// at its own pace).
	Fast bool
	// Realtime paces a non-seekable stream too (say, a file piped in).
	Realtime bool
	// Loop rewinds a seekable input at its end and plays it again,
	// forever: timestamps keep increasing (each pass is offset by the
	// media duration) and the tracks, hence their group sequences,
	// continue.
	Loop bool
	// MaxBoxSize bounds a box held in memory (moov, moof, a fragment's
	// mdat); 0 means DefaultMaxBoxSize.
	MaxBoxSize int64
	// Progress, if set, is called as input is consumed with the bytes
	// read so far in the current pass and the input size (-1 when
	// unknown, for streams).
	Progress func(read, total int64)
	// OnTracks, if set, is called once the tracks are added to the
	// writer and before any frame is written, with the tracks as
	// published; an error aborts Run.
	OnTracks func(tracks []sdk.Track) error
}

// Source reads MP4 from an io.Reader. It implements sdk.Source; Run may be
// called once.
type Source struct {
	r     io.Reader
	opt   Options
	owned io.Closer // closed when Run returns
	// tap, when set (tests), receives the frames instead of the writer.
	tap func(track int, tw *sdk.TrackWriter, f sdk.Frame) error
}

// New returns a Source reading r. If r is an io.ReadSeeker that can seek
// (a regular file), it is a file: paced unless Options.Fast, loopable, and
// progressive MP4 is supported. Otherwise it is a stream of fragmented
// MP4. If r is an io.Closer, it is closed when Run's context ends so that
// a blocked read returns; the caller closes it otherwise.
func New(r io.Reader, opt Options) *Source {
	return &Source{r: r, opt: opt}
}

// Open returns a Source reading the named file; Run closes the file.
func Open(name string, opt Options) (*Source, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("fmp4: %w", err)
	}
	return &Source{r: f, opt: opt, owned: f}, nil
}

// ErrNoTracks is returned when the input ends before a moov, or before
// any media.
var ErrNoTracks = errors.New("fmp4: no moov before the end of the input")

// run holds the state of one Run.
type run struct {
	s       *Source
	ctx     context.Context
	w       *sdk.BroadcastWriter
	seeker  io.ReadSeeker
	total   int64
	paced   bool
	writers map[*trackInfo]*sdk.TrackWriter
	index   map[*trackInfo]int
	order   []*sdk.TrackWriter // by track index of the moov
	// Timing: offset added to every timestamp (loop passes), the wall
	// clock and decode time of the first frame.
	offset    time.Duration
	started   bool
	wallStart time.Time
	mediaBase time.Duration
	// Per pass: earliest decode time and latest end time written.
	passStart, passEnd time.Duration
	passAny            bool
	// merge orders the samples of a paced file's fragments across tracks.
	merge fragMerge
}

// writeSample writes one sample of a fragment.
func (ru *run) writeSample(s fragSample) error {
	return ru.write(s.t, s.dts, s.cts, s.dur, s.key, s.data)
}

// Run implements sdk.Source. It returns nil at the end of the input (never
// with Loop on a file), ctx.Err() when ctx ends, and a *FormatError for
// malformed input.
func (s *Source) Run(ctx context.Context, w *sdk.BroadcastWriter) error {
	if s.owned != nil {
		defer s.owned.Close()
	}
	if c, ok := s.r.(io.Closer); ok {
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		defer stop()
	}
	ru := &run{s: s, ctx: ctx, w: w, total: -1, writers: map[*trackInfo]*sdk.TrackWriter{}, index: map[*trackInfo]int{}}
	if sk, ok := s.r.(io.ReadSeeker); ok {
		if end, err := sk.Seek(0, io.SeekEnd); err == nil {
			if _, err := sk.Seek(0, io.SeekStart); err == nil {
				ru.seeker, ru.total = sk, end
			}
		}
	}
	ru.paced = !s.opt.Fast && (ru.seeker != nil || s.opt.Realtime)
	for pass := 0; ; pass++ {
		err := ru.pass(pass)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return err
		}
		if !s.opt.Loop || ru.seeker == nil {
			return nil
		}
		span := ru.passEnd - ru.passStart
		if !ru.passAny || span <= 0 {
			return nil
		}
		ru.offset += span
		ru.passAny = false
		if _, err := ru.seeker.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("fmp4: rewind: %w", err)
		}
	}
}

// pass reads the input once, from its start.
func (ru *run) pass(n int) error {
	opt := ru.s.opt
	br := NewBoxReader(ru.s.r, opt.MaxBoxSize)
	progress := func() {
		if opt.Progress != nil {
			opt.Progress(br.Offset(), ru.total)
		}
	}
	var m *movie
	var moof []byte
	var moofH BoxHeader
	next := map[uint32]int64{}
	for {
		if err := ru.ctx.Err(); err != nil {
			return err
		}
		h, err := br.Next()
		if errors.Is(err, io.EOF) {
			progress()
			if moof != nil {
				return formatErr(br.Offset(), "stream ends after a moof without its mdat (moof at byte %d)", moofH.Offset)
			}
			if m == nil {
				return ErrNoTracks
			}
			return ru.merge.flush(ru.writeSample)
		}
		if err != nil {
			return err
		}
		switch h.Type {
		case "moov":
			if m != nil {
				return formatErr(h.Offset, "second moov")
			}
			body, err := br.Body()
			if err != nil {
				return err
			}
			if m, err = parseMoov(body, h.Offset+int64(h.HeaderLen)); err != nil {
				return err
			}
			if err := ru.addTracks(m, n); err != nil {
				return err
			}
			if m.samples {
				if ru.seeker == nil {
					return formatErr(h.Offset, "progressive MP4 (sample tables in the moov) needs a seekable file, not a stream")
				}
				return ru.progressive(m, br.Offset())
			}
		case "moof":
			if m == nil {
				return formatErr(h.Offset, "moof before moov")
			}
			if moof != nil {
				return formatErr(h.Offset, "moof follows the moof at byte %d without an mdat", moofH.Offset)
			}
			body, err := br.Body()
			if err != nil {
				return err
			}
			moof, moofH = body, h
		case "mdat":
			if moof == nil {
				// Media data of a progressive file, before its moov.
				if err := br.Skip(); err != nil {
					return err
				}
				break
			}
			body, err := br.Body()
			if err != nil {
				return err
			}
			samples, err := parseFragment(m, moof, moofH.Offset, moofH.HeaderLen, body, h.Offset+int64(h.HeaderLen), next)
			moof = nil
			if err != nil {
				return err
			}
			if ru.paced && ru.seeker != nil {
				if err := ru.merge.add(m, samples, ru.writeSample); err != nil {
					return err
				}
				break
			}
			for _, s := range samples {
				if err := ru.writeSample(s); err != nil {
					return err
				}
			}
		default:
			// ftyp, styp, sidx, free, mfra, …
			if err := br.Skip(); err != nil {
				return err
			}
		}
		progress()
	}
}

// addTracks adds the movie's tracks to the writer on the first pass and
// maps them to the existing writers on later ones.
func (ru *run) addTracks(m *movie, pass int) error {
	clear(ru.index)
	for i, t := range m.tracks {
		ru.index[t] = i
	}
	if ru.w == nil {
		return nil
	}
	if pass > 0 {
		if len(m.tracks) != len(ru.order) {
			return fmt.Errorf("fmp4: the input changed while looping")
		}
		clear(ru.writers)
		for i, t := range m.tracks {
			ru.writers[t] = ru.order[i]
		}
		return nil
	}
	ts := make([]sdk.Track, len(m.tracks))
	for i, t := range m.tracks {
		ts[i] = t.track
	}
	tws, err := ru.w.AddTracks(ts...)
	if err != nil {
		return fmt.Errorf("fmp4: %w", err)
	}
	ru.order = tws
	published := make([]sdk.Track, len(tws))
	for i, t := range m.tracks {
		ru.writers[t] = tws[i]
		published[i] = tws[i].Track()
	}
	if ru.s.opt.OnTracks != nil {
		if err := ru.s.opt.OnTracks(published); err != nil {
			return err
		}
	}
	return nil
}

// progressive writes the samples of a progressive file in decode order
// across tracks, reading them at their offsets.
func (ru *run) progressive(m *movie, consumed int64) error {
	idx := make([]int, len(m.tracks))
	var buf []byte
	read := consumed
	for {
		if err := ru.ctx.Err(); err != nil {
			return err
		}
		best := -1
		var bestT time.Duration
		for i, t := range m.tracks {
			if idx[i] >= len(t.samples) {
				continue
			}
			d := ticks(t.samples[idx[i]].dts, t.timescale)
			if best < 0 || d < bestT {
				best, bestT = i, d
			}
		}
		if best < 0 {
			if ru.s.opt.Progress != nil {
				ru.s.opt.Progress(ru.total, ru.total)
			}
			return nil
		}
		t := m.tracks[best]
		s := t.samples[idx[best]]
		idx[best]++
		if s.size == 0 {
			continue
		}
		if s.off < 0 || s.off > ru.total || int64(s.size) > ru.total-s.off {
			return formatErr(s.off, "track %d sample of %d bytes lies beyond the end of the file (%d bytes)", t.id, s.size, ru.total)
		}
		if int64(s.size) > ru.maxBox() {
			return formatErr(s.off, "track %d sample of %d bytes exceeds the %d-byte limit", t.id, s.size, ru.maxBox())
		}
		if cap(buf) < int(s.size) {
			buf = make([]byte, s.size)
		}
		data := buf[:s.size]
		if _, err := ru.seeker.Seek(s.off, io.SeekStart); err != nil {
			return fmt.Errorf("fmp4: seek: %w", err)
		}
		if _, err := io.ReadFull(ru.seeker, data); err != nil {
			return readErr(s.off, "sample data", err)
		}
		if err := ru.write(t, s.dts, s.cts, s.dur, s.key, data); err != nil {
			return err
		}
		read += int64(s.size)
		if ru.s.opt.Progress != nil {
			ru.s.opt.Progress(min(read, ru.total), ru.total)
		}
	}
}

func (ru *run) maxBox() int64 {
	if ru.s.opt.MaxBoxSize > 0 {
		return ru.s.opt.MaxBoxSize
	}
	return DefaultMaxBoxSize
}

// ticks converts a time in timescale units to a duration, without
// overflow for any int64 tick count that fits a duration.
func ticks(v int64, timescale uint32) time.Duration {
	ts := int64(timescale)
	return time.Duration(v/ts)*time.Second + time.Duration(v%ts)*time.Second/time.Duration(ts)
}

// write paces and writes one sample.
func (ru *run) write(t *trackInfo, dts int64, cts int32, dur uint32, key bool, data []byte) error {
	tw := ru.writers[t]
	if tw == nil && ru.s.tap == nil {
		return nil
	}
	d := ticks(dts, t.timescale)
	p := ticks(dts+int64(cts), t.timescale)
	end := ticks(dts+int64(dur), t.timescale)
	if !ru.passAny || d < ru.passStart {
		ru.passStart = d
	}
	if !ru.passAny || end > ru.passEnd {
		ru.passEnd = end
	}
	ru.passAny = true
	d += ru.offset
	p += ru.offset
	if p < 0 {
		p = 0
	}
	if d < 0 {
		d = 0
	}
	if ru.paced {
		if !ru.started {
			ru.started, ru.wallStart, ru.mediaBase = true, time.Now(), d
		}
		if wait := time.Until(ru.wallStart.Add(d - ru.mediaBase)); wait > 0 {
			tm := time.NewTimer(wait)
			select {
			case <-ru.ctx.Done():
				tm.Stop()
				return ru.ctx.Err()
			case <-tm.C:
			}
		}
	}
	f := sdk.Frame{PTS: p, Keyframe: key, Payload: data}
	if d != p {
		f.DTS, f.HasDTS = d, true
	}
	if ru.s.tap != nil {
		return ru.s.tap(ru.index[t], tw, f)
	}
	if err := tw.WriteFrame(f); err != nil {
		return fmt.Errorf("fmp4: %w", err)
	}
	return nil
}

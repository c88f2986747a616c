package fmp4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

// SyncPolicy says when segment files are flushed to stable storage.
type SyncPolicy int

const (
	// SyncSegment calls fsync when a segment file is closed (rotation,
	// end of broadcast, graceful stop). Fragments are still written with
	// one write each, so a killed process leaves every file readable up to
	// its last fragment; only a power loss or kernel crash can lose the
	// unsynced tail of the open segment.
	SyncSegment SyncPolicy = iota
	// SyncFragment also calls fsync after every fragment.
	SyncFragment
)

// Defaults of Config.
const (
	DefaultFileTemplate   = "{path}/{start:20060102-150405}.mp4"
	DefaultPartDuration   = time.Second
	DefaultVideoTimescale = 90000
	DefaultStartWait      = 2 * time.Second
	DefaultReadBatch      = 100 * time.Millisecond
)

// Config configures a Sink. Only Dir is required.
type Config struct {
	// Dir is the directory the recordings are written under. It is
	// created if missing.
	Dir string

	// Path is the broadcast path, used by the {path} placeholder.
	Path string

	// FileTemplate names each segment file, relative to Dir. Placeholders:
	// {path} (the broadcast path, made safe as a relative path),
	// {start:LAYOUT} (the wall-clock time the segment was opened, UTC,
	// formatted with the Go time layout; {start} uses 20060102-150405) and
	// {seq} (the segment number, from 0001, going on over the Runs of a
	// Sink). A name that exists already gets a -N suffix. Default
	// DefaultFileTemplate.
	FileTemplate string

	// SegmentDuration starts a new file at the first video keyframe (or,
	// without video, the first fragment boundary) after this much media
	// time in the current one. 0 records one file.
	SegmentDuration time.Duration

	// PartDuration is the span of one fragment when there is no video
	// track to cut fragments at keyframes. Default DefaultPartDuration.
	PartDuration time.Duration

	// MaxAge deletes finished segments of this sink (of all its Runs)
	// older than this (measured from when they were closed); 0 keeps them.
	MaxAge time.Duration
	// MaxTotalBytes deletes the oldest finished segments of this sink
	// while their total size exceeds it; 0 means no limit.
	MaxTotalBytes int64

	// Sync is the fsync policy. Default SyncSegment.
	Sync SyncPolicy

	// VideoTimescale is the mdhd timescale of video tracks. Default
	// DefaultVideoTimescale. Audio uses the sample rate (48000 for Opus).
	VideoTimescale uint32

	// StartWait bounds how long the sink waits for the first frame of
	// every track before it fixes the common time origin (the smallest
	// first timestamp) and starts writing. Default DefaultStartWait.
	StartWait time.Duration

	// ReadBatch is how long the sink lets frames gather in the tracks
	// before it takes them (sdk.InterleaverConfig.Batch): a fragment is
	// written per group of pictures anyway, so waking for every frame
	// only costs CPU. Frames reach the file up to this much later.
	// Default DefaultReadBatch; negative reads every frame as it comes.
	ReadBatch time.Duration

	// Logger receives progress; default slog.Default().
	Logger *slog.Logger

	// OnSubscribed, if set, is called by Run once it has subscribed to
	// every track it records, before it reads a frame: frames written
	// from then on reach the recording.
	OnSubscribed func()
	// OnStart, if set, is called by Run when recording starts: the first
	// frame of every track arrived (or StartWait passed) and the time
	// origin is fixed, before the first frame is recorded.
	OnStart func()

	// Now returns the wall-clock time for file names and retention;
	// default time.Now.
	Now func() time.Time
}

// Sink records a broadcast into fragmented MP4 files. It implements
// sdk.Sink.
type Sink struct {
	cfg Config

	stats stats

	running atomic.Bool
	rec     *recorder // kept from one Run to the next; used by the running Run only

	mu    sync.Mutex
	files []string
}

// ErrSourceLost is wrapped by the error Run returns when the broadcast was
// lost rather than ended: a track (or, before recording started, the
// catalog) ended with an error other than io.EOF or moq.ErrClosed, for
// example because the relay or the publisher's connection went away. What
// was recorded is written and the file closed as for a clean end; calling
// Run again with the broadcast once it is back continues the recording.
var ErrSourceLost = errors.New("fmp4: source lost")

// catalogSettle is how long the catalog must hold still before Run takes
// its tracks.
const catalogSettle = 200 * time.Millisecond

// Stats counts what a Sink recorded.
type Stats struct {
	Frames    uint64 // frames received from the tracks
	Dropped   uint64 // frames not recorded (waiting for a keyframe, timestamps going back)
	Fragments uint64 // moof+mdat fragments written
	Bytes     uint64 // bytes written to segment files
	Segments  uint64 // segment files created (a file a later Run continues counts once)
}

type stats struct {
	frames, dropped, fragments, bytes, segments atomic.Uint64
}

// Stats returns the sink's counters; safe to call while Run runs.
func (s *Sink) Stats() Stats {
	return Stats{
		Frames:    s.stats.frames.Load(),
		Dropped:   s.stats.dropped.Load(),
		Fragments: s.stats.fragments.Load(),
		Bytes:     s.stats.bytes.Load(),
		Segments:  s.stats.segments.Load(),
	}
}

var _ sdk.Sink = (*Sink)(nil)

// New returns a Sink with cfg, defaults filled in.
func New(cfg Config) *Sink {
	if cfg.FileTemplate == "" {
		cfg.FileTemplate = DefaultFileTemplate
	}
	if cfg.PartDuration <= 0 {
		cfg.PartDuration = DefaultPartDuration
	}
	if cfg.VideoTimescale == 0 {
		cfg.VideoTimescale = DefaultVideoTimescale
	}
	if cfg.StartWait <= 0 {
		cfg.StartWait = DefaultStartWait
	}
	if cfg.ReadBatch == 0 {
		cfg.ReadBatch = DefaultReadBatch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sink{cfg: cfg}
}

// Files returns the segment files the sink has created over all its
// Runs, in order, including any deleted by retention since (but not a new
// file removed because its first fragment could not be written). A file
// that a later Run continues is listed once.
func (s *Sink) Files() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.files...)
}

// Run records r until the broadcast ends or ctx ends; either way the
// pending fragment is written and the file closed. It returns nil then,
// unless the broadcast was lost: when a track ended with an error other
// than io.EOF or moq.ErrClosed (and ctx is not done), Run writes and
// closes as well and returns an error that wraps ErrSourceLost and the
// track's error. A write error (unwritable directory, full disk) ends Run
// with an error naming the file, which takes precedence.
//
// Run records the tracks of the catalog as it is when recording starts; a
// track whose codec cannot go into MP4 is skipped with a warning.
//
// Run waits for a catalog that lists tracks and has not changed for
// 200 ms before it subscribes. Config.Path, when empty, is taken from the
// reader (set by the SDK wiring).
//
// Run may be called again on the same Sink, one call at a time (a
// concurrent call fails), to go on recording after the broadcast came back
// with a new reader: with the same tracks (identical sample entries) the
// next fragment is appended to the file the previous Run closed, unless
// rotation is due; with other tracks a new file starts. File numbering
// ({seq}), Files(), retention and the media time continue across Runs; see
// the package documentation.
func (s *Sink) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("fmp4: Run called while another Run of the same Sink runs")
	}
	defer s.running.Store(false)
	log := s.cfg.Logger
	if s.cfg.Path == "" {
		s.cfg.Path = r.Path()
	}
	// A publisher may list its tracks one by one (the reference browser
	// publisher starts with an empty catalog): record the set once it
	// holds still.
	if ok, err := r.WaitSinkTracks(ctx, catalogSettle, "fmp4", ErrSourceLost); !ok {
		return err
	}
	if err := checkDir(s.cfg.Dir); err != nil {
		return err
	}
	all := r.Tracks()
	rec := s.rec
	if rec == nil {
		var err error
		if rec, err = newRecorder(&s.cfg, all); err != nil {
			return err
		}
		rec.stats = &s.stats
		s.rec = rec
	} else if err := rec.reset(all); err != nil {
		return err
	}
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	names := make([]string, len(rec.tracks))
	for i, k := range rec.tracks {
		names[i] = k.t.Name
	}
	readers, closeReaders, err := r.SubscribeSinkTracks(ctx, names, "fmp4", ErrSourceLost)
	if err != nil {
		return err
	}
	defer closeReaders()
	if s.cfg.OnSubscribed != nil {
		s.cfg.OnSubscribed()
	}
	// Frames go to the recorder as they arrive: it groups the tracks
	// into fragments itself (audio waits for the video group it goes
	// with, up to maxAudioWait).
	il := sdk.NewInterleaver(ctx, sdk.InterleaverConfig{
		StartWait: s.cfg.StartWait,
		Batch:     max(s.cfg.ReadBatch, 0),
		OnFrame:   func(int) { s.stats.frames.Add(1) },
	}, readers...)
	defer il.Close()
	defer cancel() // runs before il.Close
	log.Info("fmp4: subscribed", "path", s.cfg.Path, "tracks", len(readers))

	lost, err := s.loop(ctx, rec, il)
	if err != nil {
		rec.abort()
		s.noteFiles(rec)
		return err
	}
	err = rec.finish()
	s.noteFiles(rec)
	if err != nil {
		return err
	}
	if lost != nil && outer.Err() == nil {
		return fmt.Errorf("%w: %w", ErrSourceLost, lost)
	}
	return nil
}

func (s *Sink) noteFiles(rec *recorder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files = append(s.files[:0], rec.files...)
}

// loop feeds the frames of il to rec until every track ended or ctx
// ended. lost is the first track that ended with an error (see
// ErrSourceLost).
func (s *Sink) loop(ctx context.Context, rec *recorder, il *sdk.Interleaver) (lost, err error) {
	for {
		it, err := il.Next(ctx)
		if err != nil { // every track ended, or ctx
			return lost, nil
		}
		if !rec.originSet {
			if origin, ok := il.Origin(); ok {
				rec.setOrigin(origin)
				if s.cfg.OnStart != nil {
					s.cfg.OnStart()
				}
			}
		}
		if it.Err != nil {
			if !sdk.Ended(it.Err) {
				name := rec.tracks[it.Track].t.Name
				rec.log.Warn("fmp4: track ended with an error", "path", s.cfg.Path, "track", name, "err", it.Err)
				if lost == nil {
					lost = fmt.Errorf("track %q: %w", name, it.Err)
				}
			}
			rec.endTrack(it.Track)
			continue
		}
		if err := rec.frame(it.Track, &it.Frame); err != nil {
			return lost, err
		}
	}
}

// checkDir creates dir and checks that files can be created in it.
func checkDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("fmp4: recording directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".fmp4-probe-*")
	if err != nil {
		return fmt.Errorf("fmp4: recording directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	_ = f.Close()
	_ = os.Remove(name)
	return nil
}

package sdk

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// DefaultAudioGroupDuration is how much audio a group holds by default.
const DefaultAudioGroupDuration = time.Second

// ErrEmptyPayload is returned for a frame without payload: in the legacy
// container an empty payload is a marker, not a sample.
var ErrEmptyPayload = errors.New("empty frame payload")

// WriterConfig tunes a BroadcastWriter. The zero value is ready to use.
type WriterConfig struct {
	// AudioGroupDuration is the span of presentation time after which an
	// audio track starts a new group (default DefaultAudioGroupDuration),
	// in audio-only broadcasts and alongside video alike. A subscriber
	// joins at the start of the latest group, so this bounds how much
	// audio a late joiner receives at once.
	AudioGroupDuration time.Duration
}

// BroadcastWriter is what a source writes into: it maps tracks and frames
// onto a moq.BroadcastWriter in the hang format.
//
//   - The catalog.json track (priority 100) gets a new group holding the
//     full catalog JSON whenever the set of tracks changes. It exists from
//     NewBroadcastWriter on, so a reader that subscribes before the first
//     catalog waits for it; still, publish the protocol broadcast into an
//     Origin after adding the initial tracks, since players treat a
//     broadcast without a catalog as loading.
//   - Every media track is a MOQ track of the same name. Video starts a
//     new group at every keyframe (a group is a GOP); frames of a video
//     track before its first keyframe are dropped (counted by
//     TrackWriter.Dropped), since a group must start with one. Audio
//     starts a new group every WriterConfig.AudioGroupDuration of
//     presentation time, or when the timestamp goes backwards. Group
//     sequence numbers are consecutive.
//   - Every frame is written in the legacy container: the presentation
//     timestamp in microseconds as a varint, then the payload.
//
// AddTrack, AddTracks, Tracks and Close are safe for concurrent use; each
// TrackWriter is written by one goroutine at a time.
type BroadcastWriter struct {
	b       *moq.BroadcastWriter
	cfg     WriterConfig
	catalog *moq.TrackWriter

	mu       sync.Mutex
	closed   bool
	tracks   []*TrackWriter // in the order they were added
	names    map[string]*TrackWriter
	counter  int           // tracks added, for generated names
	lastJSON []byte        // the catalog last published
	written  chan struct{} // closed once the first catalog is published
	// gone holds the final counters of tracks removed or closed, by
	// name, so that Stats keeps counting what they wrote.
	gone map[string]TrackStats
}

// NewBroadcastWriter wraps b, which the caller publishes into an Origin,
// and creates its catalog.json track. The BroadcastWriter owns b from then
// on: Close closes it.
func NewBroadcastWriter(b *moq.BroadcastWriter, cfg WriterConfig) (*BroadcastWriter, error) {
	if cfg.AudioGroupDuration <= 0 {
		cfg.AudioGroupDuration = DefaultAudioGroupDuration
	}
	cat, err := b.CreateTrack(CatalogTrackName, PriorityCatalog)
	if err != nil {
		return nil, fmt.Errorf("sdk: create %s track: %w", CatalogTrackName, err)
	}
	return &BroadcastWriter{b: b, cfg: cfg, catalog: cat, names: make(map[string]*TrackWriter), written: make(chan struct{})}, nil
}

// CatalogWritten returns a channel closed once the first catalog group is
// published, that is when the initial tracks have been added. Publish the
// protocol broadcast into an Origin then, so that a subscriber reacting to
// its announcement finds catalog.json.
func (w *BroadcastWriter) CatalogWritten() <-chan struct{} { return w.written }

// AddTrack adds a track and publishes the new catalog. An empty t.Name is
// replaced by "video<n>" or "audio<n>" (n counting the tracks added, as
// the reference importer does). It
// fails if the track is invalid (no codec, audio without sample rate or
// channels, a container other than legacy), if the name is taken or
// reserved for a catalog track, or after Close.
func (w *BroadcastWriter) AddTrack(t Track) (*TrackWriter, error) {
	tws, err := w.AddTracks(t)
	if err != nil {
		return nil, err
	}
	return tws[0], nil
}

// AddTracks adds several tracks with a single catalog update, so a player
// never sees a catalog with only some of them. Nothing is added if one of
// them is rejected.
func (w *BroadcastWriter) AddTracks(ts ...Track) ([]*TrackWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, fmt.Errorf("sdk: add track: %w", moq.ErrClosed)
	}
	ts = append([]Track(nil), ts...)
	seen := make(map[string]bool, len(ts))
	for i := range ts {
		t := &ts[i]
		if t.Name == "" {
			// Kind plus one counter over all tracks, as the reference
			// fMP4 importer names them (video0, audio1), skipping
			// names in use.
			for {
				t.Name = t.Kind.String() + strconv.Itoa(w.counter)
				w.counter++
				if w.names[t.Name] == nil && !seen[t.Name] {
					break
				}
			}
		} else {
			w.counter++
		}
		if err := t.validate(); err != nil {
			return nil, fmt.Errorf("sdk: add track: %w", err)
		}
		switch t.Name {
		case CatalogTrackName, CatalogTrackName + ".z", "catalog":
			return nil, fmt.Errorf("sdk: add track: name %q is reserved", t.Name)
		}
		if w.names[t.Name] != nil || seen[t.Name] {
			return nil, fmt.Errorf("sdk: add track %q: %w", t.Name, moq.ErrDuplicate)
		}
		seen[t.Name] = true
		t.Container = ContainerLegacy
		t.Init = nil
		t.Timescale = 0
		t.DecoderConfig = append([]byte(nil), t.DecoderConfig...)
		if len(t.DecoderConfig) == 0 {
			t.DecoderConfig = nil
		}
	}
	tws := make([]*TrackWriter, 0, len(ts))
	for _, t := range ts {
		pt, err := w.b.CreateTrack(t.Name, t.priority())
		if err != nil {
			for _, tw := range tws {
				_ = tw.pt.Close()
			}
			return nil, fmt.Errorf("sdk: add track %q: %w", t.Name, err)
		}
		tws = append(tws, &TrackWriter{w: w, track: t, pt: pt, video: t.Kind == KindVideo, groupDur: w.cfg.AudioGroupDuration})
	}
	for _, tw := range tws {
		w.tracks = append(w.tracks, tw)
		w.names[tw.track.Name] = tw
	}
	if err := w.publishCatalogLocked(); err != nil {
		return nil, err
	}
	return tws, nil
}

// Tracks returns the tracks currently in the catalog, in the order they
// were added.
func (w *BroadcastWriter) Tracks() []Track {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Track, len(w.tracks))
	for i, tw := range w.tracks {
		out[i] = tw.track
	}
	return out
}

// publishCatalogLocked writes the catalog as a new group of one frame if
// it differs from the last one. The caller holds w.mu.
func (w *BroadcastWriter) publishCatalogLocked() error {
	ts := make([]Track, len(w.tracks))
	for i, tw := range w.tracks {
		ts[i] = tw.track
	}
	c, err := NewCatalog(ts)
	if err != nil {
		return fmt.Errorf("sdk: catalog: %w", err)
	}
	b, err := c.MarshalJSON()
	if err != nil {
		return fmt.Errorf("sdk: catalog: %w", err)
	}
	if w.lastJSON != nil && string(b) == string(w.lastJSON) {
		return nil
	}
	g, err := w.catalog.AppendGroup()
	if err != nil {
		return fmt.Errorf("sdk: catalog: %w", err)
	}
	if err := g.WriteFrame(b); err != nil {
		g.Abort(err)
		return fmt.Errorf("sdk: catalog: %w", err)
	}
	if err := g.Close(); err != nil {
		return fmt.Errorf("sdk: catalog: %w", err)
	}
	if w.lastJSON == nil {
		close(w.written)
	}
	w.lastJSON = b
	return nil
}

// removeTrack drops tw from the catalog and publishes it.
func (w *BroadcastWriter) removeTrack(tw *TrackWriter) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.names[tw.track.Name] != tw {
		return nil
	}
	delete(w.names, tw.track.Name)
	for i, t := range w.tracks {
		if t == tw {
			w.tracks = append(w.tracks[:i], w.tracks[i+1:]...)
			break
		}
	}
	w.keepStatsLocked(tw)
	return w.publishCatalogLocked()
}

// Close ends the broadcast: the open group of every track is closed, then
// the protocol broadcast, so readers get the remaining frames and then the
// end of every track. It returns moq.ErrClosed if already closed.
func (w *BroadcastWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return fmt.Errorf("sdk: close: %w", moq.ErrClosed)
	}
	w.closed = true
	tracks := w.tracks
	w.tracks = nil
	clear(w.names)
	w.mu.Unlock()

	for _, tw := range tracks {
		tw.finish()
	}
	w.mu.Lock()
	for _, tw := range tracks {
		w.keepStatsLocked(tw)
	}
	w.mu.Unlock()
	if err := w.b.Close(); err != nil && !errors.Is(err, moq.ErrClosed) {
		return fmt.Errorf("sdk: close: %w", err)
	}
	return nil
}

// TrackWriter writes the frames of one track. WriteFrame must be called by
// one goroutine at a time; Close may be called from any goroutine.
type TrackWriter struct {
	w        *BroadcastWriter
	track    Track
	pt       *moq.TrackWriter
	video    bool
	groupDur time.Duration
	dropped  atomic.Uint64
	groups   atomic.Uint64
	frames   atomic.Uint64
	bytes    atomic.Uint64

	mu         sync.Mutex
	closed     bool
	group      *moq.GroupWriter
	groupStart time.Duration // PTS of the group's first frame
	alloc      moq.FrameAllocator
}

// Track returns the track as published (with its assigned name).
func (t *TrackWriter) Track() Track { return t.track }

// Dropped returns the number of frames dropped because they came before the
// track's first keyframe.
func (t *TrackWriter) Dropped() uint64 { return t.dropped.Load() }

// Stats returns the track's counters: groups and frames written, their
// payload bytes, and the frames dropped before the first keyframe.
func (t *TrackWriter) Stats() TrackStats {
	return TrackStats{Groups: t.groups.Load(), Frames: t.frames.Load(), Bytes: t.bytes.Load(), Dropped: t.dropped.Load()}
}

// Stats returns the counters of every track the broadcast had, by name:
// those in the catalog, and those removed or ended by Close with what
// they wrote (a name used by several tracks in turn sums them). After
// Close it keeps returning the final counts.
func (w *BroadcastWriter) Stats() map[string]TrackStats {
	w.mu.Lock()
	tracks := append([]*TrackWriter(nil), w.tracks...)
	out := make(map[string]TrackStats, len(tracks)+len(w.gone))
	for name, st := range w.gone {
		out[name] = st
	}
	w.mu.Unlock()
	for _, tw := range tracks {
		out[tw.track.Name] = out[tw.track.Name].Add(tw.Stats())
	}
	return out
}

// keepStatsLocked adds the counters of tw, which left the catalog, to
// gone. The caller holds w.mu.
func (w *BroadcastWriter) keepStatsLocked(tw *TrackWriter) {
	if w.gone == nil {
		w.gone = make(map[string]TrackStats)
	}
	w.gone[tw.track.Name] = w.gone[tw.track.Name].Add(tw.Stats())
}

// WriteFrame writes one frame. Frames are written in decode order; f.PTS
// must be between 0 and MaxTimestamp and is carried in whole microseconds;
// f.DTS is not transmitted (the legacy container has none). A video
// keyframe starts a new group; a video frame before the track's first
// keyframe is dropped and nil returned. WriteFrame copies f.Payload into a
// buffer it takes from a slab allocator, so the caller may reuse it; small
// frames thus cost no allocation.
//
// It returns ErrEmptyPayload for an empty payload, an ErrTimestampRange
// error for a timestamp out of range, and moq.ErrClosed (wrapped)
// once the track or the broadcast is closed.
func (t *TrackWriter) WriteFrame(f Frame) error {
	if len(f.Payload) == 0 {
		return fmt.Errorf("sdk: track %q: %w", t.track.Name, ErrEmptyPayload)
	}
	us, err := timestampMicros(f.PTS)
	if err != nil {
		return fmt.Errorf("sdk: track %q: %w", t.track.Name, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("sdk: track %q: %w", t.track.Name, moq.ErrClosed)
	}
	var cut bool
	if t.video {
		if !f.Keyframe && t.group == nil {
			t.dropped.Add(1)
			return nil
		}
		cut = f.Keyframe
	} else {
		cut = t.group == nil || f.PTS < t.groupStart || f.PTS-t.groupStart >= t.groupDur
	}
	if cut {
		if t.group != nil {
			_ = t.group.Close()
			t.group = nil
		}
		g, err := t.pt.AppendGroup()
		if err != nil {
			return fmt.Errorf("sdk: track %q: %w", t.track.Name, err)
		}
		t.group, t.groupStart = g, f.PTS
		t.groups.Add(1)
	}
	buf := t.alloc.Alloc(varintLen(us) + len(f.Payload))
	copy(buf[putVarint(buf, us):], f.Payload)
	if err := t.group.WriteFrame(buf); err != nil {
		t.group = nil
		return fmt.Errorf("sdk: track %q: %w", t.track.Name, err)
	}
	t.frames.Add(1)
	t.bytes.Add(uint64(len(f.Payload)))
	return nil
}

// Close ends the track: its open group is closed, it leaves the catalog
// (a new catalog is published) and its MOQ track ends. A source replaces a
// track whose configuration changed (say, a new SPS) by adding a new one
// under another name and closing the old one, as the reference publishers
// do. Close returns moq.ErrClosed if the track was already closed.
func (t *TrackWriter) Close() error {
	if !t.finish() {
		return fmt.Errorf("sdk: track %q: %w", t.track.Name, moq.ErrClosed)
	}
	err := t.w.removeTrack(t)
	if cerr := t.pt.Close(); cerr != nil && !errors.Is(cerr, moq.ErrClosed) && err == nil {
		err = cerr
	}
	return err
}

// finish closes the open group and marks the writer closed; it reports
// whether this call did it.
func (t *TrackWriter) finish() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.closed = true
	if t.group != nil {
		_ = t.group.Close()
		t.group = nil
	}
	return true
}

package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// ErrUnsupportedContainer is returned when subscribing to a rendition whose
// container BroadcastReader cannot read.
var ErrUnsupportedContainer = errors.New("unsupported container")

// BroadcastReader is what a sink reads from: it follows the hang catalog of
// a moq.BroadcastReader and subscribes to its tracks.
//
// A goroutine owned by the BroadcastReader follows the catalog.json track
// from its latest group on: the first frame of a group is the full catalog,
// further frames of the same group are JSON merge patches (RFC 7396), and a
// newer group replaces an unfinished older one. A catalog that does not
// parse is ignored (LastError reports it) and the previous one stays in
// effect. All methods are safe for concurrent use.
type BroadcastReader struct {
	b      *moq.BroadcastReader
	from   moq.StartPoint // where Subscribe starts (NewBroadcastReaderFrom)
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	ready   chan struct{} // closed at the first catalog or when following ends
	isReady bool
	changed chan struct{} // closed at the next change
	cat     *Catalog
	tracks  []Track
	inits   map[string]*cmafInit // parsed inits of the cmaf tracks
	err     error                // why following the catalog ended; nil while it runs
	lastErr error                // the last catalog that failed to parse
	path    string               // where it was found (Path)
	readers []*TrackReader       // subscribed, for Stats

	latency atomic.Pointer[latencyObserver] // SetLatencyObserver; read per frame
}

// latencyObserver holds the function given to SetLatencyObserver.
type latencyObserver struct {
	observe func(track string, d time.Duration)
}

// SetLatencyObserver makes the reader's tracks, those subscribed already
// and those subscribed later, call observe with the track's name and how
// long each frame took from being written into its track to ReadFrame
// returning it: from TrackWriter.WriteFrame when a source in this process
// wrote it, from its arrival in this process when it came from the network
// (the time it spent upstream is not known here). It turns on
// moq.TrackReader.RecordWriteTimes for those tracks, so frames written
// before the call are not measured. observe runs on the goroutine that
// calls ReadFrame, for every frame, and must be quick; nil stops the
// calls.
func (r *BroadcastReader) SetLatencyObserver(observe func(track string, d time.Duration)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if observe == nil {
		r.latency.Store(nil)
		return
	}
	r.latency.Store(&latencyObserver{observe: observe})
	for _, tr := range r.readers {
		tr.tr.RecordWriteTimes()
	}
}

// Path is the path of the broadcast in its Origin when the reader was made
// by the SDK wiring (Consume, Follow), "" otherwise. Sinks use it to name
// what they write.
func (r *BroadcastReader) Path() string { return r.path }

// Stats returns the counters of every track subscribed through r, by track
// name (tracks subscribed more than once are summed).
func (r *BroadcastReader) Stats() map[string]TrackStats {
	r.mu.Lock()
	readers := append([]*TrackReader(nil), r.readers...)
	r.mu.Unlock()
	out := make(map[string]TrackStats, len(readers))
	for _, tr := range readers {
		out[tr.track.Name] = out[tr.track.Name].Add(tr.Stats())
	}
	return out
}

// Add returns the sum of two sets of counters.
func (a TrackStats) Add(b TrackStats) TrackStats {
	a.Groups += b.Groups
	a.Frames += b.Frames
	a.Bytes += b.Bytes
	a.Dropped += b.Dropped
	a.Skipped += b.Skipped
	a.Truncated += b.Truncated
	a.Invalid += b.Invalid
	return a
}

// NewBroadcastReader subscribes to the catalog of b and starts following
// it. It fails with moq.ErrNotFound (wrapped) if b has no catalog.json
// track, and moq.ErrClosed if b has ended. Close the reader when done.
func NewBroadcastReader(b *moq.BroadcastReader) (*BroadcastReader, error) {
	tr, err := b.Subscribe(CatalogTrackName, PriorityCatalog)
	if err != nil {
		return nil, fmt.Errorf("sdk: subscribe %s: %w", CatalogTrackName, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &BroadcastReader{
		b:       b,
		cancel:  cancel,
		ready:   make(chan struct{}),
		changed: make(chan struct{}),
	}
	f := &catalogFollower{r: r, tr: tr, wake: make(chan struct{}, 1)}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		f.fetch(ctx)
	}()
	go func() {
		defer r.wg.Done()
		f.read(ctx)
	}()
	return r, nil
}

// NewBroadcastReaderFrom is NewBroadcastReader whose Subscribe starts each
// media track at from: moq.FromOldest for a recorder or pipeline that must
// not miss the groups written before it subscribed, while the track's
// cache still holds them (see moq.StartPoint). The catalog is always
// followed from its latest group.
func NewBroadcastReaderFrom(b *moq.BroadcastReader, from moq.StartPoint) (*BroadcastReader, error) {
	r, err := NewBroadcastReader(b)
	if err != nil {
		return nil, err
	}
	r.from = from
	return r, nil
}

// WaitCatalog blocks until the first catalog arrived. It returns ctx.Err()
// if ctx ends first, and the reason (io.EOF when the broadcast ended,
// wrapped) if the catalog track ended before any catalog parsed.
func (r *BroadcastReader) WaitCatalog(ctx context.Context) error {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cat == nil {
		if r.lastErr != nil {
			return fmt.Errorf("%w (last catalog: %v)", r.err, r.lastErr)
		}
		return r.err
	}
	return nil
}

// Tracks returns the tracks of the current catalog that the reader can
// subscribe to (legacy and cmaf containers; renditions in other containers
// are left out, as the reference player does), video first, each kind
// sorted by name. For cmaf tracks, what the catalog omits is taken from the
// init segment: Timescale always, and DecoderConfig, size, sample rate and
// channels when missing. It returns nil before the first catalog.
func (r *BroadcastReader) Tracks() []Track {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Track(nil), r.tracks...)
}

// Catalog returns the current catalog, nil before the first one. It is
// shared: do not modify it.
func (r *BroadcastReader) Catalog() *Catalog {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cat
}

// WaitTracks waits for a catalog that lists at least one track, then for
// it to stay unchanged for quiet: publishers add their tracks one by one
// (the reference browser publisher announces an empty catalog, then its
// video, then its audio tens of milliseconds later), and a sink that takes
// the tracks as they are when it starts would miss the later ones. It
// returns as WaitCatalog does when the catalog track ends or ctx ends; if
// the broadcast ends after tracks were listed, it returns nil and the
// sink sees the tracks end.
func (r *BroadcastReader) WaitTracks(ctx context.Context, quiet time.Duration) error {
	if err := r.WaitCatalog(ctx); err != nil {
		return err
	}
	for {
		changed := r.Changed()
		r.mu.Lock()
		n, ended := len(r.tracks), r.err
		r.mu.Unlock()
		if n == 0 {
			if ended != nil {
				return fmt.Errorf("sdk: no track in the catalog: %w", ended)
			}
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if ended != nil {
			return nil
		}
		timer := time.NewTimer(quiet)
		select {
		case <-changed:
			timer.Stop()
		case <-timer.C:
			return nil
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
}

// Changed returns a channel that is closed when the catalog changes next
// (or following it ends). Take the channel before reading Tracks so that
// no change is missed.
func (r *BroadcastReader) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Err returns why following the catalog ended (io.EOF, wrapped, when the
// broadcast ended), or nil while it runs.
func (r *BroadcastReader) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// LastError returns the error of the last catalog that failed to parse, or
// nil.
func (r *BroadcastReader) LastError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Done returns a channel closed when the broadcast ends.
func (r *BroadcastReader) Done() <-chan struct{} { return r.b.Done() }

// Subscribe returns a reader for the named track of the current catalog.
// It fails with moq.ErrNotFound (wrapped) if the catalog has no such
// rendition or the broadcast no such track, and with
// ErrUnsupportedContainer for containers other than legacy and cmaf. The
// TrackReader is bound to the track as described at this moment: a
// rendition whose configuration changes is expected under a new name.
func (r *BroadcastReader) Subscribe(name string) (*TrackReader, error) {
	r.mu.Lock()
	var (
		t     Track
		found bool
	)
	for _, tt := range r.tracks {
		if tt.Name == name {
			t, found = tt, true
			break
		}
	}
	init := r.inits[name]
	unsupported := false
	if !found && r.cat != nil {
		for _, tt := range r.cat.Tracks() {
			if tt.Name == name {
				unsupported = true
				t = tt
			}
		}
	}
	r.mu.Unlock()
	if unsupported {
		return nil, fmt.Errorf("sdk: subscribe %q: %w %q", name, ErrUnsupportedContainer, t.Container)
	}
	if !found {
		return nil, fmt.Errorf("sdk: subscribe %q: not in the catalog: %w", name, moq.ErrNotFound)
	}
	tr, err := r.b.SubscribeFrom(name, t.Priority, r.from)
	if err != nil {
		return nil, fmt.Errorf("sdk: subscribe %q: %w", name, err)
	}
	reader := &TrackReader{track: t, tr: tr, cmaf: init, latency: &r.latency}
	r.mu.Lock()
	r.readers = append(r.readers, reader)
	if r.latency.Load() != nil {
		tr.RecordWriteTimes()
	}
	r.mu.Unlock()
	return reader, nil
}

// Close stops following the catalog and waits for the goroutines. Track
// readers stay usable and are closed separately.
func (r *BroadcastReader) Close() {
	r.cancel()
	r.wg.Wait()
}

// publish makes doc the current catalog if it parses.
func (r *BroadcastReader) publish(doc []byte) {
	c, err := ParseCatalog(doc)
	var tracks []Track
	var inits map[string]*cmafInit
	if err == nil {
		tracks, inits = usableTracks(c)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.lastErr = err
		return
	}
	r.cat, r.tracks, r.inits = c, tracks, inits
	close(r.changed)
	r.changed = make(chan struct{})
	if !r.isReady {
		r.isReady = true
		close(r.ready)
	}
}

// end records why following the catalog stopped.
func (r *BroadcastReader) end(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return
	}
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("sdk: %s ended: %w", CatalogTrackName, io.EOF)
	} else {
		err = fmt.Errorf("sdk: %s: %w", CatalogTrackName, err)
	}
	r.err = err
	close(r.changed) // and leave it closed: nothing changes any more
	if !r.isReady {
		r.isReady = true
		close(r.ready)
	}
}

// usableTracks returns the catalog's tracks the reader supports, completed
// from the cmaf inits, and the parsed inits.
func usableTracks(c *Catalog) ([]Track, map[string]*cmafInit) {
	var out []Track
	inits := make(map[string]*cmafInit)
	for _, t := range c.Tracks() {
		switch t.Container {
		case ContainerLegacy:
			out = append(out, t)
		case ContainerCMAF:
			in, err := parseCMAFInit(t.Init)
			if err != nil || in.audio != (t.Kind == KindAudio) {
				continue
			}
			inits[t.Name] = in
			t.Timescale = in.timescale
			if len(t.DecoderConfig) == 0 && len(in.config) > 0 {
				t.DecoderConfig = in.config
			}
			if t.Kind == KindVideo && t.Width == 0 && t.Height == 0 {
				t.Width, t.Height = in.width, in.height
			}
			if t.Kind == KindAudio {
				if t.SampleRate == 0 {
					t.SampleRate = in.sampleRate
				}
				if t.Channels == 0 {
					t.Channels = in.channels
				}
			}
			out = append(out, t)
		}
	}
	return out, inits
}

// catalogFollower runs the two goroutines of a BroadcastReader: fetch
// takes the catalog groups as they come and read reads the frames of the
// newest one. Fetching separately lets a new group interrupt a group that
// stays open (a publisher that keeps appending patches).
type catalogFollower struct {
	r    *BroadcastReader
	tr   *moq.TrackReader
	wake chan struct{} // capacity one

	mu     sync.Mutex
	latest *moq.GroupReader // newest group, not yet taken by read
	cur    *moq.GroupReader // group being read
	err    error            // fetching ended
}

func (f *catalogFollower) fetch(ctx context.Context) {
	defer f.tr.Close()
	for {
		g, err := f.tr.NextGroup(ctx)
		f.mu.Lock()
		if err != nil {
			f.err = err
			f.mu.Unlock()
			notifyChan(f.wake)
			return
		}
		old, cur := f.latest, f.cur
		f.latest = g
		f.mu.Unlock()
		if old != nil {
			old.Close() // never read: superseded
		}
		if cur != nil {
			cur.Close() // interrupt reading an unfinished older group
		}
		notifyChan(f.wake)
	}
}

func (f *catalogFollower) read(ctx context.Context) {
	defer func() {
		f.mu.Lock()
		if f.latest != nil {
			f.latest.Close()
			f.latest = nil
		}
		f.mu.Unlock()
	}()
	for {
		f.mu.Lock()
		g, err := f.latest, f.err
		f.latest, f.cur = nil, g
		f.mu.Unlock()
		if g == nil {
			if err != nil {
				f.r.end(err)
				return
			}
			select {
			case <-f.wake:
				continue
			case <-ctx.Done():
				f.r.end(ctx.Err())
				return
			}
		}
		f.readGroup(ctx, g)
		g.Close()
		f.mu.Lock()
		f.cur = nil
		f.mu.Unlock()
		if ctx.Err() != nil {
			f.r.end(ctx.Err())
			return
		}
	}
}

// readGroup applies the frames of one catalog group.
func (f *catalogFollower) readGroup(ctx context.Context, g *moq.GroupReader) {
	var doc []byte
	for {
		p, err := g.NextFrame(ctx)
		if err != nil {
			return // end of group, aborted, superseded or cancelled
		}
		if doc == nil {
			doc = p
		} else if merged, err := applyMergePatch(doc, p); err == nil {
			doc = merged
		} else {
			f.r.mu.Lock()
			f.r.lastErr = err
			f.r.mu.Unlock()
			continue
		}
		f.r.publish(doc)
	}
}

// notifyChan performs a non-blocking send on a channel of capacity one.
func notifyChan(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// TrackStats counts what a TrackReader saw or a TrackWriter wrote; the
// counters that do not apply stay 0.
type TrackStats struct {
	Groups uint64 // groups started (read or written)
	Frames uint64 // frames returned or written
	Bytes  uint64 // payload bytes of those frames (codec payload, no container)
	// Dropped counts frames a writer dropped because they came before the
	// track's first keyframe.
	Dropped uint64
	// Skipped counts the groups missing from the sequence: the reader
	// fell behind and the track's cache dropped them, or they were lost
	// upstream.
	Skipped uint64
	// Truncated counts groups that ended early (aborted) or whose rest was
	// discarded after an undecodable frame.
	Truncated uint64
	// Invalid counts MOQ frames that could not be decoded.
	Invalid uint64
}

// TrackReader returns the frames of one track. ReadFrame must be called by
// one goroutine at a time; Close and Stats may be called from any.
type TrackReader struct {
	track   Track
	tr      *moq.TrackReader
	cmaf    *cmafInit                        // nil for legacy
	latency *atomic.Pointer[latencyObserver] // its BroadcastReader's; nil for none

	// cur is the group being read, published for Close.
	cur    atomic.Pointer[moq.GroupReader]
	closed atomic.Bool

	g        *moq.GroupReader
	started  bool
	lastSeq  uint64
	inGroup  int  // frames returned from the current group
	lost     bool // media was lost since the last frame returned
	samples  []cmafSample
	sampleAt int

	groups, frames, bytes, skipped, truncated, invalid atomic.Uint64
}

// Track returns the track as it was described when subscribing.
func (t *TrackReader) Track() Track { return t.track }

// Stats returns the reader's counters.
func (t *TrackReader) Stats() TrackStats {
	return TrackStats{
		Groups:    t.groups.Load(),
		Frames:    t.frames.Load(),
		Bytes:     t.bytes.Load(),
		Skipped:   t.skipped.Load(),
		Truncated: t.truncated.Load(),
		Invalid:   t.invalid.Load(),
	}
}

// Skipped returns the number of groups skipped so far (Stats().Skipped).
func (t *TrackReader) Skipped() uint64 { return t.skipped.Load() }

// ReadFrame returns the next frame, in decode order, blocking until there
// is one. The subscription starts at the latest group, so the first frame
// is a keyframe. When groups were skipped or a group ended early, the next
// frame returned has Discontinuity set; it starts a group, so a decoder
// resynchronises there.
//
// Legacy frames have Keyframe set on the first frame of each group and no
// DTS; cmaf frames take both from the fragment (keyframe from the sample
// flags; every audio frame is a keyframe). Empty (marker) frames are
// skipped, and so is the rest of a group after an undecodable frame
// (counted in Stats). The payload is shared: do not modify it.
//
// It returns io.EOF when the track ends, the track's error if it was
// closed with one, moq.ErrClosed after Close, and ctx.Err() when ctx
// ends first (a later call resumes where this one stopped).
func (t *TrackReader) ReadFrame(ctx context.Context) (Frame, error) {
	for {
		if t.closed.Load() {
			return Frame{}, moq.ErrClosed
		}
		if f, ok := t.nextSample(); ok {
			return f, nil
		}
		if t.g == nil {
			g, err := t.tr.NextGroup(ctx)
			if err != nil {
				return Frame{}, err
			}
			t.cur.Store(g)
			if t.closed.Load() {
				g.Close()
				return Frame{}, moq.ErrClosed
			}
			seq := g.Sequence()
			if t.started && seq > t.lastSeq+1 {
				t.skipped.Add(seq - t.lastSeq - 1)
				t.lost = true
			}
			t.started, t.lastSeq = true, seq
			t.g, t.inGroup = g, 0
			t.groups.Add(1)
		}
		p, err := t.g.NextFrame(ctx)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return Frame{}, err
			}
			if t.closed.Load() {
				return Frame{}, moq.ErrClosed
			}
			if !errors.Is(err, io.EOF) {
				t.truncated.Add(1)
				t.lost = true
			}
			t.endGroup()
			continue
		}
		if t.cmaf != nil {
			t.samples, err = t.cmaf.parseFragment(p, t.samples)
			t.sampleAt = 0
			if err != nil {
				t.badFrame()
			}
			continue
		}
		pts, payload, err := DecodeLegacyFrame(p)
		if err != nil {
			t.badFrame()
			continue
		}
		if len(payload) == 0 {
			continue // marker
		}
		// A video group starts at its keyframe; every audio frame can be
		// decoded on its own.
		return t.emit(Frame{PTS: pts, Keyframe: t.inGroup == 0 || t.track.Kind == KindAudio, Payload: payload}), nil
	}
}

// emit stamps and counts a frame about to be returned.
func (t *TrackReader) emit(f Frame) Frame {
	f.Discontinuity = t.lost
	t.lost = false
	t.inGroup++
	t.frames.Add(1)
	t.bytes.Add(uint64(len(f.Payload)))
	if t.latency != nil {
		if o := t.latency.Load(); o != nil && t.g != nil {
			// t.g is the group of the MOQ frame f came from: a cmaf
			// fragment's samples are returned before the next one is
			// read.
			if at, ok := t.g.WriteTime(); ok {
				o.observe(t.track.Name, time.Since(at))
			}
		}
	}
	return f
}

// nextSample returns the next sample of the current cmaf fragment, if any.
func (t *TrackReader) nextSample() (Frame, bool) {
	for t.sampleAt < len(t.samples) {
		s := &t.samples[t.sampleAt]
		t.sampleAt++
		if len(s.data) == 0 {
			continue
		}
		dts, err := t.cmaf.ticks(int64(s.dts))
		if err == nil {
			var pts time.Duration
			if pts, err = t.cmaf.ticks(int64(s.dts) + s.cts); err == nil {
				return t.emit(Frame{
					PTS:      pts,
					DTS:      dts,
					HasDTS:   true,
					Keyframe: t.cmaf.keyframe(s.flags),
					Payload:  s.data,
				}), true
			}
		}
		t.badFrame()
	}
	return Frame{}, false
}

// badFrame counts an undecodable frame and drops the rest of its group.
func (t *TrackReader) badFrame() {
	t.invalid.Add(1)
	t.truncated.Add(1)
	t.lost = true
	t.samples, t.sampleAt = t.samples[:0], 0
	t.endGroup()
}

func (t *TrackReader) endGroup() {
	if t.g != nil {
		t.g.Close()
		t.g = nil
		t.cur.Store(nil)
	}
}

// Close ends the subscription; a pending or later ReadFrame returns
// moq.ErrClosed.
func (t *TrackReader) Close() {
	t.closed.Store(true)
	t.tr.Close()
	if g := t.cur.Load(); g != nil {
		g.Close()
	}
}

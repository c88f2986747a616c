package moq

import (
	"slices"
	"sync"
)

// broadcast is the state shared by a BroadcastWriter and its reader.
//
// Lock order: broadcast.mu, then track.mu, then group.mu. Origin.mu comes
// before broadcast.mu; callbacks into an Origin run with no broadcast lock
// held.
type broadcast struct {
	cache  CacheConfig
	reader BroadcastReader
	done   chan struct{}
	wg     sync.WaitGroup // request handler goroutines

	// running counts the request handlers running; idle, when not nil, is
	// closed when it drops to zero (handlersIdle).
	running int
	idle    chan struct{}

	mu      sync.Mutex
	closed  bool
	tracks  map[string]*track   // live tracks by name: what Subscribe finds
	all     map[*track]struct{} // every open track, including unused requested ones
	handler func(*TrackWriter)
	onDone  map[uint64]func()
	nextID  uint64
}

// BroadcastWriter is the producer half of a broadcast: a set of named
// tracks. Its methods are safe for concurrent use.
type BroadcastWriter struct {
	b *broadcast
}

// NewBroadcast returns an empty broadcast whose tracks use the default cache
// budget (16 MiB, 30 s).
func NewBroadcast() *BroadcastWriter {
	return NewBroadcastWithCache(CacheConfig{})
}

// NewBroadcastWithCache returns an empty broadcast whose tracks use cache c
// (zero fields take the defaults).
func NewBroadcastWithCache(c CacheConfig) *BroadcastWriter {
	b := &broadcast{
		cache:  c.withDefaults(),
		done:   make(chan struct{}),
		tracks: make(map[string]*track),
		all:    make(map[*track]struct{}),
		onDone: make(map[uint64]func()),
	}
	b.reader.b = b
	return &BroadcastWriter{b: b}
}

// CreateTrack adds a track written by the caller. It returns ErrDuplicate
// if a live track with that name exists and ErrClosed after Close.
func (w *BroadcastWriter) CreateTrack(name string, priority uint8) (*TrackWriter, error) {
	b := w.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if t := b.tracks[name]; t != nil && !t.isClosed() {
		return nil, ErrDuplicate
	}
	tw := newTrack(name, priority, b.cache, b, false)
	b.tracks[name] = &tw.t
	b.all[&tw.t] = struct{}{}
	return tw, nil
}

// HandleRequests makes the broadcast create tracks on demand, for
// broadcasts backed by a remote peer. When a reader subscribes to a name
// with no live track, the broadcast creates a TrackWriter with the
// subscriber's priority, registers it so later subscribers of that name
// share it (one upstream subscription per track name), and runs fn(t) in a
// goroutine that Close waits for.
//
// fn feeds t until t.Unused() or t.Done() fires, then closes it; if fn
// returns with t still open, t is closed cleanly. A requested track leaves
// the table as soon as it becomes unused or closes, so the next subscriber
// triggers a new call. fn must not call Close on this BroadcastWriter
// synchronously, since Close waits for fn. Without a handler, subscribing to
// an unknown track returns ErrNotFound.
func (w *BroadcastWriter) HandleRequests(fn func(t *TrackWriter)) {
	b := w.b
	b.mu.Lock()
	b.handler = fn
	b.mu.Unlock()
}

// Reader returns the consumer half. Every call returns the same value, so it
// can serve as the broadcast's identity in an Origin.
func (w *BroadcastWriter) Reader() *BroadcastReader { return &w.b.reader }

// Close ends the broadcast: every track is closed (its readers get the
// cached groups they are entitled to, then io.EOF), Done of the reader
// closes, Origins holding it drop it, and Close waits for running request
// handlers to return. Groups still being written are left to their writers.
// It returns ErrClosed if the broadcast was already closed.
func (w *BroadcastWriter) Close() error {
	return w.close(nil)
}

// CloseWithError ends the broadcast as Close does, but its tracks end with
// err (see TrackWriter.CloseWithError), so that readers can tell a
// broadcast that was lost (its publisher or the connection to it gone) from
// one that finished. A nil err ends the tracks with ErrClosed.
func (w *BroadcastWriter) CloseWithError(err error) error {
	if err == nil {
		err = ErrClosed
	}
	return w.close(err)
}

func (w *BroadcastWriter) close(err error) error {
	b := w.b
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.closed = true
	tracks := make([]*track, 0, len(b.all))
	for t := range b.all {
		tracks = append(tracks, t)
	}
	callbacks := make([]func(), 0, len(b.onDone))
	for _, fn := range b.onDone {
		callbacks = append(callbacks, fn)
	}
	clear(b.onDone)
	b.mu.Unlock()

	for _, t := range tracks {
		_ = t.close(err)
	}
	close(b.done)
	for _, fn := range callbacks {
		fn()
	}
	b.wg.Wait()
	return nil
}

// trackClosed removes a closed track from the tables.
func (b *broadcast) trackClosed(t *track) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropLocked(t)
	delete(b.all, t)
}

// dropLocked removes t from the name table if it is still the entry for its
// name. The caller holds b.mu.
func (b *broadcast) dropLocked(t *track) {
	if b.tracks[t.name] == t {
		delete(b.tracks, t.name)
	}
}

// handlerReturned counts a request handler out.
func (b *broadcast) handlerReturned() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.running--
	if b.running == 0 && b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
}

// RequestsIdle returns a channel closed once no request handler (see
// HandleRequests) runs, at once if none does now. A session that learns
// a broadcast ended waits for it before closing the broadcast, so the
// tracks end by their own subscriptions.
func (w *BroadcastWriter) RequestsIdle() <-chan struct{} { return w.b.handlersIdle() }

// handlersIdle is RequestsIdle.
func (b *broadcast) handlersIdle() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.idle == nil {
		b.idle = make(chan struct{})
		if b.running == 0 {
			close(b.idle)
			ch := b.idle
			b.idle = nil
			return ch
		}
	}
	return b.idle
}

// addDoneCallback registers fn to run once when the broadcast closes. It
// returns false, without registering, if the broadcast is already closed.
// fn runs with no broadcast lock held.
func (b *broadcast) addDoneCallback(fn func()) (id uint64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, false
	}
	b.nextID++
	b.onDone[b.nextID] = fn
	return b.nextID, true
}

// removeDoneCallback unregisters a callback; a removed callback may still
// run if Close had already collected it.
func (b *broadcast) removeDoneCallback(id uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.onDone, id)
}

// BroadcastReader is the consumer half of a broadcast, the value an Origin
// stores and hands out. Its methods are safe for concurrent use.
type BroadcastReader struct {
	b *broadcast
}

// Subscribe returns a reader for the named track that starts at its latest
// group (SubscribeFrom with FromLatest), as a player wants. If no live
// track has that name, a broadcast with a request handler creates one (see
// HandleRequests); otherwise Subscribe returns ErrNotFound. After the
// broadcast closed it returns ErrClosed. The caller must Close the
// TrackReader when done, since the reader count drives TrackWriter.Unused.
func (r *BroadcastReader) Subscribe(track string, priority uint8) (*TrackReader, error) {
	return r.SubscribeFrom(track, priority, FromLatest)
}

// SubscribeFrom is Subscribe with the group the reader starts at:
// FromLatest (Subscribe) or FromOldest, the oldest group the track caches,
// for recorders and pipelines that must not miss a group written before
// they got to read (see StartPoint for what each cache keeps, and for
// tracks fetched from a peer).
func (r *BroadcastReader) SubscribeFrom(track string, priority uint8, from StartPoint) (*TrackReader, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if t := b.tracks[track]; t != nil {
		if tr := t.subscribe(priority, from); tr != nil {
			return tr, nil
		}
		// Closed, and its trackClosed call is waiting for b.mu.
		delete(b.tracks, track)
	}
	fn := b.handler
	if fn == nil {
		return nil, ErrNotFound
	}
	tw := newTrack(track, priority, b.cache, b, true)
	t := &tw.t
	t.from = from
	b.tracks[track] = t
	b.all[t] = struct{}{}
	tr := t.subscribe(priority, from)
	b.wg.Add(1)
	b.running++
	go func() {
		defer b.wg.Done()
		defer b.handlerReturned()
		fn(tw)
		_ = tw.Close()
	}()
	return tr, nil
}

// Done returns a channel closed when the broadcast's writer closes it.
func (r *BroadcastReader) Done() <-chan struct{} { return r.b.done }

// Tracks returns the sorted names of the live tracks, for tests and
// diagnostics.
func (r *BroadcastReader) Tracks() []string {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, 0, len(b.tracks))
	for name, t := range b.tracks {
		if !t.isClosed() {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

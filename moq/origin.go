package moq

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Origin is the in-process table of live broadcasts keyed by path, where
// every source, sink, session and relay of moqbridge meets. Publishing adds a
// broadcast; a broadcast is removed when its writer closes it or it is
// unpublished; announcement readers follow the changes.
//
// When a path is already taken, a newly published broadcast is queued as a
// backup and promoted when the active one goes away, as the reference relay
// does. The Origin runs no goroutines: it learns about ended broadcasts from
// callbacks made by BroadcastWriter.Close.
//
// All methods are safe for concurrent use.
type Origin struct {
	mu      sync.Mutex
	closed  bool
	paths   map[string]*originEntry
	readers map[*AnnouncementReader]struct{}
}

// originEntry holds what is published at one path.
type originEntry struct {
	active  originPub
	backups []originPub // promoted oldest first
}

// originPub is one publication: the broadcast and its Done callback
// registration.
type originPub struct {
	b  *BroadcastReader
	id uint64
}

// NewOrigin returns an empty Origin.
func NewOrigin() *Origin {
	return &Origin{
		paths:   make(map[string]*originEntry),
		readers: make(map[*AnnouncementReader]struct{}),
	}
}

// Publish makes b available at path (cleaned: no leading, trailing or
// doubled slashes). If the path is free, b becomes active and is announced;
// otherwise it waits as a backup until the broadcasts before it are gone.
// When b's writer closes it, it is removed automatically. Publish returns
// an error wrapping ErrInvalidPath if the cleaned path fails ValidatePath,
// ErrDuplicate if b is already published at path, and ErrClosed if b has
// ended or the Origin is closed.
func (o *Origin) Publish(path string, b *BroadcastReader) error {
	path = CleanPath(path)
	if err := ValidatePath(path); err != nil {
		return fmt.Errorf("moq publish: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	e := o.paths[path]
	if e != nil {
		if e.active.b == b || slices.ContainsFunc(e.backups, func(p originPub) bool { return p.b == b }) {
			return ErrDuplicate
		}
	}
	id, ok := b.b.addDoneCallback(func() { o.Unpublish(path, b) })
	if !ok {
		return ErrClosed
	}
	pub := originPub{b: b, id: id}
	if e == nil {
		o.paths[path] = &originEntry{active: pub}
		o.changedLocked(path, b)
		return nil
	}
	e.backups = append(e.backups, pub)
	return nil
}

// Unpublish removes b from path without ending the broadcast. If b was
// active, the oldest backup is promoted and announced; otherwise the path's
// end is announced. Unpublishing a broadcast that is not there does nothing.
func (o *Origin) Unpublish(path string, b *BroadcastReader) {
	path = CleanPath(path)
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.paths[path]
	if e == nil {
		return
	}
	if e.active.b == b {
		b.b.removeDoneCallback(e.active.id)
		if len(e.backups) == 0 {
			delete(o.paths, path)
			o.changedLocked(path, nil)
			return
		}
		e.active = e.backups[0]
		e.backups[0] = originPub{}
		e.backups = e.backups[1:]
		o.changedLocked(path, e.active.b)
		return
	}
	for i, p := range e.backups {
		if p.b == b {
			b.b.removeDoneCallback(p.id)
			e.backups = slices.Delete(e.backups, i, i+1)
			return
		}
	}
}

// Consume returns the active broadcast at path, ErrNotFound if there is
// none, or ErrClosed after Close.
func (o *Origin) Consume(path string) (*BroadcastReader, error) {
	path = CleanPath(path)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	if e := o.paths[path]; e != nil {
		return e.active.b, nil
	}
	return nil, ErrNotFound
}

// Announced returns a reader of the broadcasts under prefix (cleaned;
// matched on path segments: "foo" matches "foo" and "foo/bar" but not
// "foobar"; "" matches everything). It first reports every active broadcast
// under prefix, then the changes. Close it when done.
func (o *Origin) Announced(prefix string) *AnnouncementReader {
	a := &AnnouncementReader{
		o:      o,
		prefix: CleanPath(prefix),
		ch:     make(chan struct{}, 1),
		state:  make(map[string]*announceState),
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		a.closed = true
		return a
	}
	paths := make([]string, 0, len(o.paths))
	for path := range o.paths {
		if HasPathPrefix(path, a.prefix) {
			paths = append(paths, path)
		}
	}
	slices.Sort(paths)
	for _, path := range paths {
		a.changedLocked(path, o.paths[path].active.b)
	}
	o.readers[a] = struct{}{}
	return a
}

// Backups returns how many broadcasts wait as backups behind the one live
// at path.
func (o *Origin) Backups(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e := o.paths[CleanPath(path)]; e != nil {
		return len(e.backups)
	}
	return 0
}

// Close ends the Origin: every announcement reader returns ErrClosed, all
// broadcasts are dropped (without being ended) and later Publish and
// Consume calls return ErrClosed.
func (o *Origin) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	o.closed = true
	for _, e := range o.paths {
		e.active.b.b.removeDoneCallback(e.active.id)
		for _, p := range e.backups {
			p.b.b.removeDoneCallback(p.id)
		}
	}
	o.paths = nil
	for a := range o.readers {
		a.closeLocked()
	}
	o.readers = nil
}

// changedLocked tells the matching announcement readers that the active
// broadcast at path is now cur (nil: none). The caller holds o.mu.
func (o *Origin) changedLocked(path string, cur *BroadcastReader) {
	for a := range o.readers {
		if HasPathPrefix(path, a.prefix) {
			a.changedLocked(path, cur)
		}
	}
}

// Announcement is one change of what is published at a path.
type Announcement struct {
	// Path is the full cleaned path of the broadcast, not relative to the
	// prefix given to Announced.
	Path string
	// Active reports whether a broadcast is now available at Path.
	Active bool
	// Broadcast is the active broadcast; nil when Active is false.
	Broadcast *BroadcastReader
}

// announceState is what one announcement reader knows about one path.
type announceState struct {
	told  *BroadcastReader // last announced active; nil: ended or never told
	cur   *BroadcastReader // active now; nil: none
	dirty bool             // queued in AnnouncementReader.queue
}

// AnnouncementReader follows the broadcasts under a prefix of an Origin.
//
// It keeps per-path state (what it last reported and what is active now)
// and an ordered set of changed paths instead of an event queue, so a reader
// that never calls Next holds memory proportional to the number of paths,
// not to the number of changes. Intermediate states a slow reader missed
// are collapsed; reports still alternate active/ended per path.
//
// Next must be called by one goroutine at a time; Close may be called from
// any goroutine.
type AnnouncementReader struct {
	o      *Origin
	prefix string
	ch     chan struct{} // wake-up channel, capacity one

	// Guarded by o.mu.
	closed bool
	state  map[string]*announceState
	queue  []string // changed paths from head on, each at most once, oldest change first
	head   int
}

// changedLocked records that cur is now active at path. The caller holds
// o.mu.
func (a *AnnouncementReader) changedLocked(path string, cur *BroadcastReader) {
	st := a.state[path]
	if st == nil {
		st = &announceState{}
		a.state[path] = st
	}
	st.cur = cur
	if !st.dirty {
		st.dirty = true
		a.queue = append(a.queue, path)
	}
	notify(a.ch)
}

// Next returns the next announcement, blocking until there is one. Per path
// it alternates active and ended: if a broadcast was replaced while the
// reader was not looking, it reports ended and then active with the new
// broadcast; a broadcast that came and went unseen is not reported at all.
// It returns ErrClosed after Close or Origin.Close, and ctx.Err() if ctx
// ends while waiting.
func (a *AnnouncementReader) Next(ctx context.Context) (Announcement, error) {
	o := a.o
	for {
		o.mu.Lock()
		if a.closed {
			o.mu.Unlock()
			return Announcement{}, ErrClosed
		}
		if ann, ok := a.popLocked(); ok {
			o.mu.Unlock()
			return ann, nil
		}
		o.mu.Unlock()

		select {
		case <-a.ch:
		case <-ctx.Done():
			return Announcement{}, ctx.Err()
		}
	}
}

// TryNext is Next without waiting: it returns the next announcement and
// true if one is ready, false if none is, and ErrClosed after Close or
// Origin.Close. Right after Announced it yields exactly the broadcasts
// active at that moment, which is what a Lite01/02 ANNOUNCE_INIT lists.
func (a *AnnouncementReader) TryNext() (Announcement, bool, error) {
	o := a.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if a.closed {
		return Announcement{}, false, ErrClosed
	}
	ann, ok := a.popLocked()
	return ann, ok, nil
}

// popLocked produces the next announcement from the dirty paths. The
// caller holds o.mu.
func (a *AnnouncementReader) popLocked() (Announcement, bool) {
	for a.head < len(a.queue) {
		path := a.queue[a.head]
		st := a.state[path]
		switch {
		case st.told != nil && st.told != st.cur:
			// End what the reader knows first; if something else is
			// active, the path stays queued and reports it next.
			st.told = nil
			if st.cur == nil {
				a.dequeueLocked(path, st)
			}
			return Announcement{Path: path}, true
		case st.told == nil && st.cur != nil:
			st.told = st.cur
			a.dequeueLocked(path, st)
			return Announcement{Path: path, Active: true, Broadcast: st.cur}, true
		default:
			// Nothing the reader does not already know.
			a.dequeueLocked(path, st)
		}
	}
	return Announcement{}, false
}

// dequeueLocked removes the head of the queue and forgets the path
// entirely once the reader was told it ended and nothing is active, which
// keeps the state bounded by the active paths.
func (a *AnnouncementReader) dequeueLocked(path string, st *announceState) {
	a.queue[a.head] = ""
	a.head++
	switch {
	case a.head == len(a.queue):
		a.queue = a.queue[:0]
		a.head = 0
	case a.head >= 64 && a.head*2 >= len(a.queue):
		// Reclaim the consumed front so the slice stays proportional
		// to the number of queued paths.
		n := copy(a.queue, a.queue[a.head:])
		clear(a.queue[n:])
		a.queue = a.queue[:n]
		a.head = 0
	}
	st.dirty = false
	if st.told == nil && st.cur == nil {
		delete(a.state, path)
	}
}

// Close stops the reader; Next returns ErrClosed.
func (a *AnnouncementReader) Close() {
	o := a.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if a.closed {
		return
	}
	delete(o.readers, a)
	a.closeLocked()
}

func (a *AnnouncementReader) closeLocked() {
	a.closed = true
	a.state = nil
	a.queue = nil
	a.head = 0
	notify(a.ch)
}

package moq

import (
	"context"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Cache defaults. The age matches the 30 s eviction of the reference relay;
// the byte budget bounds what one track may pin in memory for slow readers.
const (
	defaultCacheMaxBytes    = 16 << 20
	defaultCacheMaxAge      = 30 * time.Second
	defaultCacheReorderWait = 100 * time.Millisecond
)

// CacheConfig bounds the groups a track keeps for readers that join late or
// fall behind. Older groups are evicted while the cached payload exceeds
// MaxBytes or the oldest group arrived more than MaxAge ago; the latest group
// (highest sequence) is always kept, whatever its size or age. Zero or
// negative fields take the defaults: 16 MiB, 30 s and 100 ms.
type CacheConfig struct {
	MaxBytes int64
	MaxAge   time.Duration
	// ReorderWait is how long NextGroup holds back a group that arrived
	// while the one before it in sequence is missing, in case the missing
	// group is merely late (groups travel on parallel streams). It adds
	// latency only when there is a gap.
	ReorderWait time.Duration
	// Consumer sizes the cache for a consumer rather than a relay: besides
	// the limits above, a group is kept only while a current reader may
	// still take it (the latest group always), since no reader will join
	// later for an older one; and once none may, a group lets go of the
	// frames all its readers have read (all but its last). A subscriber
	// then holds the frames its readers have still to read and little
	// more. A reader that subscribes after the latest group let go of
	// frames starts with the next group (a group of one frame, such as a
	// catalog's, stays whole). Sessions made by Dial use it unless
	// WithCache says otherwise; a relay keeps groups for late joiners.
	Consumer bool
}

func (c CacheConfig) withDefaults() CacheConfig {
	if c.MaxBytes <= 0 {
		c.MaxBytes = defaultCacheMaxBytes
	}
	if c.MaxAge <= 0 {
		c.MaxAge = defaultCacheMaxAge
	}
	if c.ReorderWait <= 0 {
		c.ReorderWait = defaultCacheReorderWait
	}
	return c
}

// track is the shared state of one track. The writer half embeds it; readers
// and groups point into it.
type track struct {
	name      string
	priority  uint8
	cfg       CacheConfig
	b         *broadcast // owner, told when the track closes or becomes unused
	requested bool       // created on demand by HandleRequests
	from      StartPoint // for a requested track: where its first subscriber started

	// bytes is the payload of the cached groups. Frames are added by the
	// group writers without taking mu, so the per-frame path touches only
	// its own group's lock.
	bytes atomic.Int64
	// frameHint is the frame count of the last group to finish, for
	// preallocating the next group's frame list.
	frameHint atomic.Int64
	// multi reports that more than one group is cached, i.e. that eviction
	// could free something; it spares the per-frame path the track lock
	// when only the (never evicted) latest group is over budget.
	multi atomic.Bool

	mu       sync.Mutex
	cache    []*group // in arrival order
	latest   *group   // highest sequence; always cached
	last     *group   // most recently created, sizes the next frame list
	maxSeq   uint64
	hasSeq   bool
	arrivals uint64 // arrival index of the next group
	closed   bool
	err      error // with closed: nil for a clean end (io.EOF after the cache)
	waiters  waitList
	readers  int
	subs     []*TrackReader // the open readers, with cfg.Consumer only
	// forwarding are the open readers of forwarders, which pace a writer
	// fed from the network (paceIngest); ingestWake wakes a paced writer
	// when one of them caught up, if ingestWaiting says one waits.
	forwarding    []*TrackReader
	ingestWake    chan struct{}
	ingestWaiting atomic.Int32
	unusedCh      chan struct{}
	unused        bool
	done          chan struct{}

	// writeTimes turns on noting when each frame is written into the
	// track (TrackReader.RecordWriteTimes), as nanoseconds since epoch
	// on the monotonic clock; off, the per-frame path reads no clock.
	writeTimes atomic.Bool
	epoch      time.Time
}

func newTrack(name string, priority uint8, cfg CacheConfig, b *broadcast, requested bool) *TrackWriter {
	w := &TrackWriter{}
	t := &w.t
	t.name = name
	t.priority = priority
	t.cfg = cfg.withDefaults()
	t.b = b
	t.requested = requested
	t.unusedCh = make(chan struct{})
	t.done = make(chan struct{})
	t.ingestWake = make(chan struct{}, 1)
	t.epoch = time.Now()
	return w
}

// TrackWriter is the producer half of a track: a named stream of groups with
// a priority and a bounded cache.
//
// All methods are safe for concurrent use. A relay typically creates groups
// from several goroutines (one per incoming group stream) and writes each
// GroupWriter from its own goroutine.
type TrackWriter struct {
	t track
}

// Name returns the track name.
func (w *TrackWriter) Name() string { return w.t.name }

// Priority returns the track's priority: the one given to CreateTrack, or
// for a requested track the priority of the subscriber that caused it.
func (w *TrackWriter) Priority() uint8 { return w.t.priority }

// RequestedFrom returns, for a track created on demand (HandleRequests),
// where the subscriber that caused it asked to start: a handler fetching
// the track from a peer asks the peer for the same (a MOQ Lite SUBSCRIBE
// with a start group), so FromOldest reaches back into the peer's cache.
// It is FromLatest for other tracks.
func (w *TrackWriter) RequestedFrom() StartPoint { return w.t.from }

// AppendGroup starts the next group: its sequence is one above the highest
// sequence the track has seen, or 0 for the first group.
func (w *TrackWriter) AppendGroup() (*GroupWriter, error) {
	return w.t.createGroup(0, true)
}

// CreateGroup starts a group with an explicit sequence, as received from the
// network, possibly out of order. It returns ErrDuplicate if a group with
// that sequence is cached; the track keeps no memory of evicted groups, so
// an evicted sequence is accepted again, but only readers that have not yet
// received a higher sequence will see it (readers never go backwards).
func (w *TrackWriter) CreateGroup(seq uint64) (*GroupWriter, error) {
	return w.t.createGroup(seq, false)
}

// Close ends the track cleanly: readers receive the remaining cached groups
// they are entitled to, then io.EOF. Groups still being written are left to
// their writers. It returns ErrClosed if the track was already closed.
func (w *TrackWriter) Close() error {
	return w.t.close(nil)
}

// CloseWithError ends the track with err: readers get err from their next
// NextGroup call without further groups, and unfinished cached groups are
// aborted with err. A nil err is delivered as ErrClosed.
func (w *TrackWriter) CloseWithError(err error) {
	if err == nil {
		err = ErrClosed
	}
	_ = w.t.close(err)
}

// Unused returns a channel closed when the number of TrackReaders drops to
// zero after having been positive. It stays closed even if readers come
// back; a relay cancels its upstream subscription when it fires.
func (w *TrackWriter) Unused() <-chan struct{} { return w.t.unusedCh }

// Done returns a channel closed when the track is closed, by either writer
// method or by the end of its broadcast.
func (w *TrackWriter) Done() <-chan struct{} { return w.t.done }

// cachedBytes returns the payload bytes currently held by the cache.
func (t *track) cachedBytes() int64 { return t.bytes.Load() }

func (t *track) createGroup(seq uint64, next bool) (*GroupWriter, error) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if next {
		if t.hasSeq {
			if t.maxSeq == math.MaxUint64 {
				return nil, ErrDuplicate
			}
			seq = t.maxSeq + 1
		}
	} else {
		for _, g := range t.cache {
			if g.seq == seq {
				return nil, ErrDuplicate
			}
		}
	}

	w := &GroupWriter{}
	g := &w.g
	g.bufs.plain = t.cfg.Consumer
	g.seq = seq
	g.arrival = t.arrivals
	g.created = now
	g.track = t
	// Groups of one track tend to have similar frame counts (a GOP, an
	// audio duration), so sizing the frame list like the last finished
	// group (or the last group, if it has more frames already: groups
	// overlap on parallel streams) makes steady-state appends
	// allocation-free.
	hint := t.frameHint.Load()
	if t.last != nil {
		hint = max(hint, int64(t.last.frameCount()))
	}
	if n := min(hint, maxFrameHint); n > 0 {
		g.frames = make([][]byte, 0, n)
	}
	if t.readers > 1 {
		// Readers that follow the track as it is written wait on each new
		// group; one list of the right size saves its growing.
		g.waiters = make(waitList, 0, t.readers)
	}
	t.arrivals++
	t.last = g
	t.cache = append(t.cache, g)
	if !t.hasSeq || seq > t.maxSeq {
		t.maxSeq = seq
		t.hasSeq = true
		t.latest = g
	}
	t.evictLocked(now)
	t.wakeLocked()
	return w, nil
}

// evictLocked drops the oldest cached groups, never the latest, while the
// cache is over its byte budget or its oldest group is older than MaxAge.
// An evicted group stays readable by the GroupReaders that already hold it;
// the track only stops referencing (and counting) it. The caller holds t.mu.
func (t *track) evictLocked(now time.Time) {
	for len(t.cache) > 1 {
		i := 0
		if t.cache[0] == t.latest {
			i = 1
		}
		v := t.cache[i]
		if t.bytes.Load() <= t.cfg.MaxBytes && now.Sub(v.created) <= t.cfg.MaxAge {
			break
		}
		v.mu.Lock()
		v.expired = true
		v.mu.Unlock()
		t.removeLocked(i)
	}
	if t.cfg.Consumer {
		for i := 0; i < len(t.cache); {
			g := t.cache[i]
			if t.neededLocked(g) {
				i++
				continue
			}
			g.settle()
			if g == t.latest {
				i++
				continue
			}
			t.removeLocked(i)
		}
	}
	t.multi.Store(len(t.cache) > 1)
}

// removeLocked drops cache[i]. The caller holds t.mu.
func (t *track) removeLocked(i int) {
	v := t.cache[i]
	copy(t.cache[i:], t.cache[i+1:])
	t.cache[len(t.cache)-1] = nil
	t.cache = t.cache[:len(t.cache)-1]

	v.mu.Lock()
	v.evicted = true
	size := v.size
	v.maybeReleaseLocked()
	v.mu.Unlock()
	t.bytes.Add(-size)
}

// neededLocked reports whether an open reader may still return g. The
// caller holds t.mu.
func (t *track) neededLocked(g *group) bool {
	for _, r := range t.subs {
		switch {
		case r.first == g:
			return true
		case g.arrival < r.cursor:
			// Arrived before the reader subscribed, or already passed in
			// arrival order.
		case r.inArrival || !r.started || g.seq > r.maxSeq:
			return true
		}
	}
	return false
}

// evictIfOverBudget is called after every frame so the cache never grows
// more than one frame past its budget while a large group is written.
func (t *track) evictIfOverBudget() {
	if t.bytes.Load() <= t.cfg.MaxBytes || !t.multi.Load() {
		return
	}
	t.mu.Lock()
	t.evictLocked(time.Now())
	t.mu.Unlock()
}

// wakeLocked wakes every reader waiting in NextGroup. The caller holds t.mu.
func (t *track) wakeLocked() { t.waiters.wakeAll() }

// removeWaiterLocked drops r's registration after a cancelled wait. The
// caller holds t.mu.
func (t *track) removeWaiterLocked(r *TrackReader) { t.waiters.remove(&r.waiter) }

func (t *track) close(err error) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	t.closed = true
	t.err = err
	if err != nil {
		for _, g := range t.cache {
			_ = g.finish(err)
		}
	}
	t.wakeLocked()
	close(t.done)
	t.mu.Unlock()

	if t.b != nil {
		t.b.trackClosed(t)
	}
	return nil
}

// StartPoint says where a new subscription to a track starts (see
// BroadcastReader.SubscribeFrom). Whatever the start, a reader then
// follows every group that arrives after it subscribed, in sequence order
// (NextGroup) or arrival order (NextArrival), and skips what the cache
// evicted before it got there.
type StartPoint uint8

const (
	// FromLatest starts at the group that is the latest (highest
	// sequence) when the reader subscribes, or at the first group to
	// arrive when the track has none yet. A player wants this: it shows
	// the live edge at once. Subscribe starts here.
	FromLatest StartPoint = iota
	// FromOldest starts at the oldest group the track still caches, and
	// so hands out every cached group before the ones that arrive later:
	// what a recorder, a pipeline or a test wants, so that a reader
	// attached before or just after the writer starts misses nothing.
	//
	// The cache decides what "oldest" reaches back to. A relay's cache
	// (the default CacheConfig) keeps groups within its byte and age
	// budget, so the reader starts with the oldest of those. A consumer's
	// cache (CacheConfig.Consumer) keeps a group only while a current
	// reader may still take it, plus the latest: the reader starts with
	// the oldest group some other reader of the track has yet to take,
	// else with the latest, and a latest group that already let go of
	// frames is skipped as with FromLatest (the reader starts with the
	// next group to arrive). On a track with no group yet, the reader
	// starts with the first group to arrive; from the oldest, NextGroup
	// holds that first group for CacheConfig.ReorderWait, so that lower
	// sequences arriving just after it (a peer's cached groups, sent
	// beside its live one) come first. Subscribing before the writer
	// starts is the one way to be sure of every group.
	//
	// A track fetched from a peer (a requested track, HandleRequests)
	// holds only what arrived since its first subscriber asked for it.
	// Its handler learns the first subscriber's start point
	// (TrackWriter.RequestedFrom): a moqbridge session then asks the peer
	// to start at group 0 (a SUBSCRIBE start group), which a moqbridge or
	// the reference Rust relay serves from its oldest cached group; a
	// peer that ignores start groups (the reference JavaScript
	// publisher) starts at its latest group.
	FromOldest
)

// String returns "latest" or "oldest".
func (p StartPoint) String() string {
	switch p {
	case FromLatest:
		return "latest"
	case FromOldest:
		return "oldest"
	}
	return "StartPoint(" + strconv.Itoa(int(p)) + ")"
}

// subscribe adds a reader starting at from, or returns nil if the track is
// closed. The caller holds the broadcast's lock, so adding a reader and
// dropping an unused requested track from the table cannot interleave.
func (t *track) subscribe(priority uint8, from StartPoint) *TrackReader {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.readers++
	// The reader's position is fixed now, not at its first read: it starts
	// at the latest (or oldest) group cached at this moment and then
	// follows every group that arrives after it, so a burst of groups
	// arriving between the subscription and the first read is not
	// skipped.
	r := &TrackReader{t: t, priority: priority, waiter: waiter{ch: make(chan struct{}, 1)}}
	r.cursor = t.arrivals
	r.oldest = from == FromOldest
	if from == FromOldest {
		// No first group: the reader considers every cached group (the
		// cache is in arrival order) and, not having started, takes the
		// lowest sequence among them first.
		if len(t.cache) > 0 {
			r.cursor = t.cache[0].arrival
		}
	} else {
		r.first = t.latest
	}
	if t.cfg.Consumer {
		t.subs = append(t.subs, r)
		if g := t.latest; g != nil {
			// A consumer's latest group may have let go of frames its
			// readers had passed (all but its last, so a group of one
			// frame, like a catalog's, is always whole); the new reader
			// then starts with the next group instead of in the middle
			// of one. The other cached groups are whole: a consumer
			// keeps only those a reader may still take, and lets go of
			// frames only in groups no reader may start.
			g.mu.Lock()
			if g.trimmed > 0 {
				r.first = nil
				r.cursor = max(r.cursor, g.arrival+1)
			} else {
				g.settled = false
			}
			g.mu.Unlock()
		}
	}
	return r
}

func (t *track) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// TrackReader is one subscription to a track. It starts at the group that
// was the latest when it subscribed (FromLatest; or, on a track with no
// group yet, at the first group to arrive), or at the oldest cached group
// (FromOldest), and then follows every group that arrives after that,
// skipping only groups evicted before it got to them. NextGroup hands them
// out in sequence order, NextArrival in arrival order.
//
// NextGroup must be called by one goroutine at a time. Close may be called
// from any goroutine and unblocks a pending NextGroup. The GroupReaders it
// returns are independent and may be read concurrently by other goroutines.
type TrackReader struct {
	t        *track
	priority uint8
	pool     chanPool       // wake-up channels for this reader's GroupReaders
	spare    []*GroupReader // closed GroupReaders handed back by recycle; guarded by t.mu
	// forwarder marks a forwarder's subscription (setForwarding): it reads
	// each frame only until it hands the GroupReader back (recycle), so
	// the groups it alone reads may reuse their payload memory; and it
	// tells whether its peer is behind (setBehind), which paces the
	// track's network writer.
	forwarder bool
	behind    atomic.Bool

	// Guarded by t.mu; the waiter's channel wakes NextGroup.
	waiter
	closed    bool
	first     *group // the latest group when the reader subscribed, until returned
	started   bool   // a group was returned
	oldest    bool   // subscribed FromOldest: the first group may wait for lower ones
	inArrival bool   // read with NextArrival (known once it read)
	maxSeq    uint64 // NextGroup: highest sequence returned
	cursor    uint64 // arrival index of the first group not yet considered
	// A gap being waited for (see pickLocked): after sequence gapAfter
	// (or before the first group, gapFirst), since gapSince, the creation
	// of the first group found beyond it.
	gapOpen  bool
	gapFirst bool
	gapAfter uint64
	gapSince time.Time
}

// Name returns the track name.
func (r *TrackReader) Name() string { return r.t.name }

// Priority returns the priority the subscriber asked for.
func (r *TrackReader) Priority() uint8 { return r.priority }

// Latest returns the highest group sequence the track has seen; ok is false
// before the first group.
func (r *TrackReader) Latest() (seq uint64, ok bool) {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.maxSeq, t.hasSeq
}

// NextGroup returns the next group to deliver, positioned at its first
// frame.
//
// The first call returns the group that was the latest (highest sequence)
// when the reader subscribed, or, if the track had none, the first group to
// arrive after that (the lowest sequence among those that arrived, if
// several did). A reader subscribed FromOldest first returns the lowest
// sequence among the groups cached when it subscribed and those that
// arrived since. Later calls return the cached group with the smallest
// sequence above the highest one already returned, so groups come in
// sequence order even when they were created out of order; when the next
// sequence is missing, a later group is held back for up to
// CacheConfig.ReorderWait in case the missing one is merely late. A group
// that arrives after a higher one was returned is skipped (NextGroup never
// goes backwards; NextArrival returns it), and so are groups evicted from
// the cache: a reader that falls behind jumps to the oldest cached group
// instead of holding memory.
//
// After TrackWriter.Close it returns the remaining groups it is entitled to,
// then io.EOF; after CloseWithError it returns that error at once. It returns
// ctx.Err() if ctx ends while waiting, and ErrClosed after Close.
func (r *TrackReader) NextGroup(ctx context.Context) (*GroupReader, error) {
	return r.next(ctx, false)
}

// NextArrival is NextGroup for forwarders: it starts at the same group and
// then returns every group that arrives after the reader subscribed, in
// arrival order, at once — including a group with a lower sequence than
// one already returned. A relay forwards groups as they come and lets the
// far end order them; it must neither hold groups back nor lose late ones.
func (r *TrackReader) NextArrival(ctx context.Context) (*GroupReader, error) {
	return r.next(ctx, true)
}

func (r *TrackReader) next(ctx context.Context, arrival bool) (*GroupReader, error) {
	t := r.t
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	t.mu.Lock()
	for {
		if r.closed {
			t.mu.Unlock()
			return nil, ErrClosed
		}
		if t.err != nil {
			err := t.err
			t.mu.Unlock()
			return nil, err
		}
		now := time.Now()
		if !t.closed {
			// Apply the age limit at read time as well, so a track whose
			// writer went quiet does not hand out stale groups.
			t.evictLocked(now)
		}
		r.inArrival = arrival
		g, hold := r.pickLocked(arrival, now)
		if g != nil {
			var gr *GroupReader
			if n := len(r.spare); n > 0 {
				gr = r.spare[n-1]
				r.spare[n-1] = nil
				r.spare = r.spare[:n-1]
				*gr = GroupReader{g: g, pool: &r.pool}
			} else {
				gr = newGroupReader(g, &r.pool)
			}
			g.mu.Lock()
			if r.forwarder {
				g.pins++
				gr.pinned = true
			} else {
				g.escaped = true
			}
			if t.cfg.Consumer {
				g.readers = append(g.readers, gr)
			}
			g.mu.Unlock()
			if t.cfg.Consumer {
				// The reader moved on: what it passed may go (g itself
				// stays readable through gr).
				t.evictLocked(now)
			}
			t.mu.Unlock()
			return gr, nil
		}
		if t.closed {
			t.mu.Unlock()
			return nil, io.EOF
		}
		t.waiters.add(&r.waiter)
		t.mu.Unlock()

		var expired <-chan time.Time
		if hold > 0 {
			if timer == nil {
				timer = time.NewTimer(hold)
			} else {
				timer.Reset(hold)
			}
			expired = timer.C
		}
		select {
		case <-r.ch:
			t.mu.Lock()
		case <-expired:
			t.mu.Lock()
		case <-ctx.Done():
			t.mu.Lock()
			t.removeWaiterLocked(r)
			t.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// pickLocked selects the next group for r and advances its position, or
// returns nil and, when a group is being held back for a missing
// predecessor, how long it may still be held. The caller holds t.mu.
func (r *TrackReader) pickLocked(arrival bool, now time.Time) (*group, time.Duration) {
	t := r.t
	if g := r.first; g != nil {
		r.first = nil
		// evicted is written with t.mu held, so reading it here is safe. An
		// evicted group may have handed its memory back: skip it like any
		// group evicted before the reader got to it.
		if !g.evicted {
			r.started = true
			r.maxSeq = g.seq
			return g, 0
		}
	}
	// The cache is in arrival order: the groups not yet considered start
	// at the first one whose arrival index reaches the cursor.
	from := sort.Search(len(t.cache), func(i int) bool { return t.cache[i].arrival >= r.cursor })
	if arrival {
		if from == len(t.cache) {
			return nil, 0
		}
		g := t.cache[from]
		r.cursor = g.arrival + 1
		r.started = true
		return g, 0
	}
	// Groups travel on parallel streams and may be created out of order;
	// handing them out in sequence order (the smallest cached sequence
	// above the last one returned) keeps a reader from skipping a group
	// merely because a later one was created first.
	var next *group
	for _, g := range t.cache[from:] {
		if (!r.started || g.seq > r.maxSeq) && (next == nil || g.seq < next.seq) {
			next = g
		}
	}
	if next == nil {
		return nil, 0
	}
	if (r.started && next.seq != r.maxSeq+1 || !r.started && r.oldest) && !t.closed {
		// A gap: the missing group may still be on its way. Hold the
		// next one back for at most ReorderWait after the first group
		// beyond the gap arrived. A reader from the oldest group holds
		// its first one the same way: a peer asked for its cached
		// groups sends them beside the live one, and the live one may
		// land first. The wait counts from the first group found beyond
		// the gap, not from whichever is next now: under a writer fast
		// enough to evict each candidate before its wait ends, counting
		// from the newest candidate would hold the reader for ever.
		if !r.gapOpen || r.gapFirst != !r.started || r.gapAfter != r.maxSeq {
			r.gapOpen, r.gapFirst, r.gapAfter, r.gapSince = true, !r.started, r.maxSeq, next.created
		} else if next.created.Before(r.gapSince) {
			r.gapSince = next.created
		}
		if hold := r.gapSince.Add(t.cfg.ReorderWait).Sub(now); hold > 0 {
			return nil, hold
		}
	}
	r.gapOpen = false
	r.started = true
	r.maxSeq = next.seq
	return next, 0
}

// Recycle takes back a GroupReader of r for reuse by the next group. The
// caller must have closed it, with no NextFrame call pending, and must not
// use it again, nor any frame it returned: it is handed out anew, and the
// group's payload memory may be reused. Forwarders do this so following a
// track allocates no reader per group.
func (r *TrackReader) Recycle(gr *GroupReader) {
	g := gr.g
	g.mu.Lock()
	if gr.pinned {
		gr.pinned = false
		g.pins--
		g.maybeReleaseLocked()
	}
	g.mu.Unlock()
	t := r.t
	t.mu.Lock()
	if len(r.spare) < maxSpareReaders {
		r.spare = append(r.spare, gr)
	}
	t.mu.Unlock()
}

// maxSpareReaders bounds the GroupReaders one TrackReader keeps for reuse:
// about as many as a forwarder has groups in flight.
const maxSpareReaders = 16

// Close ends the subscription and decrements the track's reader count; when
// it reaches zero, the writer's Unused channel closes and a requested track
// leaves its broadcast's table, so the next subscriber triggers a fresh
// request. GroupReaders already returned stay readable.
func (r *TrackReader) Close() {
	t := r.t
	if b := t.b; b != nil {
		// Reader counting and table removal happen under the broadcast
		// lock so a concurrent Subscribe cannot join a track that is
		// being dropped as unused.
		b.mu.Lock()
		defer b.mu.Unlock()
	}
	t.mu.Lock()
	if r.closed {
		t.mu.Unlock()
		return
	}
	r.closed = true
	t.removeWaiterLocked(r)
	notify(r.ch)
	t.readers--
	if i := slices.Index(t.subs, r); i >= 0 {
		t.subs = slices.Delete(t.subs, i, i+1)
		t.evictLocked(time.Now())
	}
	if i := slices.Index(t.forwarding, r); i >= 0 {
		t.forwarding = slices.Delete(t.forwarding, i, i+1)
		notify(t.ingestWake) // a writer paced on r alone goes on
	}
	becameUnused := t.readers == 0 && !t.unused
	if becameUnused {
		t.unused = true
		close(t.unusedCh)
	}
	t.mu.Unlock()

	if becameUnused && t.requested && t.b != nil {
		t.b.dropLocked(t)
	}
}

// RecordWriteTimes makes r's track note when each frame is written into
// it from now on, so that GroupReader.WriteTime tells how long a frame
// took to reach a reader: a consumer that measures its latency turns it
// on. It stays on for the life of the track, for all its readers, and
// costs a clock reading per frame and 8 bytes per cached frame.
func (r *TrackReader) RecordWriteTimes() { r.t.writeTimes.Store(true) }

// SetForwarding marks r as a forwarder's subscription, before its first
// read (see TrackReader.forwarder).
func (r *TrackReader) SetForwarding() {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	r.forwarder = true
	t.forwarding = append(t.forwarding, r)
}

// SetBehind records whether r's forwarder has more waiting for its peer
// than the peer takes in half its lag, and wakes a writer paced on the
// forwarders when it no longer has.
func (r *TrackReader) SetBehind(behind bool) {
	if r.behind.Swap(behind) && !behind && r.t.ingestWaiting.Load() > 0 {
		notify(r.t.ingestWake)
	}
}

// Ingest pacing: a relay reads a publisher's groups at network speed, but
// not while every one of several subscribers of a track is behind (has
// more waiting for it than it takes in half its lag). Then the relay
// itself (its CPU, its links) cannot carry the track at the rate the
// publisher sends it; reading on would only queue data for all of them
// until each one's drop rules reset groups. Pausing the read lets QUIC
// flow control slow the publisher to what the relay delivers instead. A
// single slow subscriber never pauses the read while another one keeps
// up, and a pause lasts at most ingestMaxWait at a time, by when the
// forwarders' own rules (see "Forwarding and overload") have acted on
// subscribers that stopped.
const ingestMaxWait = time.Second

// PaceIngest returns once a forwarder of the track is not behind, there
// are fewer than two, ctx ends, or ingestMaxWait passed. A network
// receiver calls it before reading each frame.
func (w *TrackWriter) PaceIngest(ctx context.Context) {
	t := &w.t
	if t.mayIngest() {
		return
	}
	t.ingestWaiting.Add(1)
	defer t.ingestWaiting.Add(-1)
	timer := time.NewTimer(ingestMaxWait)
	defer timer.Stop()
	for {
		select {
		case <-t.ingestWake:
			if t.mayIngest() {
				// Pass the wake-up on: other receivers may wait too.
				notify(t.ingestWake)
				return
			}
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		case <-t.done:
			return
		}
	}
}

// mayIngest reports whether the track may be written on: fewer than two
// forwarders read it (one subscriber behind is a slow subscriber, which
// its forwarder sheds groups for, not evidence that the relay is
// overloaded), a reader other than a forwarder does (an in-process
// consumer, which a remote subscriber must never slow down), or a
// forwarder is not behind.
func (t *track) mayIngest() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.forwarding) < 2 || t.readers > len(t.forwarding) {
		return true
	}
	for _, r := range t.forwarding {
		if !r.behind.Load() {
			return true
		}
	}
	return false
}

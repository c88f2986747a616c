package moq

import (
	"context"
	"io"
	"slices"
	"sync"
	"time"
)

// maxFrameHint caps how many frame slots a new group preallocates from the
// size of the previous group, so one huge group cannot make every later
// (small) group reserve a large, unaccounted slice.
const maxFrameHint = 4096

// group is the shared state of one group: an append-only list of frames.
// The writer half (GroupWriter) embeds it so a group costs one allocation;
// readers point into it.
type group struct {
	seq     uint64
	arrival uint64    // position in the track's creation order
	created time.Time // arrival time, for the cache's age limit
	track   *track    // nil for a group outside a track (tests)

	mu     sync.Mutex
	frames [][]byte
	// written holds the write time of each frame (nanoseconds since the
	// track's epoch) once the track records them (track.writeTimes): nil
	// before, then as long as frames, 0 for a frame written before.
	written   []int64
	size      int64 // payload bytes written so far
	frameHint int   // frames written, kept after the frames are released
	done      bool
	err       error // set with done: nil means complete (readers get io.EOF)
	evicted   bool  // no longer counted in the track's cache bytes
	expired   bool  // evicted for the cache's byte budget or age
	waiters   waitList

	// Reusable payload memory (framepool.go), for groups a network
	// receiver fills: bufs goes back to the pools once the receiver is
	// done with it, the cache has evicted the group and no forwarder reads
	// it any more — unless any other reader was given its frames.
	bufs       groupBuffers
	writerDone bool // the receiver allocates no more
	pins       int  // forwarders' GroupReaders not yet handed back
	escaped    bool // a reader other than a forwarder saw the frames
	released   bool

	// A consumer's group (CacheConfig.Consumer) lets go of the frames
	// every one of its readers has passed once no track reader may still
	// start it (settled), so a subscriber holds the frames it has still to
	// read, not whole groups: readers are its open GroupReaders, trimmed
	// the frames let go. The last frame is kept (see track.subscribe).
	readers []*GroupReader
	settled bool
	trimmed int
}

// settle records that no track reader may start g any more and lets go of
// what its readers have passed.
func (g *group) settle() {
	g.mu.Lock()
	if !g.settled {
		g.settled = true
		g.trimLocked()
	}
	g.mu.Unlock()
}

// trimLocked lets go of the frames of a settled group that every one of
// its readers has passed, all but the last. The caller holds g.mu.
func (g *group) trimLocked() {
	if !g.settled {
		return
	}
	upto := len(g.frames) - 1
	for _, r := range g.readers {
		upto = min(upto, r.pos)
	}
	for ; g.trimmed < upto; g.trimmed++ {
		g.frames[g.trimmed] = nil
	}
}

// maybeReleaseLocked returns the group's payload memory to the pools once
// nothing can read it any more. The caller holds g.mu.
func (g *group) maybeReleaseLocked() {
	// writerDone first: only then may bufs be read here.
	if !g.writerDone || g.bufs.head == nil || g.released || !g.evicted || g.pins > 0 || g.escaped {
		return
	}
	g.released = true
	g.bufs.release()
	// Nothing may read the frames now; dropping them turns a bug into an
	// empty group rather than into someone else's bytes. The count stays
	// for the next group's preallocation.
	g.frameHint = len(g.frames)
	clear(g.frames)
	g.frames = g.frames[:0]
	g.written = g.written[:0]
}

// wakeLocked wakes every registered reader. The caller holds g.mu.
func (g *group) wakeLocked() { g.waiters.wakeAll() }

// removeWaiterLocked drops r's registration after a cancelled wait. The
// caller holds g.mu.
func (g *group) removeWaiterLocked(r *GroupReader) { g.waiters.remove(&r.waiter) }

// waiter is a reader parked until a group or track changes: its wake-up
// channel (capacity one) and whether it is registered in a waitList.
type waiter struct {
	ch      chan struct{}
	waiting bool
}

// waitList holds the parked readers of one group or track. It is reused,
// so registering and waking allocate nothing in steady state. Its owner's
// mutex guards it and the waiters' waiting flags.
type waitList []*waiter

// add registers w unless it already is.
func (l *waitList) add(w *waiter) {
	if !w.waiting {
		w.waiting = true
		*l = append(*l, w)
	}
}

// wakeAll notifies and unregisters every waiter.
func (l *waitList) wakeAll() {
	for i, w := range *l {
		w.waiting = false
		notify(w.ch)
		(*l)[i] = nil
	}
	*l = (*l)[:0]
}

// remove unregisters w after a cancelled wait.
func (l *waitList) remove(w *waiter) {
	if !w.waiting {
		return
	}
	w.waiting = false
	for i, x := range *l {
		if x == w {
			last := len(*l) - 1
			(*l)[i] = (*l)[last]
			(*l)[last] = nil
			*l = (*l)[:last]
			return
		}
	}
}

// notify performs a non-blocking send on a wake-up channel of capacity one.
// A token already pending means the receiver will re-check state anyway, so
// a second one carries no information and may be dropped.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// GroupWriter is the producer half of a group: an ordered, append-only list
// of frames with a sequence number, shared with every reader without copying.
//
// One goroutine writes a group; the methods are nevertheless safe to call
// concurrently (with an unspecified frame order), so Abort may come from a
// goroutine that watches the network while another one writes.
type GroupWriter struct {
	g group
}

// Sequence returns the group's sequence number within its track.
func (w *GroupWriter) Sequence() uint64 { return w.g.seq }

// WriteFrame appends one frame. It takes ownership of p: the slice is shared
// with every reader and must not be modified afterwards. It returns
// ErrClosed once the group was closed or aborted. Steady-state writes
// allocate nothing: the frame list is preallocated from the previous group
// of the track and waking readers reuses their channels.
func (w *GroupWriter) WriteFrame(p []byte) error {
	_, err := w.WriteReceived(p)
	return err
}

// WriteReceived is WriteFrame that also reports whether the track's cache let
// the group go for its budget or age (expired) before this frame: a
// network receiver then stops receiving it (see receiveGroup).
func (w *GroupWriter) WriteReceived(p []byte) (expired bool, err error) {
	g := &w.g
	var at int64 // the write time, when the track records it
	if g.track != nil && g.track.writeTimes.Load() {
		at = max(int64(time.Since(g.track.epoch)), 1) // 0 means unknown
	}
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return false, ErrClosed
	}
	expired = g.expired
	if at != 0 || g.written != nil {
		if g.written == nil {
			// The first frame written since the track records write
			// times: the group's earlier frames have none.
			g.written = make([]int64, len(g.frames), max(cap(g.frames), len(g.frames)+1))
		}
		g.written = append(g.written, at)
	}
	g.frames = append(g.frames, p)
	n := int64(len(p))
	g.size += n
	counted := g.track != nil && !g.evicted
	if counted {
		// Added under g.mu so eviction, which also takes g.mu, subtracts
		// exactly what was added while the group was cached.
		g.track.bytes.Add(n)
	}
	g.wakeLocked()
	g.mu.Unlock()
	if counted {
		g.track.evictIfOverBudget()
	}
	return expired, nil
}

// Close marks the group complete: readers get io.EOF after its last frame.
// It returns ErrClosed if the group was already closed or aborted.
func (w *GroupWriter) Close() error {
	return w.g.finish(nil)
}

// Abort ends the group incomplete: readers get err after the frames already
// written. A nil err is delivered as ErrGroupDropped. Aborting a finished
// group has no effect.
func (w *GroupWriter) Abort(err error) {
	if err == nil {
		err = ErrGroupDropped
	}
	_ = w.g.finish(err)
}

// finish ends the group once; err nil means complete.
func (g *group) finish(err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return ErrClosed
	}
	g.done = true
	g.err = err
	if g.track != nil {
		g.track.frameHint.Store(int64(len(g.frames)))
	}
	g.wakeLocked()
	return nil
}

// sizeNow returns the payload bytes written so far.
func (g *group) sizeNow() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.size
}

// isEvicted reports whether the track's cache let the group go.
func (g *group) isEvicted() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.evicted
}

// frameCount returns the number of frames written so far.
func (g *group) frameCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released {
		return g.frameHint
	}
	return len(g.frames)
}

// DoneReceiving tells the group its receiver allocates no more, so its memory
// may be reused once nothing reads it.
func (w *GroupWriter) DoneReceiving() {
	g := &w.g
	g.mu.Lock()
	g.writerDone = true
	g.maybeReleaseLocked()
	g.mu.Unlock()
}

// GroupReader is a consumer's cursor into a group. Every reader starts at
// frame 0 and follows the group independently: a slow reader never delays
// the writer or other readers, it only holds on to frames already written.
//
// NextFrame must be called by one goroutine at a time; Close may be called
// from any goroutine and unblocks a pending NextFrame. Closing is not
// required for correctness, but it hands the reader's wake-up channel back
// to its TrackReader so the next group does not allocate one.
type GroupReader struct {
	g    *group
	pool *chanPool // where the wake-up channel comes from and returns to; nil: allocate
	pos  int

	// Guarded by g.mu. The waiter's channel is taken from pool on the
	// first wait.
	waiter
	inNext bool // a NextFrame call is running and may use ch
	closed bool
	pinned bool // counted in g.pins until handed back by TrackReader.recycle

	// writtenAt is the write time of the frame NextFrame last returned
	// (see group.written), 0 when unknown. Only NextFrame's goroutine
	// uses it.
	writtenAt int64
}

func newGroupReader(g *group, pool *chanPool) *GroupReader {
	return &GroupReader{g: g, pool: pool}
}

// Sequence returns the group's sequence number within its track.
func (r *GroupReader) Sequence() uint64 { return r.g.seq }

// NextFrame returns the next frame from the reader's position, blocking
// until the writer appends one. The returned slice is shared and must not be
// modified. After the last frame it returns io.EOF for a closed group or the
// abort error for an aborted one; it returns ctx.Err() when ctx ends while
// waiting, and ErrClosed after Close.
func (r *GroupReader) NextFrame(ctx context.Context) ([]byte, error) {
	g := r.g
	g.mu.Lock()
	for {
		if r.closed {
			r.finishNextLocked()
			g.mu.Unlock()
			return nil, ErrClosed
		}
		if r.pos < len(g.frames) {
			f := g.frames[r.pos]
			r.writtenAt = 0
			if r.pos < len(g.written) {
				r.writtenAt = g.written[r.pos]
			}
			r.pos++
			r.inNext = false
			if g.settled {
				g.trimLocked()
			}
			g.mu.Unlock()
			return f, nil
		}
		if g.done {
			err := g.err
			r.inNext = false
			g.mu.Unlock()
			if err == nil {
				err = io.EOF
			}
			return nil, err
		}
		// Register and check under the same lock: a frame appended after
		// the unlock below finds the registration and wakes us.
		if r.ch == nil {
			r.ch = r.pool.get()
		}
		r.inNext = true
		// Still registered after a stale token woke us: one entry is
		// enough, which add ensures.
		g.waiters.add(&r.waiter)
		ch := r.ch
		g.mu.Unlock()

		select {
		case <-ch:
			g.mu.Lock()
		case <-ctx.Done():
			g.mu.Lock()
			g.removeWaiterLocked(r)
			if r.closed {
				r.finishNextLocked()
			} else {
				r.inNext = false
			}
			g.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// WriteTime returns when the frame the last NextFrame call returned was
// written into its group (WriteFrame or WriteReceived), on the monotonic
// clock, so time.Since gives how long it took to reach this reader. ok is
// false when that is unknown: no frame returned yet, or the track did not
// record write times when the frame was written (see
// TrackReader.RecordWriteTimes). For a track fed from the network the time
// is the frame's arrival in this process, not its sending by the peer.
// Call it from the goroutine that calls NextFrame.
func (r *GroupReader) WriteTime() (t time.Time, ok bool) {
	if r.writtenAt == 0 || r.g.track == nil {
		return time.Time{}, false
	}
	return r.g.track.epoch.Add(time.Duration(r.writtenAt)), true
}

// finishNextLocked ends a NextFrame call on a closed reader, handing the
// wake-up channel back because Close left it to this call.
func (r *GroupReader) finishNextLocked() {
	r.inNext = false
	r.releaseLocked()
}

// releaseLocked returns the wake-up channel to the pool when no NextFrame
// call can still receive from it.
func (r *GroupReader) releaseLocked() {
	if r.ch == nil || r.inNext || r.waiting {
		return
	}
	r.pool.put(r.ch)
	r.ch = nil
}

// Close ends this reader: it releases its waiter registration and wake-up
// channel, and a pending or later NextFrame returns ErrClosed. The frames
// already returned stay valid.
func (r *GroupReader) Close() {
	g := r.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if i := slices.Index(g.readers, r); i >= 0 {
		g.readers = slices.Delete(g.readers, i, i+1)
		g.trimLocked()
	}
	if r.inNext {
		// A NextFrame call owns the channel; wake it so it sees closed
		// and returns the channel itself.
		g.removeWaiterLocked(r)
		if r.ch != nil {
			notify(r.ch)
		}
		return
	}
	r.releaseLocked()
}

// chanPool recycles wake-up channels among the GroupReaders of one
// TrackReader, so following a new group does not allocate a channel. The
// channels are buffered with capacity one and drained before reuse.
type chanPool struct {
	mu   sync.Mutex
	free []chan struct{}
}

// get returns a drained wake-up channel. A nil pool allocates.
func (p *chanPool) get() chan struct{} {
	if p != nil {
		p.mu.Lock()
		if n := len(p.free); n > 0 {
			ch := p.free[n-1]
			p.free[n-1] = nil
			p.free = p.free[:n-1]
			p.mu.Unlock()
			return ch
		}
		p.mu.Unlock()
	}
	return make(chan struct{}, 1)
}

// put drains ch and keeps it for reuse. A stale token would only cause a
// spurious wake-up, but draining keeps the next owner's first wait exact.
func (p *chanPool) put(ch chan struct{}) {
	if p == nil {
		return
	}
	select {
	case <-ch:
	default:
	}
	p.mu.Lock()
	p.free = append(p.free, ch)
	p.mu.Unlock()
}

// Frame payload slabs: small frames are carved out of shared slabs so a
// receiver makes one allocation per slabSize bytes instead of one per frame;
// large frames would waste slab space and get their own allocation.
const (
	slabSize       = 64 << 10
	largeFrameSize = 16 << 10
)

// FrameAllocator hands out frame payload buffers for network receivers. It
// carves them out of 64 KiB slabs, starting a new slab when the current one
// cannot fit the request; frames of 16 KiB or more get their own allocation.
// Each buffer has len == cap == n, so appending to one can never overwrite
// its neighbour.
//
// A slab stays alive while any frame carved from it is referenced, so a
// track's real memory can exceed its cached payload bytes by at most about
// one slab per stream. The zero value is ready to use. A FrameAllocator is
// not safe for concurrent use: keep one per receiving stream.
type FrameAllocator struct {
	slab []byte // unused tail of the current slab
}

// Alloc returns a zeroed buffer of length and capacity n. It panics if n is
// negative, like make.
func (a *FrameAllocator) Alloc(n int) []byte {
	if n < 0 {
		panic("protocol: FrameAllocator.Alloc: negative size")
	}
	if n >= largeFrameSize {
		return make([]byte, n)
	}
	if n > len(a.slab) {
		a.slab = make([]byte, slabSize)
	}
	p := a.slab[:n:n]
	a.slab = a.slab[n:]
	return p
}

package protocol

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// A forwarder sends the groups of one subscription to the peer, one
// unidirectional stream per group. It is built for a relay under load:
//
//   - Streams are opened in arrival order by one opener goroutine, so the
//     peer accepts them in that order; each opened group is written by a
//     worker goroutine of its own, so a stream stalled by flow control
//     never holds back the next group. Workers are kept and reused.
//   - At most limit groups have a stream at once; later groups wait for a
//     slot (a bound on memory, not on delivery: nothing is dropped for it).
//   - The oldest unfinished group (the head) is sent first: it gets the most
//     urgent QUIC priority, later groups less; on transports without
//     priorities a later group writes only while the head is not writing.
//   - Groups are dropped only on evidence that the peer cannot keep up
//     (see checkLocked): it took no data for lag while data waited for it,
//     or the rate at which it takes data (measured only while data waited
//     for it, see pace) is below the rate at which data is queued for it
//     and the backlog would take longer than lag to send. Then the groups
//     that cannot be sent whole within lag are reset, oldest first, never
//     the newest, so a slow peer receives whole groups rather than the
//     front part of many.
//
// Steady-state forwarding allocates nothing per frame and, per group, only
// the stream itself: group send states, the check timer, the workers and
// their write buffers are reused.
type forwarder struct {
	s        *Session
	ctx      context.Context // the subscription's; ends every stream
	id       uint64
	priority uint8
	ordered  bool
	limit    int
	lag      time.Duration
	track    *moq.TrackReader // where group readers are handed back for reuse

	mu      sync.Mutex
	groups  []*groupSend // unfinished groups in arrival order, queued ones included
	toOpen  []*groupSend // the tail of groups still waiting for a stream
	free    []*groupSend
	newest  uint64
	started bool
	closing bool // no more groups: the opener exits once toOpen is empty
	// The opener's context for OpenUniStream, replaced after it is
	// cancelled to abandon the open of a dropped group.
	openCtx    context.Context
	openCancel context.CancelFunc
	idle       int        // workers waiting on work
	gate       bool       // the transport has no send priorities: write takes turns
	turn       *sync.Cond // on mu: signalled when a write ends or the head changes

	// The check timer re-examines the subscription every lag/2 while it
	// has groups, so a peer that stopped reading is noticed without a new
	// group arriving.
	checkTimer *time.Timer
	checkArmed bool
	// offered counts the payload bytes of the groups already forgotten;
	// with the sizes of the groups still held it is what was queued for
	// the peer, sampled into queued to learn the incoming rate.
	offered int64
	queued  rateWindow

	pace pace // how fast the peer takes data

	kick chan struct{}   // wakes the opener (capacity one)
	work chan *groupSend // hands an opened group to an idle worker
	wg   sync.WaitGroup  // the opener and the workers
}

// sendState is where a group is in its life on the forwarder.
type sendState uint8

const (
	stateQueued  sendState = iota // waiting for its stream
	stateOpening                  // the opener is opening its stream
	stateSending                  // a worker is writing it
	stateClosing                  // fully written, FIN under way: no longer droppable
)

// groupSend is one group on its way to the peer. The forwarder reuses them;
// every field is guarded by forwarder.mu except written, which its worker
// updates as it goes.
type groupSend struct {
	seq     uint64
	gr      *moq.GroupReader
	stream  transport.SendStream
	state   sendState
	dropped bool
	code    wire.ErrorCode // reset code once dropped
	urgency int8
	written atomic.Int64 // bytes written to the stream so far
	writing bool         // a Write on the stream is under way
}

func newForwarder(s *Session, ctx context.Context, sub wire.Subscribe, track *moq.TrackReader) *forwarder {
	lag := s.limits.MaxGroupLag
	if sub.MaxLatencyMs > 0 {
		lag = time.Duration(sub.MaxLatencyMs) * time.Millisecond
	}
	f := &forwarder{
		s: s, ctx: ctx, id: sub.ID, priority: sub.Priority, ordered: sub.Ordered,
		limit: s.limits.MaxInflightGroups, lag: lag, track: track,
		kick: make(chan struct{}, 1),
		work: make(chan *groupSend),
	}
	f.turn = sync.NewCond(&f.mu)
	f.gate = s.conn.Kind() != transport.KindQUIC
	f.openCtx, f.openCancel = context.WithCancel(ctx)
	f.queued.span = max(minQueuedRateSpan, queuedRateLags*lag)
	f.checkTimer = time.AfterFunc(time.Hour, f.onCheck)
	f.checkTimer.Stop()
	f.wg.Add(1)
	s.spawn(func() {
		defer f.wg.Done()
		f.runOpener()
	})
	return f
}

// slowerBy is how far below the rate data is queued for it a peer's rate
// must be before it counts as slower than its track.
const slowerBy = 0.9

// The rate of data queued for a peer is averaged over queuedRateLags lags,
// and no less than minQueuedRateSpan: long enough that a burst of groups
// (a publisher catching up, a keyframe) counts as what it is, a short
// excess over the track's rate, and not as a rate the peer must sustain;
// short enough that a peer that really is slower is noticed within a few
// seconds, sooner where the subscriber asked for a lower latency.
const (
	queuedRateLags    = 8
	minQueuedRateSpan = 4 * time.Second
)

// start queues g for sending. It never blocks.
func (f *forwarder) start(g *moq.GroupReader) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		f.releaseReader(g)
		return
	}
	if !f.started || g.Sequence() > f.newest {
		f.started = true
		f.newest = g.Sequence()
	}
	gs := f.get()
	gs.seq = g.Sequence()
	gs.gr = g
	f.groups = append(f.groups, gs)
	f.toOpen = append(f.toOpen, gs)
	f.checkLocked(now)
	f.reapLocked()
	f.reprioritiseLocked()
	f.armCheckLocked()
	notify(f.kick)
}

// droppable says whether gs may still be reset: not dropped already and
// not fully written.
func (gs *groupSend) droppable() bool { return !gs.dropped && gs.state != stateClosing }

// backlog is the payload of gs still to be written.
func (gs *groupSend) backlog() int64 { return gs.gr.Size() - gs.written.Load() }

// firstLive returns the head: the oldest group not dropped, or nil.
func (f *forwarder) firstLive() *groupSend {
	for _, gs := range f.groups {
		if !gs.dropped {
			return gs
		}
	}
	return nil
}

// streamsOpen counts the groups holding a stream slot: being opened or
// written.
func (f *forwarder) streamsOpen() int {
	n := 0
	for _, gs := range f.groups {
		if gs.state == stateOpening || gs.state == stateSending {
			n++
		}
	}
	return n
}

// dropLocked resets gs unless it is already dropped or fully written. A
// stream being opened is abandoned, a stream being written is reset and its
// reader closed, which wakes its worker; a queued group is left for the
// caller to reap (reapLocked) once it is done walking the group list.
// overload says whether the drop counts as one for a slow peer.
func (f *forwarder) dropLocked(gs *groupSend, code wire.ErrorCode, overload bool) {
	if gs == nil || !gs.droppable() {
		return
	}
	gs.dropped = true
	gs.code = code
	f.turn.Broadcast() // the head may have changed; a dropped group stops waiting
	if overload {
		f.s.stats.groupsDrop.Add(1)
	}
	switch gs.state {
	case stateOpening:
		f.openCancel()
	case stateSending:
		gs.stream.CancelWrite(uint64(code))
		gs.gr.Close()
	}
}

// checkLocked drops what the peer cannot take, on evidence only:
//
//   - a group waiting for a stream slot was evicted from the track's cache.
//   - it is stalled: something (a write, a stream open) has waited on the
//     peer for lag without any progress. Every superseded group (all but
//     the newest) is reset: the peer will get the newest when it reads
//     again.
//   - it is slower than its track: its measured rate is below the rate of
//     data queued for it, and the backlog would take longer than lag to
//     send. Then, oldest first, each superseded group that could not be
//     sent whole within lag behind the groups kept ahead of it is reset.
//
// A peer that takes data as fast as it is queued loses nothing, whatever
// the size of a burst the cache holds, and neither rule acts before there
// is evidence: no rate is assumed before one was measured. The check also
// tells the track whether this subscriber is behind, for ingest pacing
// (moq.TrackWriter.paceIngest).
func (f *forwarder) checkLocked(now time.Time) {
	evicted := 0
	for _, gs := range f.toOpen {
		// A group still waiting for a stream is not being read yet: like
		// a track reader that fell behind, the peer skips it once the
		// cache let it go, so waiting groups pin no more than the cache.
		if gs.droppable() && gs.gr.Evicted() {
			f.dropLocked(gs, wire.CodeDropped, true)
			evicted++
		}
	}
	if evicted > 0 {
		f.s.log.Debug("moq groups dropped: evicted while waiting for a stream", "subscribe", f.id, "groups", evicted)
	}
	// One pass over the groups gives what was queued for the peer (sampled
	// on every check) and what of it is still to be written.
	total, backlog := f.offered, int64(0)
	for _, gs := range f.groups {
		size := gs.gr.Size()
		total += size
		if gs.droppable() {
			backlog += size - gs.written.Load()
		}
	}
	queued := f.queued.rate(now, total)
	rate, stalled := f.pace.state(now, f.lag)
	budget := rate * f.lag.Seconds() // bytes the peer takes within lag
	f.track.SetBehind(stalled || rate > 0 && float64(backlog) > budget/2)
	if stalled {
		n := 0
		for _, gs := range f.groups {
			if gs.seq < f.newest && gs.droppable() {
				f.dropLocked(gs, wire.CodeDropped, true)
				n++
			}
		}
		if n > 0 {
			f.s.log.Debug("moq groups dropped: subscriber took no data", "subscribe", f.id, "groups", n, "lag", f.lag)
		}
		return
	}
	if rate <= 0 {
		return
	}
	// Slower means clearly slower: a peer taking data at the rate it is
	// queued keeps whatever backlog a burst left, and loses nothing to
	// the noise of two measurements.
	if float64(backlog) <= budget || rate >= slowerBy*queued {
		return
	}
	var ahead int64 // backlog of the groups kept ahead
	n := 0
	for _, gs := range f.groups {
		if !gs.droppable() {
			continue
		}
		left := gs.backlog()
		if gs.seq < f.newest && float64(ahead+left) > budget {
			f.dropLocked(gs, wire.CodeDropped, true)
			n++
			continue
		}
		ahead += left
	}
	if n > 0 {
		f.s.log.Debug("moq groups dropped: subscriber slower than its track", "subscribe", f.id, "groups", n,
			"rate", int64(rate), "queued_rate", int64(queued), "backlog", backlog, "lag", f.lag)
	}
}

// finished removes gs after its opener or worker is done with it and
// recycles it.
func (f *forwarder) finished(gs *groupSend) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgetLocked(gs)
	f.turn.Broadcast()
	f.checkLocked(now)
	f.reapLocked()
	f.reprioritiseLocked()
	f.armCheckLocked()
	notify(f.kick) // a stream slot is free
}

// reapLocked forgets the dropped groups that never got a stream. Nothing
// else refers to them, and while the opener waits for a stream (a peer that
// stopped accepting them) they would stay queued, each pinning its group's
// memory.
func (f *forwarder) reapLocked() {
	kept := f.toOpen[:0]
	for _, gs := range f.toOpen {
		if !gs.dropped || gs.state != stateQueued {
			kept = append(kept, gs)
			continue
		}
		f.forgetLocked(gs)
	}
	clear(f.toOpen[len(kept):])
	f.toOpen = kept
}

// forgetLocked takes gs out of the group list, hands its reader back and
// keeps gs for reuse.
func (f *forwarder) forgetLocked(gs *groupSend) {
	for i, x := range f.groups {
		if x == gs {
			copy(f.groups[i:], f.groups[i+1:])
			f.groups[len(f.groups)-1] = nil
			f.groups = f.groups[:len(f.groups)-1]
			break
		}
	}
	f.offered += gs.gr.Size()
	f.releaseReader(gs.gr)
	f.put(gs)
}

// releaseReader closes a group reader and hands it back to the track reader
// for reuse. The caller holds f.mu and nothing else uses gr any more.
func (f *forwarder) releaseReader(gr *moq.GroupReader) {
	gr.Close()
	f.track.Recycle(gr)
}

func (f *forwarder) get() *groupSend {
	if n := len(f.free); n > 0 {
		gs := f.free[n-1]
		f.free[n-1] = nil
		f.free = f.free[:n-1]
		return gs
	}
	return new(groupSend)
}

func (f *forwarder) put(gs *groupSend) {
	gs.seq, gs.gr, gs.stream = 0, nil, nil
	gs.state, gs.dropped, gs.code, gs.urgency, gs.writing = stateQueued, false, 0, 0, false
	gs.written.Store(0)
	f.free = append(f.free, gs)
}

// urgency maps track priority and a group's place among the live groups to
// a QUIC send urgency (0 is sent first). The head goes first. After it,
// ordered subscriptions get the older groups first; unordered ones (what
// browsers ask for) the newest first, since they render it without waiting
// for the others.
func (f *forwarder) urgency(gs *groupSend, pos int) int8 {
	base := int8(3)
	if f.priority >= 128 {
		base = 2
	}
	rank := uint64(pos)
	if !f.ordered && pos > 0 {
		rank = 1 + f.newest - gs.seq
	}
	return base + int8(min(rank, 4))
}

// reprioritiseLocked updates the urgency of the streams being written
// (raw QUIC only; a no-op on other transports).
func (f *forwarder) reprioritiseLocked() {
	pos := 0
	for _, gs := range f.groups {
		if gs.dropped {
			continue
		}
		u := f.urgency(gs, pos)
		pos++
		if gs.state == stateSending && gs.urgency != u {
			gs.urgency = u
			gs.stream.SetPriority(u)
		}
	}
}

// armCheckLocked keeps the check timer running while there are groups.
func (f *forwarder) armCheckLocked() {
	if len(f.groups) == 0 || f.checkArmed {
		return
	}
	f.checkArmed = true
	f.checkTimer.Reset(f.lag / 2)
}

// onCheck re-examines the subscription (see checkLocked).
func (f *forwarder) onCheck() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checkArmed = false
	if f.closing && len(f.groups) == 0 {
		return
	}
	f.checkLocked(time.Now())
	f.reapLocked()
	f.reprioritiseLocked()
	f.armCheckLocked()
}

// runOpener opens the streams of queued groups in order and hands each to a
// worker.
func (f *forwarder) runOpener() {
	defer close(f.work)
	for {
		f.mu.Lock()
		// Wait for a group and a free stream slot (or for the end).
		for (len(f.toOpen) == 0 && !f.closing || len(f.toOpen) > 0 && f.streamsOpen() >= f.limit) && f.ctx.Err() == nil {
			f.mu.Unlock()
			select {
			case <-f.kick:
			case <-f.ctx.Done():
			}
			f.mu.Lock()
		}
		if len(f.toOpen) == 0 || f.ctx.Err() != nil {
			// Closing with nothing left, or the subscription ended: groups
			// never opened are finished here.
			pending := f.toOpen
			f.toOpen = nil
			f.mu.Unlock()
			for _, gs := range pending {
				f.finished(gs)
			}
			return
		}
		gs := f.toOpen[0]
		// Shift down rather than reslice, so the queue keeps its array.
		copy(f.toOpen, f.toOpen[1:])
		f.toOpen[len(f.toOpen)-1] = nil
		f.toOpen = f.toOpen[:len(f.toOpen)-1]
		// Not dropped: whoever drops a queued group reaps it at once.
		gs.state = stateOpening
		ctx := f.openCtx
		f.mu.Unlock()

		// Opening waits on the peer when it stops accepting streams:
		// evidence of a stall like a write that does not progress.
		f.pace.begin(time.Now())
		str, err := f.s.conn.OpenUniStream(ctx)
		f.pace.end(time.Now(), 0)

		f.mu.Lock()
		if ctx.Err() != nil && f.ctx.Err() == nil {
			// Cancelled to abandon a dropped group: a fresh context for
			// the next open.
			f.openCtx, f.openCancel = context.WithCancel(f.ctx)
		}
		if err != nil {
			gs.dropped = true
			f.mu.Unlock()
			f.finished(gs)
			continue
		}
		if gs.dropped {
			code := gs.code
			f.mu.Unlock()
			str.CancelWrite(uint64(code))
			f.finished(gs)
			continue
		}
		gs.stream = str
		gs.state = stateSending
		gs.urgency = -1
		f.reprioritiseLocked()
		if f.idle > 0 {
			f.idle--
			f.mu.Unlock()
			f.work <- gs
			continue
		}
		f.mu.Unlock()
		f.wg.Add(1)
		f.s.spawn(func() {
			defer f.wg.Done()
			f.runWorker(gs)
		})
	}
}

// runWorker writes groups until the opener has no more for it.
func (f *forwarder) runWorker(gs *groupSend) {
	buf := make([]byte, 0, smallFrame+16)
	for {
		buf = f.send(gs, buf)
		f.finished(gs)
		f.mu.Lock()
		f.idle++
		f.mu.Unlock()
		var ok bool
		if gs, ok = <-f.work; !ok {
			return
		}
	}
}

// smallFrame is the payload size up to which a frame is copied behind its
// size prefix and written with one call. Written separately, the few bytes
// of the size become a QUIC STREAM frame of their own: for frames of a few
// KiB that costs quic-go more (one more frame to pack, track and
// acknowledge, 24 against 18 of its allocations per 6 KiB frame) than the
// copy does.
const smallFrame = 16 << 10

// send writes one group: the group header, then each frame as it is
// produced, then FIN. buf is the worker's scratch buffer, returned for reuse.
func (f *forwarder) send(gs *groupSend, buf []byte) []byte {
	s, str, g := f.s, gs.stream, gs.gr
	buf = wire.AppendGroupHeader(buf[:0], wire.Group{SubscribeID: f.id, Sequence: gs.seq})
	for {
		frame, err := g.NextFrame(f.ctx)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				f.mu.Lock()
				dropped := gs.dropped
				f.mu.Unlock()
				if !dropped && f.ctx.Err() == nil {
					// The group was aborted upstream.
					str.CancelWrite(uint64(wire.CodeCancel))
				}
				return buf
			}
			if len(buf) > 0 {
				if err := f.write(gs, buf); err != nil {
					return buf
				}
				gs.written.Add(int64(len(buf)))
			}
			f.mu.Lock()
			if gs.dropped {
				f.mu.Unlock()
				return buf
			}
			gs.state = stateClosing
			f.mu.Unlock()
			if str.Close() == nil {
				s.stats.groupsSent.Add(1)
			}
			notify(f.kick) // its stream slot is free
			return buf
		}
		buf = wire.AppendFrameHeader(buf, uint64(len(frame)))
		n := len(buf) + len(frame)
		if len(frame) <= smallFrame && n <= cap(buf) {
			buf = append(buf, frame...)
			if err := f.write(gs, buf); err != nil {
				return buf
			}
		} else {
			if err := f.write(gs, buf); err != nil {
				return buf
			}
			if err := f.write(gs, frame); err != nil {
				return buf
			}
		}
		gs.written.Add(int64(n))
		buf = buf[:0]
		s.stats.framesSent.Add(1)
	}
}

// write writes p to the group's stream, on transports without send
// priorities (WebTransport, WebSocket) only when it is the group's turn:
// the head writes at once, a later group waits while the head is writing,
// so that it only uses what the head leaves unused while it waits for the
// publisher. Without this a browser reading every group stream as data
// arrives shares its bandwidth among all groups in flight and receives few
// of them whole. Raw QUIC orders groups by priority instead, which also
// lets a later group use the link while the head is held back by the
// peer's flow control; gating there too cost latency and complete groups
// in the CPU-bound relay benchmark.
//
// Large payloads are written in pieces of at most writePiece bytes, so the
// progress of a slow peer is seen piece by piece (see pace).
func (f *forwarder) write(gs *groupSend, p []byte) error {
	for len(p) > writePiece {
		if err := f.writePiece(gs, p[:writePiece]); err != nil {
			return err
		}
		p = p[writePiece:]
	}
	return f.writePiece(gs, p)
}

// writePiece bounds one stream write; see write.
const writePiece = 64 << 10

func (f *forwarder) writePiece(gs *groupSend, p []byte) error {
	if !f.gate {
		f.pace.begin(time.Now())
		_, err := gs.stream.Write(p)
		f.pace.end(time.Now(), len(p))
		return err
	}
	f.mu.Lock()
	for !gs.dropped && f.ctx.Err() == nil {
		head := f.firstLive()
		if head == nil || head == gs || !head.writing {
			break
		}
		f.turn.Wait()
	}
	gs.writing = true
	f.mu.Unlock()
	f.pace.begin(time.Now())
	_, err := gs.stream.Write(p)
	f.pace.end(time.Now(), len(p))
	f.mu.Lock()
	gs.writing = false
	f.turn.Broadcast()
	f.mu.Unlock()
	return err
}

// stop ends the forwarder once the track ended or the subscription was
// cancelled: with a nil cause the groups in flight are finished first,
// otherwise they are reset with code. It returns once every stream is done.
func (f *forwarder) stop(cause error, code wire.ErrorCode) {
	f.mu.Lock()
	f.closing = true
	if cause != nil {
		for _, gs := range f.groups {
			f.dropLocked(gs, code, false)
		}
		f.reapLocked()
	}
	f.mu.Unlock()
	notify(f.kick)
	f.wg.Wait()
	f.checkTimer.Stop()
	f.openCancel()
}

// notify does a non-blocking send on a wake-up channel of capacity one.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

package protocol

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// A forwarder sends the groups of one subscription to the peer, one
// unidirectional stream per group. It is built for a relay under load:
//
//   - Streams are opened in group order by one opener goroutine, so the peer
//     accepts them in order; each opened group is written by a worker
//     goroutine of its own, so a stream stalled by flow control never holds
//     back the next group. Workers are kept and reused across groups.
//   - The oldest unfinished group (the head) is sent first: it gets the most
//     urgent QUIC priority, later groups less; on transports without
//     priorities a later group writes only while the head is not writing.
//   - Latency stays bounded by dropping, never by queueing. A group still in
//     flight lag after a newer group arrived is reset. Whenever the head
//     finishes or is dropped, every waiting group that could no longer be
//     delivered within lag at the rate the peer has been taking groups is
//     reset at once, so the bandwidth goes to a group that can still arrive
//     complete instead of to the front part of many that cannot. At most
//     limit groups are in flight; beyond that the oldest is reset.
//
// Steady-state forwarding allocates nothing per frame and, per group, only
// the stream itself: group send states, the lag timer, the workers and their
// write buffers are reused.
type forwarder struct {
	s        *Session
	ctx      context.Context // the subscription's; ends every stream
	id       uint64
	priority uint8
	ordered  bool
	limit    int
	lag      time.Duration
	track    *TrackReader // where group readers are handed back for reuse

	mu       sync.Mutex
	inflight []*groupSend // unfinished groups in arrival order
	toOpen   []*groupSend // the tail of inflight still waiting for a stream
	free     []*groupSend
	newest   uint64
	started  bool
	closing  bool    // no more groups: the opener exits once toOpen is empty
	rate     float64 // bytes/s the peer took while groups queued; 0: unknown
	// The opener's context for OpenUniStream, replaced after it is
	// cancelled to abandon the open of a dropped group.
	openCtx    context.Context
	openCancel context.CancelFunc
	idle       int        // workers waiting on work
	gate       bool       // the transport has no send priorities: write takes turns
	turn       *sync.Cond // on mu: signalled when a write ends or the head changes
	lagTimer   *time.Timer
	lagAt      time.Time // deadline lagTimer is armed for; zero: stopped

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
	gr      *GroupReader
	stream  transport.SendStream
	state   sendState
	dropped bool
	code    wire.ErrorCode // reset code once dropped
	urgency int8

	// supersededAt is when a newer group arrived (zero before); from then
	// on the group's upstream is complete and lag counts.
	supersededAt time.Time
	// headAt is when the group became the head, and markBytes how much of
	// it was written at max(headAt, supersededAt): the start of the span
	// over which the peer's rate is measured.
	headAt    time.Time
	markBytes int64
	written   atomic.Int64 // bytes written to the stream so far
	writing   bool         // a Write on the stream is under way
}

func newForwarder(s *Session, ctx context.Context, sub wire.Subscribe, track *TrackReader) *forwarder {
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
	f.lagTimer = time.AfterFunc(time.Hour, f.onLag)
	f.lagTimer.Stop()
	f.wg.Add(1)
	s.spawn(func() {
		defer f.wg.Done()
		f.runOpener()
	})
	return f
}

// start queues g for sending. It never blocks.
func (f *forwarder) start(g *GroupReader) {
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
		for _, gs := range f.inflight {
			if gs.supersededAt.IsZero() {
				gs.supersededAt = now
				if !gs.headAt.IsZero() {
					gs.markBytes = gs.written.Load()
				}
			}
		}
	}
	// Beyond the in-flight bound the oldest group goes, head or not.
	for f.liveCount() >= f.limit {
		f.dropLocked(f.firstDroppable(), wire.CodeDropped, true)
		f.promoteLocked(now)
	}
	f.shedLocked(now)
	gs := f.get()
	gs.seq = g.Sequence()
	gs.gr = g
	if g.Sequence() < f.newest {
		// A late group (created after a newer one): already superseded.
		gs.supersededAt = now
	}
	f.inflight = append(f.inflight, gs)
	f.toOpen = append(f.toOpen, gs)
	if f.firstLive() == gs {
		gs.headAt = now
	}
	f.reapLocked()
	f.reprioritiseLocked()
	f.armLagLocked()
	notify(f.kick)
}

// droppable says whether gs may still be reset: not dropped already and
// not fully written.
func (gs *groupSend) droppable() bool { return !gs.dropped && gs.state != stateClosing }

// liveCount counts the in-flight groups that may still be dropped.
func (f *forwarder) liveCount() int {
	n := 0
	for _, gs := range f.inflight {
		if gs.droppable() {
			n++
		}
	}
	return n
}

// firstDroppable returns the oldest group that may still be dropped, or nil.
func (f *forwarder) firstDroppable() *groupSend {
	for _, gs := range f.inflight {
		if gs.droppable() {
			return gs
		}
	}
	return nil
}

// firstLive returns the head: the oldest in-flight group not dropped, or nil.
func (f *forwarder) firstLive() *groupSend {
	for _, gs := range f.inflight {
		if !gs.dropped {
			return gs
		}
	}
	return nil
}

// dropLocked resets gs unless it is already dropped or fully written. A
// stream being opened is abandoned, a stream being written is reset and its
// reader closed, which wakes its worker; a queued group is left for the
// caller to reap (reapLocked) once it is done walking the in-flight list.
// overload says whether the drop counts as one for a slow peer.
func (f *forwarder) dropLocked(gs *groupSend, code wire.ErrorCode, overload bool) {
	if gs == nil || !gs.droppable() {
		return
	}
	if gs == f.firstLive() {
		f.sampleRateLocked(gs, time.Now())
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

// promoteLocked runs when the head changed: the new head starts its rate
// span, and groups that can no longer arrive within lag are dropped.
func (f *forwarder) promoteLocked(now time.Time) {
	f.shedLocked(now)
	if head := f.firstLive(); head != nil && head.headAt.IsZero() {
		head.headAt = now
		head.markBytes = head.written.Load()
	}
}

// shedLocked drops every superseded group that, at the rate the peer has
// been taking groups and behind the groups ahead of it, would not be sent
// completely before its lag runs out: the bandwidth is better spent on a
// group that can still arrive whole. The newest group is always kept, and
// nothing is shed before the rate is known.
func (f *forwarder) shedLocked(now time.Time) {
	if f.rate <= 0 {
		return
	}
	var ahead int64 // bytes still to send of the groups kept ahead
	for _, gs := range f.inflight {
		if !gs.droppable() {
			continue
		}
		left := gs.gr.g.sizeNow() - gs.written.Load()
		if gs.supersededAt.IsZero() || gs.seq >= f.newest {
			ahead += left
			continue
		}
		// Superseded, so its size is final.
		need := time.Duration(float64(ahead+left) / f.rate * float64(time.Second))
		if now.Add(need).After(gs.supersededAt.Add(f.lag)) {
			f.dropLocked(gs, wire.CodeDropped, true)
			continue
		}
		ahead += left
	}
}

// finished removes gs after its opener or worker is done with it, learns
// the peer's rate from a head that was sent while newer groups waited, and
// recycles it.
func (f *forwarder) finished(gs *groupSend) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	wasHead := f.firstLive() == gs
	if wasHead && !gs.dropped {
		f.sampleRateLocked(gs, now)
	}
	f.forgetLocked(gs)
	f.turn.Broadcast()
	if wasHead || gs.dropped {
		f.promoteLocked(now)
	}
	f.reapLocked()
	f.reprioritiseLocked()
	f.armLagLocked()
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

// forgetLocked takes gs out of the in-flight list, hands its reader back
// and keeps gs for reuse.
func (f *forwarder) forgetLocked(gs *groupSend) {
	for i, x := range f.inflight {
		if x == gs {
			copy(f.inflight[i:], f.inflight[i+1:])
			f.inflight[len(f.inflight)-1] = nil
			f.inflight = f.inflight[:len(f.inflight)-1]
			break
		}
	}
	f.releaseReader(gs.gr)
	f.put(gs)
}

// sampleRateLocked learns the rate at which the peer takes data from the
// head gs, finished or being dropped: over the span since it was both the
// head and superseded, its data was all there and it was sent first, so
// the network set its pace.
func (f *forwarder) sampleRateLocked(gs *groupSend, now time.Time) {
	if gs.supersededAt.IsZero() || gs.headAt.IsZero() {
		return
	}
	from := gs.headAt
	if gs.supersededAt.After(from) {
		from = gs.supersededAt
	}
	d := now.Sub(from)
	if d < 10*time.Millisecond {
		return
	}
	sample := float64(gs.written.Load()-gs.markBytes) / d.Seconds()
	if f.rate <= 0 {
		f.rate = sample
	} else {
		f.rate = (f.rate + sample) / 2
	}
}

// releaseReader closes a group reader and hands it back to the track reader
// for reuse. The caller holds f.mu and nothing else uses gr any more.
func (f *forwarder) releaseReader(gr *GroupReader) {
	gr.Close()
	f.track.recycle(gr)
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
	gs.supersededAt, gs.headAt, gs.markBytes = time.Time{}, time.Time{}, 0
	gs.written.Store(0)
	f.free = append(f.free, gs)
}

// urgency maps track priority and a group's place among the live in-flight
// groups to a QUIC send urgency (0 is sent first). The head goes first.
// After it, ordered subscriptions get the older groups first; unordered
// ones (what browsers ask for) the newest first, since they render it
// without waiting for the others.
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
	for _, gs := range f.inflight {
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

// armLagLocked points the lag timer at the earliest deadline of a
// superseded live group.
func (f *forwarder) armLagLocked() {
	var next time.Time
	for _, gs := range f.inflight {
		if !gs.droppable() || gs.supersededAt.IsZero() {
			continue
		}
		if d := gs.supersededAt.Add(f.lag); next.IsZero() || d.Before(next) {
			next = d
		}
	}
	if next.Equal(f.lagAt) {
		return
	}
	f.lagAt = next
	if next.IsZero() {
		f.lagTimer.Stop()
		return
	}
	f.lagTimer.Reset(time.Until(next))
}

// onLag drops the groups whose lag ran out.
func (f *forwarder) onLag() {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lagAt = time.Time{}
	dropped := false
	for _, gs := range f.inflight {
		if gs.droppable() && !gs.supersededAt.IsZero() && !now.Before(gs.supersededAt.Add(f.lag)) {
			f.dropLocked(gs, wire.CodeDropped, true)
			dropped = true
		}
	}
	if dropped {
		f.promoteLocked(now)
		f.reapLocked()
		f.reprioritiseLocked()
	}
	f.armLagLocked()
}

// runOpener opens the streams of queued groups in order and hands each to a
// worker.
func (f *forwarder) runOpener() {
	defer close(f.work)
	for {
		f.mu.Lock()
		for len(f.toOpen) == 0 && !f.closing && f.ctx.Err() == nil {
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

		str, err := f.s.conn.OpenUniStream(ctx)

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
func (f *forwarder) write(gs *groupSend, p []byte) error {
	if !f.gate {
		_, err := gs.stream.Write(p)
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
	_, err := gs.stream.Write(p)
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
		for _, gs := range f.inflight {
			f.dropLocked(gs, code, false)
		}
		f.reapLocked()
	}
	f.mu.Unlock()
	notify(f.kick)
	f.wg.Wait()
	f.lagTimer.Stop()
	f.openCancel()
}

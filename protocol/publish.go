package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// errGroupDropped is the cause given to a group stream reset because a newer
// group overtook it while the peer was slow.
var errGroupDropped = errors.New("group dropped: the subscriber fell behind")

// errUnsubscribed is the cause when the peer ended its subscription.
var errUnsubscribed = errors.New("unsubscribed")

// unsubscribeGrace is how long the publisher waits for the subscriber's FIN
// after finishing a subscription before it stops reading the stream.
const unsubscribeGrace = 5 * time.Second

// serveSubscribe answers one SUBSCRIBE from the peer: it finds the track in
// the publish Origin and forwards its groups, one unidirectional stream per
// group, starting at the latest group.
func (s *Session) serveSubscribe(str transport.Stream, r *wire.Reader) {
	body, err := r.ReadMessage(s.limits.MaxMessageSize)
	if err != nil {
		s.reject(str, codeFor(err), fmt.Errorf("subscribe: %w", err))
		return
	}
	sub, err := wire.DecodeSubscribe(s.version, body)
	if err != nil {
		s.reject(str, codeFor(err), fmt.Errorf("subscribe: %w", err))
		return
	}
	if err := s.checkPath("subscribe broadcast", sub.Broadcast); err != nil {
		s.reject(str, codeFor(err), err)
		return
	}
	if err := s.checkPath("subscribe track", sub.Track); err != nil {
		s.reject(str, codeFor(err), err)
		return
	}
	if !s.perm.may(s.perm.Subscribe, sub.Broadcast) {
		s.reject(str, wire.CodeUnauthorized, fmt.Errorf("subscribe to %q is outside the session's subscribe permissions", sub.Broadcast))
		return
	}
	s.mu.Lock()
	if s.inboundSub >= s.limits.MaxSubscriptions {
		s.mu.Unlock()
		s.reject(str, wire.CodeBoundsExceeded, fmt.Errorf("more than %d concurrent subscriptions", s.limits.MaxSubscriptions))
		return
	}
	s.inboundSub++
	s.mu.Unlock()
	var releaseOnce sync.Once
	release := func() {
		releaseOnce.Do(func() {
			s.mu.Lock()
			s.inboundSub--
			s.mu.Unlock()
		})
	}
	defer release()

	track, err := s.lookupTrack(sub)
	if err != nil {
		// The reference publisher resets with NotFound and no response.
		s.log.Debug("moq subscribe refused", "broadcast", sub.Broadcast, "track", sub.Track, "err", err)
		str.CancelWrite(uint64(wire.CodeNotFound))
		str.CancelRead(uint64(wire.CodeNotFound))
		return
	}
	defer track.Close()

	ok := wire.SubscribeOK{Priority: sub.Priority, Ordered: sub.Ordered}
	if _, err := str.Write(wire.AppendSubscribeOK(nil, s.version, ok)); err != nil {
		return
	}
	s.stats.subsServed.Add(1)

	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	// Nothing but SUBSCRIBE_UPDATE may follow on the subscriber's half;
	// updates are read and ignored (no reference peer sends them), and its
	// FIN or reset ends the subscription.
	peerDone := make(chan struct{})
	s.spawn(func() {
		defer close(peerDone)
		for {
			if _, err := r.ReadMessage(s.limits.MaxMessageSize); err != nil {
				cancel(errUnsubscribed)
				return
			}
		}
	})

	lag := s.limits.MaxGroupLag
	if sub.MaxLatencyMs > 0 {
		lag = time.Duration(sub.MaxLatencyMs) * time.Millisecond
	}
	fw := forwarder{s: s, id: sub.ID, priority: sub.Priority, ordered: sub.Ordered, limit: s.limits.MaxInflightGroups, lag: lag}
	var endErr error
	for {
		g, err := track.NextArrival(ctx)
		if err != nil {
			endErr = err
			break
		}
		fw.start(ctx, g)
	}
	switch {
	case errors.Is(endErr, io.EOF) || errors.Is(endErr, ErrClosed):
		// The track is over: let the group streams finish, then FIN.
		fw.wait()
		_ = str.Close()
	case errors.Is(context.Cause(ctx), errUnsubscribed):
		fw.cancelAll(errUnsubscribed)
		fw.wait()
		_ = str.Close()
	case s.ctx.Err() != nil:
		fw.cancelAll(context.Cause(s.ctx))
		fw.wait()
		return
	default:
		fw.cancelAll(endErr)
		fw.wait()
		code := wire.CodeCancel
		if errors.Is(endErr, ErrNotFound) {
			code = wire.CodeNotFound
		}
		str.CancelWrite(uint64(code))
	}
	// The subscription is over on this side; waiting for the peer to
	// acknowledge does not count against its subscription limit.
	release()
	select {
	case <-peerDone:
	case <-time.After(unsubscribeGrace):
		str.CancelRead(uint64(wire.CodeCancel))
		<-peerDone
	}
}

// lookupTrack finds the subscribed track in the publish Origin.
func (s *Session) lookupTrack(sub wire.Subscribe) (*TrackReader, error) {
	if s.publish == nil {
		return nil, ErrNotFound
	}
	b, err := s.publish.Consume(s.localPath(sub.Broadcast))
	if err != nil {
		return nil, err
	}
	return b.Subscribe(sub.Track, sub.Priority)
}

// forwarder owns the in-flight group streams of one subscription. It runs on
// the subscription's goroutine; each group is written by its own goroutine,
// so a stalled stream never holds back the next group.
type forwarder struct {
	s        *Session
	id       uint64
	priority uint8
	ordered  bool
	limit    int
	lag      time.Duration
	inflight []*groupSend
	newest   uint64
	// lastOpened is closed once the newest group's stream is open.
	lastOpened <-chan struct{}
}

type groupSend struct {
	seq    uint64
	cancel context.CancelCauseFunc
	done   chan struct{}
	timer  *time.Timer               // drops the group once it lags too far
	str    chan transport.SendStream // receives the stream once opened, for re-prioritising
	stream transport.SendStream
	// Group streams are opened in group order, so the peer accepts them in
	// order: each waits for its predecessor's open (or failure).
	prevOpened <-chan struct{}
	opened     chan struct{}
}

// release stops the group's lag timer and context.
func (gs *groupSend) release() {
	if gs.timer != nil {
		gs.timer.Stop()
	}
	gs.cancel(nil)
}

// start begins forwarding g. Under overload latency stays bounded by
// dropping old groups instead of queueing them: a group still in flight lag
// after a newer group started is reset, and so is the oldest one whenever
// more than limit groups are in flight.
func (f *forwarder) start(ctx context.Context, g *GroupReader) {
	f.prune()
	for len(f.inflight) >= f.limit {
		f.inflight[0].drop(f.s)
		f.inflight[0].release()
		f.inflight = f.inflight[1:]
	}
	if g.Sequence() > f.newest {
		f.newest = g.Sequence()
		for _, old := range f.inflight {
			old.supersede(f.s, f.lag)
		}
	}
	gctx, cancel := context.WithCancelCause(ctx)
	gs := &groupSend{seq: g.Sequence(), cancel: cancel, done: make(chan struct{}), str: make(chan transport.SendStream, 1), prevOpened: f.lastOpened}
	gs.opened = make(chan struct{})
	f.lastOpened = gs.opened
	f.inflight = append(f.inflight, gs)
	f.reprioritise()
	urgency := f.urgency(gs.seq)
	f.s.spawn(func() { f.s.sendGroup(gctx, f.id, urgency, g, gs) })
}

// supersede arms the lag timer of a group a newer group has overtaken.
func (gs *groupSend) supersede(s *Session, lag time.Duration) {
	if gs.timer == nil {
		gs.timer = time.AfterFunc(lag, func() { gs.drop(s) })
	}
}

// drop resets the group's stream unless it already finished.
func (gs *groupSend) drop(s *Session) {
	select {
	case <-gs.done:
	default:
		s.stats.groupsDrop.Add(1)
		gs.cancel(errGroupDropped)
	}
}

// prune forgets groups whose streams have finished.
func (f *forwarder) prune() {
	kept := f.inflight[:0]
	for _, gs := range f.inflight {
		select {
		case <-gs.done:
			gs.release()
		default:
			kept = append(kept, gs)
		}
	}
	clear(f.inflight[len(kept):])
	f.inflight = kept
}

// urgency maps track priority and group order to a QUIC send urgency (0 is
// sent first). The subscriber's ordered flag picks the direction: ordered
// subscriptions get the oldest in-flight group first, so under overload
// groups still complete in order until the lag bound drops one; unordered
// ones (what browsers ask for) get the newest group first, older groups
// yielding to it.
func (f *forwarder) urgency(seq uint64) int8 {
	base := int8(3)
	if f.priority >= 128 {
		base = 2
	}
	var rank uint64
	if f.ordered {
		for _, gs := range f.inflight {
			if gs.seq < seq {
				rank++
			}
		}
	} else {
		rank = f.newest - seq
	}
	return base + int8(min(rank, 4))
}

// reprioritise lowers the urgency of older in-flight groups once a newer
// group exists (raw QUIC only; a no-op on other transports).
func (f *forwarder) reprioritise() {
	for _, gs := range f.inflight {
		if gs.stream == nil {
			select {
			case gs.stream = <-gs.str:
			default:
				continue
			}
		}
		gs.stream.SetPriority(f.urgency(gs.seq))
	}
}

func (f *forwarder) cancelAll(cause error) {
	for _, gs := range f.inflight {
		gs.cancel(cause)
	}
}

func (f *forwarder) wait() {
	for _, gs := range f.inflight {
		<-gs.done
		gs.release()
	}
	f.inflight = nil
}

// smallFrame is the payload size up to which a frame is copied behind its
// size prefix and written with one call, saving a stream write per frame.
const smallFrame = 4096

// sendGroup writes one group to a new unidirectional stream: the group
// header, then each frame as it is produced, then FIN.
func (s *Session) sendGroup(ctx context.Context, subID uint64, urgency int8, g *GroupReader, gs *groupSend) {
	defer close(gs.done)
	defer g.Close()
	if gs.prevOpened != nil {
		select {
		case <-gs.prevOpened:
		case <-ctx.Done():
			close(gs.opened)
			return
		}
	}
	str, err := s.conn.OpenUniStream(ctx)
	close(gs.opened)
	if err != nil {
		return
	}
	str.SetPriority(urgency)
	gs.str <- str
	stop := context.AfterFunc(ctx, func() {
		code := wire.CodeCancel
		if errors.Is(context.Cause(ctx), errGroupDropped) {
			code = wire.CodeDropped
		}
		str.CancelWrite(uint64(code))
	})
	defer stop()

	buf := make([]byte, 0, smallFrame+16)
	buf = wire.AppendGroupHeader(buf, wire.Group{SubscribeID: subID, Sequence: g.Sequence()})
	for {
		frame, err := g.NextFrame(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(buf) > 0 {
					if _, err := str.Write(buf); err != nil {
						return
					}
				}
				if str.Close() == nil {
					s.stats.groupsSent.Add(1)
				}
				return
			}
			if ctx.Err() == nil {
				// The group was aborted upstream.
				str.CancelWrite(uint64(wire.CodeCancel))
			}
			return
		}
		buf = wire.AppendFrameHeader(buf, uint64(len(frame)))
		if len(frame) <= smallFrame && len(buf)+len(frame) <= cap(buf) {
			buf = append(buf, frame...)
			if _, err := str.Write(buf); err != nil {
				return
			}
		} else {
			if _, err := str.Write(buf); err != nil {
				return
			}
			if _, err := str.Write(frame); err != nil {
				return
			}
		}
		buf = buf[:0]
		s.stats.framesSent.Add(1)
	}
}

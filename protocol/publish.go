package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// errUnsubscribed is the cause when the peer ended its subscription.
var errUnsubscribed = errors.New("unsubscribed")

// unsubscribeGrace is how long the publisher waits for the subscriber's FIN
// after finishing a subscription before it stops reading the stream.
const unsubscribeGrace = 5 * time.Second

// serveSubscribe answers one SUBSCRIBE from the peer: it finds the track in
// the publish moq.Origin and forwards its groups, one unidirectional stream per
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
	finished := s.noteServed(track)
	defer finished()

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

	fw := newForwarder(s, ctx, sub, track)
	first, _ := sub.Start.Sequence() // groups below a start group are not sent
	var endErr error
	for {
		g, err := track.NextArrival(ctx)
		if err != nil {
			endErr = err
			break
		}
		if g.Sequence() < first {
			g.Close()
			track.Recycle(g)
			continue
		}
		fw.start(g)
	}
	switch {
	case errors.Is(endErr, io.EOF) || errors.Is(endErr, moq.ErrClosed):
		// The track is over: let the group streams finish, then FIN.
		fw.stop(nil, 0)
		_ = str.Close()
	case errors.Is(context.Cause(ctx), errUnsubscribed):
		fw.stop(errUnsubscribed, wire.CodeCancel)
		_ = str.Close()
	case s.ctx.Err() != nil:
		fw.stop(context.Cause(s.ctx), wire.CodeCancel)
		return
	default:
		fw.stop(endErr, wire.CodeCancel)
		code := wire.CodeCancel
		if errors.Is(endErr, moq.ErrNotFound) {
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

// lookupTrack finds the subscribed track in the publish moq.Origin.
func (s *Session) lookupTrack(sub wire.Subscribe) (*moq.TrackReader, error) {
	if s.publish == nil {
		return nil, moq.ErrNotFound
	}
	b, err := s.publish.Consume(s.localPath(sub.Broadcast))
	if err != nil {
		return nil, err
	}
	from := moq.FromLatest
	if _, ok := sub.Start.Sequence(); ok {
		// A start group asks for what is cached from there on.
		from = moq.FromOldest
	}
	tr, err := b.SubscribeFrom(sub.Track, sub.Priority, from)
	if err != nil {
		return nil, err
	}
	tr.SetForwarding()
	return tr, nil
}

// noteServed records a subscription being served from track until the
// returned function is called, for Close (finishEnded).
func (s *Session) noteServed(track *moq.TrackReader) func() {
	done := make(chan struct{})
	s.mu.Lock()
	if s.served == nil {
		s.served = make(map[*moq.TrackReader]chan struct{})
	}
	s.served[track] = done
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.served, track)
		s.mu.Unlock()
		close(done)
	}
}

// finishEnded gives the subscriptions whose tracks have ended up to grace
// to deliver their last groups and FIN, and the peer to acknowledge it, so
// that the peer sees those tracks finish instead of the connection drop
// under them (closing a connection discards what its streams have not
// sent).
func (s *Session) finishEnded(grace time.Duration) {
	s.mu.Lock()
	var waits []chan struct{}
	for tr, done := range s.served {
		select {
		case <-tr.Ended():
			waits = append(waits, done)
		default:
		}
	}
	s.mu.Unlock()
	if len(waits) == 0 {
		return
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for _, done := range waits {
		select {
		case <-done:
		case <-timer.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

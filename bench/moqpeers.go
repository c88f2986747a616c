package bench

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
)

// What the MOQ publisher publishes and the subscribers subscribe to.
const (
	broadcastPath = "bench/live"
	trackName     = "video"
	trackPriority = 128
)

// An unpaced MOQ publisher has no backpressure of its own (writing into a
// track never blocks), so it keeps at most maxAhead frames written but not
// yet sent to the relay, checking every aheadPoll: it publishes as fast as
// the relay takes frames, as the bare publisher does by blocking in QUIC
// flow control. Frames that will never be sent (written before the relay
// subscribed, or in a group the publisher's session dropped) are written off
// after aheadGiveUp, the publisher session's group lag: a frame unsent for
// that long is in a dropped group. Writing off sooner would let a publisher
// whose relay is busy run ahead of it and have its own session drop groups,
// which would then reach every subscriber incomplete.
const (
	maxAhead    = 8
	aheadPoll   = 200 * time.Microsecond
	aheadGiveUp = time.Second
)

// moqPublisher publishes one track into its own Origin over a session to
// the relay.
type moqPublisher struct {
	sess   *protocol.Session
	origin *moq.Origin
	bw     *moq.BroadcastWriter
	tw     *moq.TrackWriter
}

func dialMOQPublisher(ctx context.Context, addr string, fp [32]byte) (*moqPublisher, error) {
	p := &moqPublisher{origin: moq.NewOrigin(), bw: moq.NewBroadcast()}
	tw, err := p.bw.CreateTrack(trackName, trackPriority)
	if err == nil {
		p.tw = tw
		err = p.origin.Publish(broadcastPath, p.bw.Reader())
	}
	if err == nil {
		p.sess, err = protocol.Dial(ctx, "moql://"+addr, protocol.WithFingerprint(fp), protocol.WithPublish(p.origin))
	}
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// run publishes l until ctx ends.
func (p *moqPublisher) run(ctx context.Context, l Load, c *counters) {
	pace := newPacer(l)
	defer pace.stop()
	var written, forgiven uint64
	for ctx.Err() == nil {
		g, err := p.tw.AppendGroup()
		if err != nil {
			return
		}
		for idx := range l.FramesPerGroup {
			if !pace.wait(ctx) {
				break
			}
			if l.FPS == 0 {
				forgiven = p.waitSent(ctx, written, forgiven)
			}
			f := make([]byte, l.frameSize(idx)) // WriteFrame takes ownership
			stamp(f, g.Sequence(), idx, time.Now())
			if g.WriteFrame(f) != nil {
				break
			}
			written++
			c.published(len(f))
		}
		_ = g.Close()
	}
}

// waitSent blocks while more than maxAhead written frames are unsent and
// returns the updated count of frames written off as never to be sent.
func (p *moqPublisher) waitSent(ctx context.Context, written, forgiven uint64) uint64 {
	deadline := time.Now().Add(aheadGiveUp)
	for ctx.Err() == nil {
		sent := p.sess.Stats().FramesSent + forgiven
		if written <= sent+maxAhead {
			return forgiven
		}
		if time.Now().After(deadline) {
			return forgiven + written - sent - maxAhead
		}
		time.Sleep(aheadPoll)
	}
	return forgiven
}

func (p *moqPublisher) close() {
	if p.sess != nil {
		_ = p.sess.Close()
	}
	_ = p.bw.Close()
	p.origin.Close()
}

// moqSubscriber is one subscriber session holding one track subscription.
type moqSubscriber struct {
	sess   *protocol.Session
	origin *moq.Origin
	tr     *moq.TrackReader
}

// dialMOQSubscriber connects, waits until the relay announces the
// broadcast (subscribing earlier would be refused with NotFound) and
// subscribes to the track.
func dialMOQSubscriber(ctx context.Context, addr string, fp [32]byte) (*moqSubscriber, error) {
	s := &moqSubscriber{origin: moq.NewOrigin()}
	var err error
	s.sess, err = protocol.Dial(ctx, "moql://"+addr, protocol.WithFingerprint(fp), protocol.WithConsume(s.origin))
	if err != nil {
		s.close()
		return nil, err
	}
	b, err := waitAnnounced(ctx, s.origin, broadcastPath)
	if err == nil {
		s.tr, err = b.Subscribe(trackName, trackPriority)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func waitAnnounced(ctx context.Context, o *moq.Origin, path string) (*moq.BroadcastReader, error) {
	ann := o.Announced(path)
	defer ann.Close()
	for {
		a, err := ann.Next(ctx)
		if err != nil {
			return nil, err
		}
		if a.Active && a.Path == path {
			return a.Broadcast, nil
		}
	}
}

// run reads every group as it arrives, each on its own goroutine, until
// ctx ends. NextArrival rather than NextGroup: a player's reorder hold
// after a dropped group is a subscriber policy, not relay latency.
func (s *moqSubscriber) run(ctx context.Context, l Load, c *counters) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var first sync.Once
	for {
		g, err := s.tr.NextArrival(ctx)
		if err != nil {
			return
		}
		wg.Go(func() {
			defer g.Close()
			for idx := 0; ; idx++ {
				p, err := g.NextFrame(ctx)
				if err != nil {
					if ctx.Err() == nil {
						c.groupEnded(errors.Is(err, io.EOF) && idx == l.FramesPerGroup)
					}
					return
				}
				first.Do(func() { c.joined.Add(1) })
				c.received(l, p, g.Sequence(), idx)
			}
		})
	}
}

func (s *moqSubscriber) close() {
	if s.tr != nil {
		s.tr.Close()
	}
	if s.sess != nil {
		_ = s.sess.Close()
	}
	s.origin.Close()
}

package moq

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// mirror is a local broadcast fed from the broadcast at one remote path:
// its tracks are made on demand, each forwarding the remote track of the
// same name, and it outlives the remote broadcast's losses (see the
// package doc).
type mirror struct {
	relay  *relay
	path   string // the remote broadcast's path
	local  *moq.BroadcastWriter
	log    *slog.Logger
	ctx    context.Context // ends when the mirror closes
	cancel context.CancelFunc
	once   sync.Once
}

func newMirror(r *relay, path string, cache moq.CacheConfig, log *slog.Logger) *mirror {
	m := &mirror{relay: r, path: path, local: moq.NewBroadcastWithCache(cache), log: log.With("remote", path)}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.local.HandleRequests(m.forwardTrack)
	return m
}

// close ends the local broadcast: its tracks end cleanly, groups still
// being forwarded are dropped. It returns once no track is forwarded.
func (m *mirror) close() {
	m.once.Do(func() {
		m.cancel()
		_ = m.local.Close()
	})
}

// forwardTrack feeds the local track t, which something local subscribed
// to, from the remote track of the same name, subscribing again each time
// the remote broadcast returns after a loss, until t has no reader or the
// mirror closes. A remote track that ends while its broadcast stays live
// ends t the same way.
func (m *mirror) forwardTrack(t *moq.TrackWriter) {
	ctx, cancel := context.WithCancel(m.ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-t.Unused():
		case <-t.Done():
		case <-ctx.Done():
		}
		cancel()
	}()
	defer func() {
		cancel()
		<-watched
	}()
	var seqs sequencer
	from := t.RequestedFrom()
	for {
		b := m.relay.waitBroadcast(ctx, m.path)
		if b == nil {
			return
		}
		tr, err := b.SubscribeFrom(t.Name(), t.Priority(), from)
		if err != nil {
			if errors.Is(err, moq.ErrClosed) {
				continue // it ended meanwhile: wait for the next
			}
			t.CloseWithError(err)
			return
		}
		// After a loss, the remote's latest group: what it still caches
		// from before was forwarded then, or is too old now.
		from = moq.FromLatest
		err = m.copyTrack(ctx, t, tr, &seqs)
		tr.Close()
		if ctx.Err() != nil {
			return
		}
		if m.broadcastGone(ctx, b) {
			continue // ended or lost with the connection: wait for its return
		}
		if errors.Is(err, io.EOF) {
			_ = t.Close()
		} else {
			m.log.Debug("moq source: remote track ended", "track", t.Name(), "err", err)
			t.CloseWithError(err)
		}
		return
	}
}

// trackEndGrace is how long a remote track's end may precede the end of
// its broadcast or session when both end together: a connection that
// closes fails the subscriptions it carries before the session notices.
const trackEndGrace = time.Second

// broadcastGone reports whether the remote broadcast b ended or its
// session did, within trackEndGrace of one of its tracks ending: the track
// then ended with them rather than on its own.
func (m *mirror) broadcastGone(ctx context.Context, b *moq.BroadcastReader) bool {
	sess, _ := m.relay.client.Session()
	if sess == nil {
		return true
	}
	timer := time.NewTimer(trackEndGrace)
	defer timer.Stop()
	select {
	case <-b.Done():
	case <-sess.Done():
	case <-ctx.Done():
	case <-timer.C:
		return false
	}
	return true
}

// copyTrack forwards the groups of the remote subscription tr into t as
// they arrive, each on its own goroutine (groups travel in parallel), and
// returns tr's end once every group it started is done.
func (m *mirror) copyTrack(ctx context.Context, t *moq.TrackWriter, tr *moq.TrackReader, seqs *sequencer) error {
	var groups sync.WaitGroup
	defer groups.Wait()
	seqs.resubscribed()
	for {
		g, err := tr.NextArrival(ctx)
		if err != nil {
			return err
		}
		lg, err := t.CreateGroup(seqs.local(g.Sequence()))
		if err != nil {
			g.Close()
			if errors.Is(err, moq.ErrDuplicate) {
				continue // forwarded before the loss
			}
			return err
		}
		groups.Go(func() { copyGroup(ctx, g, lg) })
	}
}

// copyGroup forwards the frames of g into lg, sharing their bytes, and
// ends lg as g ends: complete, or dropped.
func copyGroup(ctx context.Context, g *moq.GroupReader, lg *moq.GroupWriter) {
	defer g.Close()
	for {
		f, err := g.NextFrame(ctx)
		if errors.Is(err, io.EOF) {
			_ = lg.Close()
			return
		}
		if err != nil {
			lg.Abort(nil)
			return
		}
		if err := lg.WriteFrame(f); err != nil {
			return
		}
	}
}

// sequencer maps remote group sequences to local ones. They are the same
// until a remote publisher restarts its sequences below what was
// forwarded already: they are then shifted to go on after it, since local
// readers never go backwards.
type sequencer struct {
	offset uint64
	last   uint64 // the highest local sequence handed out
	any    bool   // whether one was
	fresh  bool   // the next group is the first of a new subscription
}

func (s *sequencer) resubscribed() { s.fresh = true }

func (s *sequencer) local(remote uint64) uint64 {
	if s.fresh && s.any && remote+s.offset < s.last {
		s.offset = s.last + 1 - remote
	}
	s.fresh = false
	seq := remote + s.offset
	if !s.any || seq > s.last {
		s.last, s.any = seq, true
	}
	return seq
}

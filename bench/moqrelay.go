package bench

import (
	"context"

	"github.com/moqbridge/moqbridge/protocol"
)

// moqRelay is the moqbridge relay with its default limits and cache, as
// `moqbridge serve` runs it, listening on loopback only.
type moqRelay struct {
	srv    *protocol.Server
	cancel context.CancelFunc
	done   chan struct{}
}

func startMOQRelay() (*moqRelay, error) {
	srv, err := protocol.NewServer(protocol.ServerConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &moqRelay{srv: srv, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = srv.Serve(ctx)
	}()
	return r, nil
}

func (r *moqRelay) addr() string          { return r.srv.Addr().String() }
func (r *moqRelay) fingerprint() [32]byte { return r.srv.Fingerprint() }

// counters sums the relay's sessions; all of them live for the whole
// measurement, so the sums are monotonic while it runs.
func (r *moqRelay) counters(st *RelayStats) {
	for _, s := range r.srv.Sessions() {
		ss := s.Stats()
		st.GroupsSent += ss.GroupsSent
		st.GroupsDropped += ss.GroupsDropped
	}
}

func (r *moqRelay) close() {
	r.cancel()
	<-r.done
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// RelayKind selects the relay under test.
type RelayKind string

// The relays.
const (
	MOQ    RelayKind = "moq"    // the moqbridge MOQ Lite relay
	Gomoqt RelayKind = "gomoqt" // a relay on github.com/okdaichi/gomoqt v0.9.0 (bench/gomoqt), the peer
	Bare   RelayKind = "bare"   // the bare quic-go copy relay, the ceiling
	// Bare058 is the bare relay built on quic-go v0.58.0, gomoqt's, from
	// bench/gomoqt: set against Bare it shows what of a difference between
	// gomoqt and the bare relay is quic-go's. Not in RelayKinds; see
	// BenchmarkRelayQUICVersion.
	Bare058 RelayKind = "bare058"
)

// RelayKinds lists the relays in the order the benchmarks run them.
var RelayKinds = []RelayKind{MOQ, Gomoqt, Bare}

func (k RelayKind) role() (string, error) {
	switch k {
	case MOQ:
		return RoleMOQRelay, nil
	case Bare:
		return RoleQUICRelay, nil
	}
	return "", fmt.Errorf("relay kind %q has no role in this binary", k)
}

// Config describes one run: which relay, what load, how many subscribers.
type Config struct {
	Relay       RelayKind
	Load        Load
	Subscribers int
	// ExactAllocs makes the relay child record every allocation and
	// report them per owner (see AllocsEnv); it slows the relay down.
	// The moq and bare relays only.
	ExactAllocs bool
	// GomoqtBinary is the gomoqt contender's binary (see BuildGomoqt),
	// needed when Relay is Gomoqt or Bare058.
	GomoqtBinary string
}

// peer is a publisher or a subscriber, of either relay: run produces or
// consumes the load until ctx ends (or, for reads that do not watch ctx,
// until close), close disconnects.
type peer interface {
	run(ctx context.Context, l Load, c *counters)
	close()
}

// dialConcurrency bounds the handshakes in flight while subscribers
// connect, so that a hundred of them do not starve the publisher.
const dialConcurrency = 8

// joinTimeout bounds how long Start waits for every subscriber to receive
// its first frame.
const joinTimeout = 30 * time.Second

// Run is one running benchmark: a relay child, a publisher and the
// subscribers, all live until Close. The publisher and the subscribers of
// the moq and bare relays run in this process; those of the gomoqt relay in
// a child of their own (peers).
type Run struct {
	cfg   Config
	relay *relayChild
	peers *child // the gomoqt contender's publisher and subscribers
	c     counters

	ctx    context.Context // ends the publisher and subscriber loops
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	pub  peer
	subs []peer

	closeOnce sync.Once
}

// Start launches the relay child, connects the publisher and starts the
// load, connects every subscriber and returns once each has received a
// frame. ctx bounds the start-up only; the run lasts until Close, which the
// caller must call. On error everything started is stopped again.
func Start(ctx context.Context, cfg Config) (*Run, error) {
	if cfg.Relay == Gomoqt {
		return startGomoqt(cfg)
	}
	relay, err := cfg.relayCommand()
	if err != nil {
		return nil, err
	}
	// What an earlier run left in this process's heap goes back to the
	// system, so that the RSS measured is this run's subscribers'. Two
	// collections: the first only moves what sync.Pools hold (the freed
	// payload chunks of the last run's subscribers) to their victim caches.
	runtime.GC()
	debug.FreeOSMemory()
	r := &Run{cfg: cfg}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.relay, err = relay()
	if err != nil {
		r.Close()
		return nil, err
	}
	if err := r.startPublisher(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("publisher: %w", err)
	}
	if err := r.startSubscribers(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("subscribers: %w", err)
	}
	if err := r.waitJoined(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// relayCommand returns what starts the relay child of a moq, bare or
// bare058 run.
func (cfg Config) relayCommand() (func() (*relayChild, error), error) {
	if cfg.Relay == Bare058 {
		if cfg.GomoqtBinary == "" {
			return nil, errors.New("the bare relay on quic-go v0.58 needs Config.GomoqtBinary (see BuildGomoqt)")
		}
		if cfg.ExactAllocs {
			return nil, errors.New("the bare relay on quic-go v0.58 does not attribute its allocations")
		}
		return func() (*relayChild, error) {
			return startRelay("bare relay on quic-go v0.58", exec.Command(cfg.GomoqtBinary, "bare-relay"))
		}, nil
	}
	role, err := cfg.Relay.role()
	if err != nil {
		return nil, err
	}
	var env []string
	if cfg.ExactAllocs {
		env = append(env, AllocsEnv+"=1")
	}
	return func() (*relayChild, error) { return startChild(role, env...) }, nil
}

// startGomoqt starts the gomoqt relay and its peers, both children.
func startGomoqt(cfg Config) (*Run, error) {
	if cfg.GomoqtBinary == "" {
		return nil, errors.New("the gomoqt relay needs Config.GomoqtBinary (see BuildGomoqt)")
	}
	if cfg.ExactAllocs {
		return nil, errors.New("the gomoqt relay does not attribute its allocations")
	}
	r := &Run{cfg: cfg}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	var err error
	r.relay, err = startRelay("gomoqt relay", exec.Command(cfg.GomoqtBinary, "relay"))
	if err == nil {
		r.peers, err = startGomoqtPeers(cfg.GomoqtBinary, r.relay, cfg.Load, cfg.Subscribers)
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Run) startPublisher(ctx context.Context) error {
	var (
		p   peer
		err error
	)
	if r.cfg.Relay == MOQ {
		p, err = dialMOQPublisher(ctx, r.relay.addr, r.relay.fp)
	} else {
		p, err = dialBarePublisher(ctx, r.relay.addr, r.relay.fp)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.pub = p
	r.mu.Unlock()
	r.wg.Go(func() { p.run(r.ctx, r.cfg.Load, &r.c) })
	return nil
}

func (r *Run) startSubscribers(ctx context.Context) error {
	sem := make(chan struct{}, dialConcurrency)
	errs := make(chan error, r.cfg.Subscribers)
	var dials sync.WaitGroup
	for range r.cfg.Subscribers {
		dials.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- r.addSubscriber(ctx)
		})
	}
	dials.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (r *Run) addSubscriber(ctx context.Context) error {
	var (
		s   peer
		err error
	)
	if r.cfg.Relay == MOQ {
		s, err = dialMOQSubscriber(ctx, r.relay.addr, r.relay.fp)
	} else {
		s, err = dialBareSubscriber(ctx, r.relay.addr, r.relay.fp)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		s.close()
		return context.Canceled
	}
	r.subs = append(r.subs, s)
	r.wg.Go(func() { s.run(r.ctx, r.cfg.Load, &r.c) })
	return nil
}

// waitJoined polls until every subscriber received a frame.
func (r *Run) waitJoined(ctx context.Context) error {
	deadline := time.NewTimer(joinTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for r.c.joined.Load() < int64(r.cfg.Subscribers) {
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("only %d of %d subscribers received a frame within %v", r.c.joined.Load(), r.cfg.Subscribers, joinTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close stops the load, disconnects every peer and stops the relay child
// (killing it if it does not exit). It is safe to call more than once.
func (r *Run) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		r.mu.Lock()
		pub, subs := r.pub, r.subs
		// Forgotten, so that their memory can go even while something
		// (a test's cleanup list) still holds the run.
		r.pub, r.subs = nil, nil
		r.mu.Unlock()
		// Closing the connections also ends the reads and writes that do
		// not watch the context.
		for _, s := range subs {
			s.close()
		}
		if pub != nil {
			pub.close()
		}
		r.wg.Wait()
		if r.peers != nil {
			r.peers.stop()
		}
		if r.relay != nil {
			r.relay.stop()
		}
	})
}

// Measure lets the run warm up, then measures it for window.
func (r *Run) Measure(ctx context.Context, warmup, window time.Duration) (Result, error) {
	if err := Sleep(ctx, warmup); err != nil {
		return Result{}, err
	}
	relay0, err := r.relay.stats()
	if err != nil {
		return Result{}, err
	}
	c0, err := r.begin()
	if err != nil {
		return Result{}, err
	}
	err = Sleep(ctx, window)
	c1, lat, endErr := r.end()
	if err = errors.Join(err, endErr); err != nil {
		return Result{}, err
	}
	relay1, err := r.relay.stats()
	if err != nil {
		return Result{}, err
	}
	return newResult(c0, c1, relay0, relay1, lat), nil
}

// begin snapshots the load generator's counters and starts recording
// latencies.
func (r *Run) begin() (counterSnapshot, error) {
	if r.peers != nil {
		c, _, err := remoteSnapshot(r.peers, "begin")
		return c, err
	}
	c := r.c.snapshot()
	r.c.lat.start()
	return c, nil
}

// end snapshots the counters again and returns the latencies recorded
// since begin, sorted.
func (r *Run) end() (counterSnapshot, []time.Duration, error) {
	if r.peers != nil {
		c, lat, err := remoteSnapshot(r.peers, "end")
		slices.Sort(lat)
		return c, lat, err
	}
	c := r.c.snapshot()
	return c, r.c.lat.stop(), nil
}

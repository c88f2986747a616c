package pipelines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// DefaultStopTimeout is how long a stop waits for sinks to finish (close
// their recordings, flush what they send) before cancelling them.
const DefaultStopTimeout = 10 * time.Second

// RunnerOptions configure a Runner. The zero value is ready to use.
type RunnerOptions struct {
	// Logger receives the runner's logs (default slog.Default()); every
	// line of a pipeline carries pipeline, and of a sink path and sink.
	Logger *slog.Logger
	// Observer is told what the pipelines do (default NopObserver).
	Observer Observer
	// StopTimeout bounds how long a stopping pipeline's sinks may take to
	// finish once its sources stopped (default DefaultStopTimeout).
	StopTimeout time.Duration
	// Origin is where every broadcast meets (default: a new one, closed
	// when Run returns).
	Origin *moq.Origin
}

// Runner runs a configuration: the built-in relay, the shared RTMP
// listener and every pipeline, each source and sink supervised on its
// own. Run starts it, Reload applies a new configuration to it while it
// runs; its methods are safe for concurrent use.
//
// # Supervision
//
// A pipeline's source and each of its sinks on each broadcast run on
// their own goroutine, and meet only in the Origin: a slow or failing
// sink never stalls the source or another sink. A part that fails with
// a transient error is made anew and restarted alone after a wait from
// the pipeline's RestartPolicy (exponential with jitter; a part that ran
// for at least Max was healthy and starts again from Min); a part still
// failing after GiveUpAfter is stopped, and a permanent error
// (sdk.IsPermanent) is not retried: both are logged, reported to the
// Observer and shown by Status. A source that returns without an error
// (a file played to its end) is finished, not restarted. A sink that
// returns while its broadcast is live (its destination went away) is
// restarted on the same broadcast, from its latest group (the live edge:
// what its predecessor sent is not sent again); one whose broadcast ended
// is done. A sink starts on a broadcast at its oldest cached group, so a
// recording misses nothing of its start, except in a pipeline a reload
// started, on the broadcasts live already: from their latest group. Ready reports a
// pipeline whose source is not running (failed, restarting, finished).
//
// A one-broadcast source (SourceKind.NewSource) publishes at the
// pipeline's path as a backup when something else is live there (as the
// relay does for MOQ publishers): it goes live as soon as the other
// broadcast ends, without a retry loop or a gap. A listener source
// (NewListener) refuses a path already live, so that an encoder pushing
// to a taken path is told so at once (the RTMP server refuses it, or
// with its Replace option takes over from its own publisher), and it may
// publish only under the pattern its pipeline yields.
//
// # Reload
//
// Reload compares the new configuration with the running one: a pipeline
// whose Fingerprint is unchanged keeps running untouched (same
// goroutines and sink instances, no reconnection, no new recording
// file, its RTMP publishers stay connected); a changed one is stopped
// (gracefully, as at the end of Run) and started anew; a removed one is
// stopped; an added one is started. A changed "server:" section restarts
// the relay, which drops its MOQ sessions (clients reconnect; changing
// the listen address moves them), and the broadcasts MOQ clients
// published leave the Origin with them; the pipelines' broadcasts stay.
// A changed "rtmp:" section (or, with RTMPS, a restarted relay, whose
// certificate it uses) restarts the RTMP listeners, which disconnects the
// encoders (they reconnect, and their broadcasts start anew); the
// pipelines routing RTMP applications keep running. A pipeline that
// keeps running keeps what it started with: adding an "rtmp:" section
// reaches the rtmp pipelines that start (or change) with it.
//
// # Stop
//
// When Run's context ends, every source stops first (RTMP publishers are
// disconnected, their broadcasts end), then sinks read what is left of
// their broadcasts and finish (recordings close playable) within
// StopTimeout, after which they are cancelled; sinks of broadcasts still
// live (From pipelines over MOQ publishers) are cancelled at once, which
// is how a sink is told to finish. Then the RTMP listeners and the relay
// stop.
type Runner struct {
	reg         *Registry
	log         *slog.Logger
	obs         Observer
	stopTimeout time.Duration
	origin      *moq.Origin
	ownsOrigin  bool
	hub         *rtmpHub

	// life serialises Run's start and stop and Reload, and guards the
	// fields after it.
	life    sync.Mutex
	running bool
	cfg     *Config
	relay   *relayRun
	// up and server are what Ready and Server read without waiting for
	// a reload or a stop in progress.
	up     atomic.Bool
	server atomic.Pointer[protocol.Server]
	// fatal receives the error of a part the runner cannot do without
	// (the relay failing); Run stops on it.
	fatal chan error

	mu    sync.Mutex // guards pipes and order, read by Status and Ready
	pipes map[string]*pipelineRun
	order []string
}

// NewRunner returns a Runner of the kinds in reg.
func NewRunner(reg *Registry, opts RunnerOptions) *Runner {
	r := &Runner{reg: reg, log: opts.Logger, obs: opts.Observer, stopTimeout: opts.StopTimeout, origin: opts.Origin,
		fatal: make(chan error, 1), pipes: make(map[string]*pipelineRun)}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.obs == nil {
		r.obs = NopObserver{}
	}
	if r.stopTimeout <= 0 {
		r.stopTimeout = DefaultStopTimeout
	}
	if r.origin == nil {
		r.origin = moq.NewOrigin()
		r.ownsOrigin = true
	}
	r.hub = newRTMPHub(r.log)
	return r
}

// Origin returns the Origin every pipeline publishes into and the relay
// serves.
func (r *Runner) Origin() *moq.Origin { return r.origin }

// Server returns the running relay, nil when it is disabled or the runner
// does not run.
func (r *Runner) Server() *protocol.Server { return r.server.Load() }

// RTMPAddrs returns the addresses the RTMP listeners listen on (RTMP
// first, then RTMPS), none without an "rtmp:" section.
func (r *Runner) RTMPAddrs() []string { return r.hub.addrs() }

// Run starts cfg and runs it until ctx ends, then stops gracefully (see
// Runner) and returns nil. A Runner runs once: when Run returns, the
// Origin it made is closed. It returns an error at once when the relay or
// an RTMP listener cannot start (a taken port, unreadable certificate or
// auth files), and after a graceful stop when the relay fails while
// running. A pipeline that fails does not end Run: it is supervised.
func (r *Runner) Run(ctx context.Context, cfg *Config) error {
	if err := r.start(cfg); err != nil {
		return err
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-r.fatal:
	}
	r.stop()
	return err
}

// start starts the relay, the RTMP listeners and every pipeline of cfg.
func (r *Runner) start(cfg *Config) error {
	r.life.Lock()
	defer r.life.Unlock()
	if r.running {
		return errors.New("pipelines: the runner is running already")
	}
	if cfg.Server.Enabled {
		relay, err := r.startRelay(cfg.Server)
		if err != nil {
			return err
		}
		r.relay = relay
	}
	az, err := authOf(cfg.Server)
	if err != nil {
		r.stopRelay()
		return err
	}
	r.hub.setAuth(az)
	if err := r.hub.configure(cfg.RTMP, r.rtmpsCertificate(cfg)); err != nil {
		r.stopRelay()
		return err
	}
	r.running, r.cfg = true, cfg
	r.up.Store(true)
	for _, p := range cfg.Pipelines {
		r.startPipeline(cfg, p, false)
	}
	return nil
}

// stop stops every pipeline (sources first, then sinks), the RTMP
// listeners and the relay.
func (r *Runner) stop() {
	r.life.Lock()
	defer r.life.Unlock()
	r.mu.Lock()
	var all []*pipelineRun
	for _, name := range r.order {
		all = append(all, r.pipes[name])
	}
	r.mu.Unlock()
	r.stopPipelines(all)
	r.mu.Lock()
	clear(r.pipes)
	r.order = nil
	r.mu.Unlock()
	r.hub.stop()
	r.stopRelay()
	r.running, r.cfg = false, nil
	r.up.Store(false)
	if r.ownsOrigin {
		r.origin.Close()
	}
}

// Reload applies cfg to the running configuration (see Runner): only
// what changed restarts. It returns once the stopped pipelines finished
// and the new ones started; an error leaves the parts it could not
// start stopped (a relay whose new address is taken, say) and is
// returned, the pipelines applied regardless.
func (r *Runner) Reload(cfg *Config) error {
	r.life.Lock()
	defer r.life.Unlock()
	if !r.running {
		return errors.New("pipelines: reload: the runner does not run")
	}
	old := r.cfg
	var errs []error
	relayChanged := !reflect.DeepEqual(old.Server, cfg.Server)
	if relayChanged {
		r.log.Info("pipelines: the server section changed; restarting the relay (its sessions are dropped)")
		r.stopRelay()
		if cfg.Server.Enabled {
			relay, err := r.startRelay(cfg.Server)
			if err != nil {
				errs = append(errs, err)
			} else {
				r.relay = relay
			}
		}
	}
	if relayChanged {
		if az, err := authOf(cfg.Server); err != nil {
			errs = append(errs, err) // and RTMP keeps the keys it had
		} else {
			r.hub.setAuth(az)
		}
	}
	rtmpsCertChanged := relayChanged && cfg.RTMP != nil && cfg.RTMP.RTMPS != ""
	if !reflect.DeepEqual(old.RTMP, cfg.RTMP) || rtmpsCertChanged {
		r.log.Info("pipelines: the rtmp section changed; restarting the RTMP listeners (encoders reconnect)")
		r.hub.stop()
		if err := r.hub.configure(cfg.RTMP, r.rtmpsCertificate(cfg)); err != nil {
			errs = append(errs, err)
		}
	}

	keep := make(map[string]bool)
	for _, p := range cfg.Pipelines {
		r.mu.Lock()
		cur := r.pipes[p.Name]
		r.mu.Unlock()
		if cur != nil && cur.p.Fingerprint == p.Fingerprint {
			keep[p.Name] = true
		}
	}
	var stopping []*pipelineRun
	r.mu.Lock()
	for _, name := range r.order {
		if !keep[name] {
			stopping = append(stopping, r.pipes[name])
		}
	}
	r.mu.Unlock()
	for _, pr := range stopping {
		pr.log.Info("pipelines: reload stops the pipeline (changed or removed)")
	}
	r.stopPipelines(stopping)
	r.mu.Lock()
	for _, pr := range stopping {
		delete(r.pipes, pr.p.Name)
	}
	r.order = r.order[:0]
	r.mu.Unlock()
	r.cfg = cfg
	for _, p := range cfg.Pipelines {
		if keep[p.Name] {
			r.mu.Lock()
			r.order = append(r.order, p.Name)
			r.mu.Unlock()
			continue
		}
		r.startPipeline(cfg, p, true)
	}
	return errors.Join(errs...)
}

// Ready returns nil when every pipeline's source is up, else an error
// naming those that are not and why.
func (r *Runner) Ready() error {
	var down []string
	for _, st := range r.Status() {
		if st.SourceUp {
			continue
		}
		why := string(st.State)
		if st.LastError != nil {
			why += ": " + st.LastError.Error()
		}
		down = append(down, fmt.Sprintf("%s (%s)", st.Name, why))
	}
	if !r.up.Load() {
		return errors.New("pipelines: not running")
	}
	if len(down) > 0 {
		return fmt.Errorf("pipelines: not up: %s", strings.Join(down, ", "))
	}
	return nil
}

// State is what a pipeline's source is doing.
type State string

const (
	StateStarting   State = "starting"   // not run yet
	StateRunning    State = "running"    // running
	StateRestarting State = "restarting" // failed; waiting to restart
	StateFinished   State = "finished"   // its media ended (a file played to the end)
	StateFailed     State = "failed"     // a permanent error, or its restart policy gave up
	StateStopped    State = "stopped"    // stopped by a reload or the end of Run
)

// PipelineStatus is what Status reports of one pipeline.
type PipelineStatus struct {
	Name string
	// State is its source's (a From pipeline runs while it runs).
	State State
	// SourceUp reports whether its source is running.
	SourceUp bool
	// Restarts counts the restarts of its source and sinks.
	Restarts uint64
	// LastError is the last failure of its source or a sink (nil: none).
	LastError error
	// Broadcasts are the paths its sinks are attached to, sorted.
	Broadcasts []string
	// Sinks counts the sink instances made so far (one per sink and
	// broadcast, and one more per restart).
	Sinks uint64
}

// Status reports every running pipeline, in configuration order.
func (r *Runner) Status() []PipelineStatus {
	r.mu.Lock()
	runs := make([]*pipelineRun, 0, len(r.order))
	for _, name := range r.order {
		runs = append(runs, r.pipes[name])
	}
	r.mu.Unlock()
	out := make([]PipelineStatus, 0, len(runs))
	for _, pr := range runs {
		out = append(out, pr.status())
	}
	return out
}

// startPipeline starts p's sinks follower, then its source (r.life held);
// reload says a Reload starts it, not Run.
func (r *Runner) startPipeline(cfg *Config, p *Pipeline, reload bool) {
	pr := &pipelineRun{r: r, p: p, log: r.log.With("pipeline", p.Name), backoff: backoffOf(p.Restart), state: StateStarting, reloaded: reload,
		sourceDone: make(chan struct{}), followDone: make(chan struct{})}
	if cfg.File != "" {
		pr.dir = filepath.Dir(cfg.File)
	}
	if cfg.RTMP != nil {
		pr.rtmp = r.hub
	}
	pr.f = &follower{pr: pr, groups: make(map[string]*sinkGroup)}
	r.mu.Lock()
	r.pipes[p.Name] = pr
	r.order = append(r.order, p.Name)
	r.mu.Unlock()

	followCtx, followCancel := context.WithCancel(context.Background())
	sinkCtx, sinkCancel := context.WithCancel(context.Background())
	sourceCtx, sourceCancel := context.WithCancel(context.Background())
	pr.followCancel, pr.sinkCancel, pr.sourceCancel = followCancel, sinkCancel, sourceCancel
	go func() {
		defer close(pr.followDone)
		if len(p.Sinks) > 0 {
			pr.f.run(followCtx, sinkCtx)
		}
	}()
	go func() {
		defer close(pr.sourceDone)
		pr.runSource(sourceCtx)
	}()
	pr.log.Info("pipeline started", "yields", p.Yields(), "sinks", len(p.Sinks))
}

// stopPipelines stops runs gracefully: every source first, then the
// sinks, which finish within the stop timeout.
func (r *Runner) stopPipelines(runs []*pipelineRun) {
	var wg sync.WaitGroup
	for _, pr := range runs {
		wg.Go(pr.stopSource)
	}
	wg.Wait()
	for _, pr := range runs {
		wg.Go(func() { pr.stopSinks(r.stopTimeout) })
	}
	wg.Wait()
}

// pipelineRun is one running pipeline.
type pipelineRun struct {
	r       *Runner
	p       *Pipeline
	log     *slog.Logger
	backoff sdk.Backoff
	dir     string
	rtmp    RTMPRouter // nil without an "rtmp:" section
	f       *follower
	// reloaded: a Reload started the pipeline, so the broadcasts live
	// already were read up to now by its previous version, if any.
	reloaded bool

	sourceCancel, followCancel, sinkCancel context.CancelFunc
	sourceDone, followDone                 chan struct{}

	mu       sync.Mutex
	state    State
	sourceUp bool
	restarts uint64
	lastErr  error
	sinks    uint64
}

// runSource supervises the pipeline's source until ctx ends; a From
// pipeline's "source" is up until then.
func (pr *pipelineRun) runSource(ctx context.Context) {
	name := pr.p.Name
	spec := pr.p.Source
	if spec == nil {
		pr.setState(StateRunning)
		pr.setUp(true)
		<-ctx.Done()
		return
	}
	pt := &part{pipeline: pr, label: "source", log: pr.log, state: pr.setState}
	env := SourceEnv{Pipeline: name, Path: pr.p.Path, Origin: pr.r.origin, Dir: pr.dir, Logger: pr.log, RTMP: pr.rtmp}
	res := pt.supervise(ctx, func(ctx context.Context) error {
		// The source's own counters, when it has some: set once it is
		// made, before Publish starts its broadcast.
		var sourceCounters func() SourceCounters
		opts := sdk.PublisherOptions{
			Started: func(b *sdk.Broadcast) {
				pr.r.obs.BroadcastStarted(name, b.Path(), b.Writer().Stats, sourceCounters)
			},
			Ended: func(b *sdk.Broadcast) { pr.r.obs.BroadcastEnded(name, b.Path()) },
		}
		if spec.Kind.NewSource != nil {
			opts.IfLive = sdk.Backup
		} else if prefix, _ := pathPattern(pr.pattern()); prefix != "" {
			opts.IfLive = sdk.Refuse
			opts.Prefixes = []string{prefix}
		}
		if spec.Kind.NewOrigin != nil {
			src, err := spec.Kind.NewOrigin(env, spec.Options)
			if err != nil {
				return fmt.Errorf("source %s: %w", spec.Kind.Name, err)
			}
			pr.setUp(true)
			defer pr.setUp(false)
			err = src.Run(ctx, pr.r.origin)
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		pub := sdk.NewPublisher(pr.r.origin, opts)
		defer pub.Close()
		if spec.Kind.NewSource != nil {
			src, err := spec.Kind.NewSource(env, spec.Options)
			if err != nil {
				return fmt.Errorf("source %s: %w", spec.Kind.Name, err)
			}
			if sr, ok := src.(SourceStatsReporter); ok {
				sourceCounters = sr.SourceCounters
			}
			pr.setUp(true)
			defer pr.setUp(false)
			return pub.Publish(ctx, pr.p.Path, src)
		}
		l, err := spec.Kind.NewListener(env, spec.Options)
		if err != nil {
			return fmt.Errorf("source %s: %w", spec.Kind.Name, err)
		}
		pr.setUp(true)
		defer pr.setUp(false)
		err = l.Run(ctx, pub)
		if ctx.Err() != nil {
			return nil
		}
		return err
	})
	switch res {
	case resultFinished:
		pr.setState(StateFinished)
	case resultPermanent, resultGaveUp:
		pr.setState(StateFailed)
	}
}

// stopSource stops the source and waits for it: what it published has
// ended when it returns.
func (pr *pipelineRun) stopSource() {
	pr.sourceCancel()
	<-pr.sourceDone
	pr.setUp(false)
}

// stopSinks stops following broadcasts and lets the sinks finish within
// timeout.
func (pr *pipelineRun) stopSinks(timeout time.Duration) {
	pr.followCancel()
	<-pr.followDone
	pr.f.drain(timeout, pr.sinkCancel)
	pr.sinkCancel()
	pr.setState(StateStopped)
	pr.log.Info("pipeline stopped")
}

func (pr *pipelineRun) setState(s State) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.state == StateStopped {
		return
	}
	pr.state = s
}

func (pr *pipelineRun) setUp(up bool) {
	pr.mu.Lock()
	changed := pr.sourceUp != up
	pr.sourceUp = up
	pr.mu.Unlock()
	if changed {
		pr.r.obs.SourceUp(pr.p.Name, up)
	}
}

func (pr *pipelineRun) setError(err error) {
	pr.mu.Lock()
	pr.lastErr = err
	pr.mu.Unlock()
}

func (pr *pipelineRun) restarted(label string) {
	pr.mu.Lock()
	pr.restarts++
	pr.mu.Unlock()
	pr.r.obs.Restarted(pr.p.Name, label)
}

func (pr *pipelineRun) sinkStarted(string, string, sdk.Sink) {
	pr.mu.Lock()
	pr.sinks++
	pr.mu.Unlock()
}

func (pr *pipelineRun) status() PipelineStatus {
	pr.f.mu.Lock()
	paths := make([]string, 0, len(pr.f.groups))
	for path := range pr.f.groups {
		paths = append(paths, path)
	}
	pr.f.mu.Unlock()
	slices.Sort(paths)
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return PipelineStatus{Name: pr.p.Name, State: pr.state, SourceUp: pr.sourceUp, Restarts: pr.restarts,
		LastError: pr.lastErr, Broadcasts: paths, Sinks: pr.sinks}
}

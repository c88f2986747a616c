package pipelines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// errReturned is the failure of a part that returned without an error
// while it should still run: a sink whose broadcast is still live.
var errReturned = errors.New("returned while its broadcast is live")

// minIdleRun is the shortest run after which a source whose input went
// silent is run again at once (see supervise).
const minIdleRun = 100 * time.Millisecond

// errGaveUp marks the error of a part whose restart policy gave up.
var errGaveUp = errors.New("gave up restarting")

// backoffOf is the sdk.Backoff of a pipeline's restart policy. The config
// holds every default already, so a zero jitter there means none (where
// sdk.Backoff would take its default).
func backoffOf(p RestartPolicy) sdk.Backoff {
	b := sdk.Backoff{Min: p.Min, Max: p.Max, Jitter: p.Jitter, GiveUpAfter: p.GiveUpAfter}
	if b.Jitter == 0 {
		b.Jitter = -1
	}
	return b.WithDefaults()
}

// part is one supervised piece of a pipeline: its source, or one sink on
// one broadcast.
type part struct {
	pipeline *pipelineRun
	label    string // "source" or the sink's label ("sinks[0].fmp4")
	log      *slog.Logger
	// live reports whether the part should still run after it returned
	// (a sink: while its broadcast is live); nil: always.
	live func() bool
	// state, if set, is told when the part runs and when it waits to
	// restart (the source's state is its pipeline's).
	state func(State)
}

// result is how a supervised part ended.
type result int

const (
	resultStopped   result = iota // its context ended, or it had nothing more to do
	resultFinished                // it returned nil and is not restarted (a source whose media ended)
	resultPermanent               // a permanent error
	resultGaveUp                  // its restart policy gave up
)

// supervise runs run until ctx ends, restarting it after a transient
// failure with the pipeline's backoff: an error marked permanent
// (sdk.IsPermanent) is reported and not retried; a part that kept
// failing for GiveUpAfter is reported and stopped; one that ran for at
// least the longest wait (Backoff.Max) was healthy, and its next failure
// waits the shortest again. A source whose input went silent
// (sdk.ErrInputIdle) is run again at once: its broadcast ended normally. A nil return ends a part without live (a
// source whose media ended); a part with live is restarted while live
// reports true.
func (pt *part) supervise(ctx context.Context, run func(ctx context.Context) error) result {
	pr := pt.pipeline
	policy := pr.backoff
	attempt := 0
	var failingSince time.Time
	for {
		if pt.state != nil {
			pt.state(StateRunning)
		}
		began := time.Now()
		err := run(ctx)
		if ctx.Err() != nil {
			return resultStopped
		}
		if pt.live != nil && !pt.live() {
			if err != nil && !errors.Is(err, moq.ErrClosed) {
				pt.log.Warn("pipeline: "+pt.label+" failed as its broadcast ended", "err", err)
			}
			return resultStopped
		}
		if err == nil {
			if pt.live == nil {
				pt.log.Info("pipeline: " + pt.label + " finished")
				return resultFinished
			}
			err = errReturned
		}
		if errors.Is(err, sdk.ErrInputIdle) && time.Since(began) >= minIdleRun {
			// The input's normal end (a sender that stopped): its
			// broadcast ended, and the source waits for the input again
			// at once, however often that happens: not a failure, not
			// a restart. (An idle sooner than minIdleRun is backed off
			// as a failure is, so that a source cannot spin.)
			pt.log.Info("pipeline: "+pt.label+" input went silent; its broadcast ended, waiting for the input again", "err", err)
			attempt, failingSince = 0, time.Time{}
			continue
		}
		pr.setError(err)
		if sdk.IsPermanent(err) {
			pt.log.Error("pipeline: "+pt.label+" failed permanently; not restarted", "err", err)
			return resultPermanent
		}
		if time.Since(began) >= policy.Max {
			attempt, failingSince = 0, time.Time{}
		}
		if failingSince.IsZero() {
			failingSince = began
		}
		if g := policy.GiveUpAfter; g > 0 && time.Since(failingSince) >= g {
			pr.setError(fmt.Errorf("%w after %v: %w", errGaveUp, g, err))
			pt.log.Error("pipeline: "+pt.label+" kept failing; gave up restarting it", "err", err, "give_up_after", g)
			return resultGaveUp
		}
		if pt.state != nil {
			pt.state(StateRestarting)
		}
		wait := policy.Wait(attempt)
		attempt++
		pt.log.Warn("pipeline: "+pt.label+" failed; restarting", "err", err, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return resultStopped
		case <-t.C:
		}
		if pt.live != nil && !pt.live() {
			return resultStopped
		}
		pr.restarted(pt.label)
	}
}

// pathPattern splits a path pattern ("prefix/*", "*", or an exact path)
// into the prefix to watch and a match of the paths it takes.
func pathPattern(pattern string) (prefix string, match func(path string) bool) {
	switch {
	case pattern == "*" || pattern == "":
		return "", func(string) bool { return true }
	case strings.HasSuffix(pattern, "/*"):
		prefix = moq.CleanPath(strings.TrimSuffix(pattern, "/*"))
		return prefix, func(path string) bool { return path != prefix && moq.HasPathPrefix(path, prefix) }
	}
	exact := moq.CleanPath(pattern)
	return exact, func(path string) bool { return path == exact }
}

// pattern is the path pattern of the broadcasts the pipeline yields.
func (pr *pipelineRun) pattern() string {
	if y := pr.p.Yields(); y != "" || pr.p.Source == nil {
		return y
	}
	return pr.p.Path // a kind without Paths publishes at the path itself
}

// sinkGroup is a pipeline's sinks on one broadcast: one supervised part
// per SinkSpec.
type sinkGroup struct {
	path   string
	b      *moq.BroadcastReader
	cancel context.CancelFunc
	done   chan struct{} // closed once every sink of the group returned
}

// follower runs a pipeline's sinks on every broadcast it yields as they
// come and go. It is sdk.Follow's loop with what supervision needs
// besides: an exact path or a "prefix/*" pattern, several sinks per
// broadcast each supervised on its own (restarted on the same broadcast
// while it is live), and a stop in two steps (drain).
type follower struct {
	pr *pipelineRun

	mu     sync.Mutex
	groups map[string]*sinkGroup // by path: the current broadcast's sinks
	wg     sync.WaitGroup        // every sink goroutine
}

// run follows announcements until ctx ends; the sinks it started keep
// running (on sinkCtx) until drain or their broadcast ends.
func (f *follower) run(ctx, sinkCtx context.Context) {
	pr := f.pr
	prefix, match := pathPattern(pr.pattern())
	ann := pr.r.origin.Announced(prefix)
	defer ann.Close()
	// Where a broadcast's sinks start reading: from its oldest cached
	// group, so that a recording misses nothing of its start; but when a
	// reload started the pipeline, a broadcast live already (the
	// announcements ready at once) from its latest, so that a changed
	// recording pipeline does not write again what its previous version
	// wrote.
	from := moq.FromOldest
	if pr.reloaded {
		from = moq.FromLatest
	}
	for {
		a, ok, err := ann.TryNext()
		if err == nil && !ok {
			from = moq.FromOldest
			a, err = ann.Next(ctx)
		}
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, moq.ErrClosed) {
				pr.log.Error("pipeline: following broadcasts failed", "err", err)
			}
			return
		}
		if !match(a.Path) {
			continue
		}
		f.mu.Lock()
		old := f.groups[a.Path]
		if old != nil && (!a.Active || old.b != a.Broadcast) {
			delete(f.groups, a.Path)
			select {
			case <-old.b.Done():
				// Its sinks read to the end and return on their own.
			default:
				old.cancel() // unpublished without ending: nothing more comes
			}
			old = nil
		}
		if a.Active && old == nil {
			f.groups[a.Path] = f.startGroup(sinkCtx, a.Path, a.Broadcast, from)
		}
		f.mu.Unlock()
	}
}

// startGroup starts a sink per SinkSpec on broadcast b at path, reading
// from from (f.mu held).
func (f *follower) startGroup(ctx context.Context, path string, b *moq.BroadcastReader, from moq.StartPoint) *sinkGroup {
	pr := f.pr
	ctx, cancel := context.WithCancel(ctx)
	g := &sinkGroup{path: path, b: b, cancel: cancel, done: make(chan struct{})}
	var groupWG sync.WaitGroup
	live := func() bool {
		select {
		case <-b.Done():
			return false
		default:
			return true
		}
	}
	for _, spec := range pr.p.Sinks {
		label := sinkLabel(spec)
		log := pr.log.With("path", path, "sink", label)
		pt := &part{pipeline: pr, label: label, log: log, live: live}
		groupWG.Add(1)
		f.wg.Go(func() {
			defer groupWG.Done()
			pr.runSink(ctx, pt, spec, path, b, from)
		})
	}
	f.wg.Go(func() {
		groupWG.Wait()
		cancel()
		close(g.done)
		f.mu.Lock()
		if f.groups[path] == g {
			delete(f.groups, path)
		}
		f.mu.Unlock()
	})
	return g
}

// drain ends the sinks: those whose broadcast is still live (another
// source's, or a From pipeline's) are cancelled at once, which makes a
// sink finish what it writes; those whose broadcast ended read to its
// end. Whatever still runs after timeout is cancelled. drain returns once
// every sink returned.
func (f *follower) drain(timeout time.Duration, cancelAll context.CancelFunc) {
	f.mu.Lock()
	for _, g := range f.groups {
		select {
		case <-g.b.Done():
		default:
			g.cancel()
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	f.pr.log.Warn("pipeline: sinks still running at the stop deadline; cancelling them", "stop_timeout", timeout)
	cancelAll()
	<-done
}

// sinkCount returns how many broadcasts the follower has sinks on.
func (f *follower) sinkCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.groups)
}

// sinkLabel names a sink for logs and metrics: "sinks[0].fmp4".
func sinkLabel(s *SinkSpec) string {
	return fmt.Sprintf("sinks[%d].%s", s.Index, s.Kind.Name)
}

// observedSink wraps a sink to report its reader's counters.
type observedSink struct {
	inner sdk.Sink
	start func(r *sdk.BroadcastReader)
}

func (s observedSink) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	s.start(r)
	return s.inner.Run(ctx, r)
}

// runSink supervises one sink of spec on broadcast b at path: a new
// instance per attempt, each told to the Observer. The first reads from
// from; a restarted one from the latest group, the live edge, rather than
// sending again what its predecessor sent (a restream resuming with
// half a minute of old media, a recording writing it twice).
func (pr *pipelineRun) runSink(ctx context.Context, pt *part, spec *SinkSpec, path string, b *moq.BroadcastReader, from moq.StartPoint) {
	obs := pr.r.obs
	name := pr.p.Name
	pt.log.Debug("pipeline: sink starting")
	pt.supervise(ctx, func(ctx context.Context) error {
		env := SinkEnv{Pipeline: name, Path: path, Index: spec.Index, Origin: pr.r.origin, Dir: pr.dir, Logger: pt.log}
		sink, err := spec.Kind.New(env, spec.Options)
		if err != nil {
			return fmt.Errorf("%s: %w", pt.label, err)
		}
		pr.sinkStarted(pt.label, path, sink)
		var started bool
		defer func() {
			if started {
				obs.SinkEnded(name, pt.label, path)
			}
		}()
		start := from
		from = moq.FromLatest
		return sdk.RunSinkFrom(ctx, b, path, observedSink{inner: sink, start: func(r *sdk.BroadcastReader) {
			var extra func() SinkCounters // nil: the sink has no counters of its own
			if sr, ok := sink.(StatsReporter); ok {
				extra = sr.Counters
			}
			r.SetLatencyObserver(func(track string, d time.Duration) { obs.Latency(name, path, track, d) })
			started = true
			obs.SinkStarted(name, pt.label, path, r.Stats, extra)
		}}, start)
	})
}

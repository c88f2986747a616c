package pipelines

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

// synthOpts configures the synthetic source: Opus frames of 20 ms of
// media written every Interval (as fast as possible when 0), Frames of
// them (0: until stopped); FailAfter > 0 makes every run fail after that
// many frames, Permanent with a permanent error. Made counts the sources
// made, Stopped those whose Run saw its context end.
type synthOpts struct {
	Interval  time.Duration
	Frames    int
	FailAfter int
	Permanent bool
	Made      atomic.Int64
	Stopped   atomic.Int64
}

var synthKind = SourceKind{
	Name:    "synth",
	Options: func() any { return &synthOpts{} },
	NewSource: func(env SourceEnv, opts any) (sdk.Source, error) {
		o := opts.(*synthOpts)
		o.Made.Add(1)
		return sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
			tr, err := sdk.OpusFromChannels(2)
			if err != nil {
				return err
			}
			tw, err := w.AddTrack(tr)
			if err != nil {
				return err
			}
			for i := 0; o.Frames == 0 || i < o.Frames; i++ {
				if o.FailAfter > 0 && i == o.FailAfter {
					err := errors.New("synthetic failure")
					if o.Permanent {
						return sdk.Permanent(err)
					}
					return err
				}
				if err := tw.WriteFrame(sdk.Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: []byte{0xfc, byte(i)}}); err != nil {
					return err
				}
				if o.Interval > 0 {
					select {
					case <-ctx.Done():
						o.Stopped.Add(1)
						return nil
					case <-time.After(o.Interval):
					}
				} else if ctx.Err() != nil {
					o.Stopped.Add(1)
					return nil
				}
			}
			return nil
		}), nil
	},
}

// sinkInstance is what one recording sink made by the test sink kind saw.
type sinkInstance struct {
	path    string
	frames  atomic.Int64
	first   atomic.Int64 // PTS of the first frame read, +1 (0: none yet)
	last    atomic.Int64 // PTS of the last frame read
	eof     atomic.Bool  // read its broadcast to the end
	flushed atomic.Bool  // finished its flush
}

// recOpts configures the test sink: it reads the broadcast's track and
// counts frames; FailAfter > 0 fails after that many frames; Block makes
// it stop reading after its first frame until its context ends (a
// destination that takes nothing); Flush is how long it takes to finish
// once its input ended or its context did.
type recOpts struct {
	FailAfter int
	Block     bool
	Flush     time.Duration

	mu        sync.Mutex
	instances []*sinkInstance
}

func (o *recOpts) all() []*sinkInstance {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*sinkInstance(nil), o.instances...)
}

// frames returns the frames every instance read.
func (o *recOpts) frames() int64 {
	var n int64
	for _, in := range o.all() {
		n += in.frames.Load()
	}
	return n
}

var recKind = SinkKind{
	Name:    "rec",
	Options: func() any { return &recOpts{} },
	New: func(env SinkEnv, opts any) (sdk.Sink, error) {
		o := opts.(*recOpts)
		in := &sinkInstance{path: env.Path}
		o.mu.Lock()
		o.instances = append(o.instances, in)
		o.mu.Unlock()
		return sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
			finish := func() {
				time.Sleep(o.Flush) // a recorder closing its file
				in.flushed.Store(true)
			}
			if err := r.WaitTracks(ctx, 10*time.Millisecond); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			sub, err := r.Subscribe(r.Tracks()[0].Name)
			if err != nil {
				return err
			}
			defer sub.Close()
			for {
				f, err := sub.ReadFrame(ctx)
				switch {
				case errors.Is(err, io.EOF):
					in.eof.Store(true)
					finish()
					return nil
				case ctx.Err() != nil:
					finish()
					return nil
				case err != nil:
					return err
				}
				in.first.CompareAndSwap(0, int64(f.PTS)+1)
				in.last.Store(int64(f.PTS))
				n := in.frames.Add(1)
				if o.FailAfter > 0 && n >= int64(o.FailAfter) {
					return errors.New("destination lost")
				}
				if o.Block {
					select {
					case <-ctx.Done():
					case <-r.Done():
					}
					return nil
				}
			}
		}), nil
	},
}

// events is an Observer that keeps what it was told.
type events struct {
	NopObserver
	mu        sync.Mutex
	restarted map[string]int // pipeline/part
	up        map[string]bool
	started   map[string]func() map[string]sdk.TrackStats // pipeline/path
	ended     map[string]int
	sinks     map[string]int // pipeline/part/path started
	sinkEnds  map[string]int
	extras    int            // sinks started with SinkCounters
	latencies map[string]int // frames measured by pipeline/path
}

func newEvents() *events {
	return &events{restarted: map[string]int{}, up: map[string]bool{}, started: map[string]func() map[string]sdk.TrackStats{},
		ended: map[string]int{}, sinks: map[string]int{}, sinkEnds: map[string]int{}, latencies: map[string]int{}}
}

func (e *events) SourceUp(p string, up bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.up[p] = up
}

func (e *events) Restarted(p, part string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.restarted[p+"/"+part]++
}

func (e *events) BroadcastStarted(p, path string, stats func() map[string]sdk.TrackStats, _ func() SourceCounters) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started[p+"/"+path] = stats
}

func (e *events) BroadcastEnded(p, path string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ended[p+"/"+path]++
}

func (e *events) SinkStarted(p, part, path string, stats func() map[string]sdk.TrackStats, extra func() SinkCounters) {
	_ = stats()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sinks[p+"/"+part+"/"+path]++
	if extra != nil {
		e.extras++
	}
}

func (e *events) Latency(p, path, track string, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.latencies[p+"/"+path]++
}

func (e *events) SinkEnded(p, part, path string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sinkEnds[p+"/"+part+"/"+path]++
}

func (e *events) restarts(key string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.restarted[key]
}

// fastRestart is a policy whose waits are short, without jitter.
var fastRestart = RestartPolicy{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}

// synthPipeline is a pipeline named name whose synthetic source publishes
// at path, with sinks.
func synthPipeline(name, path string, src *synthOpts, sinks ...*recOpts) *Pipeline {
	p := &Pipeline{Name: name, Path: path, Source: &SourceSpec{Kind: synthKind, Options: src, Paths: path},
		Restart: fastRestart, Fingerprint: name + "-v1"}
	for i, s := range sinks {
		p.Sinks = append(p.Sinks, &SinkSpec{Kind: recKind, Options: s, Index: i})
	}
	return p
}

// runner runs cfg until the test ends (or stop is called) and returns
// the runner and stop, which waits for Run to return.
func startRunner(t *testing.T, cfg *Config, obs Observer) (*Runner, func()) {
	t.Helper()
	lb := &testkit.LogBuffer{}
	r := NewRunner(NewRegistry(), RunnerOptions{Logger: lb.Logger(), Observer: obs, StopTimeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, cfg) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Run did not return within 20 s of its context ending")
			}
			if t.Failed() {
				t.Logf("runner log:\n%s", lb.String())
			}
		})
	}
	t.Cleanup(stop)
	// Run starts asynchronously: wait until it runs every pipeline.
	waitFor(t, "the runner to start", func() bool { return len(r.Status()) == len(cfg.Pipelines) })
	return r, stop
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statusOf(r *Runner, name string) PipelineStatus {
	for _, st := range r.Status() {
		if st.Name == name {
			return st
		}
	}
	return PipelineStatus{}
}

// TestSupervisionRestartsFailingSinkOnly: a sink that keeps losing its
// destination is made anew and restarted on the same broadcast, alone:
// the source is made once and never restarted, and the other sink is one
// instance that keeps reading.
func TestSupervisionRestartsFailingSinkOnly(t *testing.T) {
	src := &synthOpts{Interval: time.Millisecond}
	good, failing := &recOpts{}, &recOpts{FailAfter: 3}
	obs := newEvents()
	r, _ := startRunner(t, &Config{Pipelines: []*Pipeline{synthPipeline("p", "live/p", src, good, failing)}}, obs)

	waitFor(t, "the failing sink to be restarted 3 times", func() bool { return len(failing.all()) >= 4 })
	before := good.frames()
	waitFor(t, "the good sink to read on", func() bool { return good.frames() > before+20 })
	if n := len(good.all()); n != 1 {
		t.Errorf("the good sink was made %d times, want 1", n)
	}
	if n := src.Made.Load(); n != 1 {
		t.Errorf("the source was made %d times, want 1", n)
	}
	if n := obs.restarts("p/source"); n != 0 {
		t.Errorf("the source was restarted %d times", n)
	}
	if n := obs.restarts("p/sinks[1].rec"); n < 3 {
		t.Errorf("Observer saw %d restarts of the failing sink, want at least 3", n)
	}
	for _, in := range failing.all() {
		if in.path != "live/p" {
			t.Errorf("a failing sink instance was on %q", in.path)
		}
	}
	st := statusOf(r, "p")
	if st.State != StateRunning || !st.SourceUp || st.Restarts < 3 || st.LastError == nil ||
		!strings.Contains(st.LastError.Error(), "destination lost") || len(st.Broadcasts) != 1 {
		t.Errorf("status: %+v", st)
	}
	if err := r.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// TestSupervisionSourceBackoff: a source that keeps failing is restarted
// with backoff; a permanent error is not retried; GiveUpAfter stops a
// part that kept failing. Ready names the pipelines whose source is not
// up.
func TestSupervisionSourceBackoff(t *testing.T) {
	transient := &synthOpts{FailAfter: 2}
	permanent := &synthOpts{FailAfter: 2, Permanent: true}
	giveUp := &synthOpts{FailAfter: 2}
	pGiveUp := synthPipeline("giveup", "live/giveup", giveUp)
	pGiveUp.Restart = RestartPolicy{Min: 5 * time.Millisecond, Max: 10 * time.Millisecond, GiveUpAfter: 100 * time.Millisecond}
	pSlow := synthPipeline("transient", "live/transient", transient)
	pSlow.Restart = RestartPolicy{Min: 20 * time.Millisecond, Max: 80 * time.Millisecond}
	obs := newEvents()
	began := time.Now()
	r, _ := startRunner(t, &Config{Pipelines: []*Pipeline{pSlow, synthPipeline("permanent", "live/permanent", permanent), pGiveUp}}, obs)

	waitFor(t, "the permanent failure", func() bool { return statusOf(r, "permanent").State == StateFailed })
	waitFor(t, "the give-up", func() bool { return statusOf(r, "giveup").State == StateFailed })
	waitFor(t, "6 runs of the transient source", func() bool { return transient.Made.Load() >= 6 })
	// Waits of 20, 40, 80, 80 and 80 ms came before the sixth run.
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Errorf("6 runs within %v: the restarts did not back off", d)
	}
	if n := permanent.Made.Load(); n != 1 {
		t.Errorf("the source failing permanently was made %d times, want 1", n)
	}
	st := statusOf(r, "permanent")
	if st.Restarts != 0 || st.SourceUp || !sdk.IsPermanent(st.LastError) {
		t.Errorf("permanent: %+v", st)
	}
	st = statusOf(r, "giveup")
	if st.Restarts == 0 || st.SourceUp || !errors.Is(st.LastError, errGaveUp) {
		t.Errorf("giveup: %+v", st)
	}
	made := giveUp.Made.Load()
	time.Sleep(50 * time.Millisecond)
	if giveUp.Made.Load() != made {
		t.Error("the source was restarted after giving up")
	}
	err := r.Ready()
	if err == nil || !strings.Contains(err.Error(), "permanent (failed") || !strings.Contains(err.Error(), "giveup (failed") {
		t.Errorf("Ready: %v", err)
	}
}

// TestSlowSinkDoesNotStall: a sink that stops reading holds up neither
// the source nor the other sink of the broadcast.
func TestSlowSinkDoesNotStall(t *testing.T) {
	src := &synthOpts{Interval: time.Millisecond}
	fast, slow := &recOpts{}, &recOpts{Block: true}
	obs := newEvents()
	startRunner(t, &Config{Pipelines: []*Pipeline{synthPipeline("p", "live/p", src, slow, fast)}}, obs)
	waitFor(t, "the fast sink to read 300 frames", func() bool { return fast.frames() >= 300 })
	obs.mu.Lock()
	stats := obs.started["p/live/p"]
	obs.mu.Unlock()
	if stats == nil {
		t.Fatal("no BroadcastStarted for live/p")
	}
	var written uint64
	for _, s := range stats() {
		written += s.Frames
	}
	if written < 300 {
		t.Errorf("the source wrote %d frames while the fast sink read 300", written)
	}
	if n := slow.frames(); n > 1 {
		t.Errorf("the blocked sink read %d frames, want at most 1", n)
	}
}

// TestGracefulStop: when Run's context ends, the source stops first, so
// the sink reads its broadcast to the end and finishes (flushes) before
// Run returns.
func TestGracefulStop(t *testing.T) {
	src := &synthOpts{Interval: time.Millisecond}
	sink := &recOpts{Flush: 100 * time.Millisecond}
	obs := newEvents()
	_, stop := startRunner(t, &Config{Pipelines: []*Pipeline{synthPipeline("p", "live/p", src, sink)}}, obs)
	waitFor(t, "frames", func() bool { return sink.frames() > 10 })
	stop()
	ins := sink.all()
	if len(ins) != 1 || !ins[0].eof.Load() || !ins[0].flushed.Load() {
		t.Errorf("the sink did not read to the end and flush before Run returned")
	}
	if src.Stopped.Load() != 1 {
		t.Error("the source was not stopped")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.ended["p/live/p"] != 1 || obs.sinkEnds["p/sinks[0].rec/live/p"] != 1 || obs.up["p"] {
		t.Errorf("observer: ended %v, sink ends %v, up %v", obs.ended, obs.sinkEnds, obs.up)
	}
	if n := obs.latencies["p/live/p"]; n < 10 {
		t.Errorf("observer: %d latencies measured, want one per frame read", n)
	}
	if obs.extras != 0 {
		t.Error("observer: SinkCounters of a sink without them")
	}
}

// TestReload: an unchanged pipeline keeps its source and sink instances
// (the sink keeps reading); a changed one is stopped and made anew; a
// removed one stops and its broadcast leaves the Origin; an added one
// starts.
func TestReload(t *testing.T) {
	srcA, sinkA := &synthOpts{Interval: time.Millisecond}, &recOpts{}
	srcB, sinkB := &synthOpts{Interval: time.Millisecond}, &recOpts{}
	srcC, sinkC := &synthOpts{Interval: time.Millisecond}, &recOpts{}
	a, b, c := synthPipeline("a", "live/a", srcA, sinkA), synthPipeline("b", "live/b", srcB, sinkB), synthPipeline("c", "live/c", srcC, sinkC)
	r, _ := startRunner(t, &Config{Pipelines: []*Pipeline{a, b, c}}, newEvents())
	waitFor(t, "every sink reading", func() bool { return sinkA.frames() > 5 && sinkB.frames() > 5 && sinkC.frames() > 5 })

	a2 := synthPipeline("a", "live/a", srcA, sinkA) // same fingerprint
	b2 := synthPipeline("b", "live/b", srcB, sinkB)
	b2.Fingerprint = "b-v2"
	srcD, sinkD := &synthOpts{Interval: time.Millisecond}, &recOpts{}
	d := synthPipeline("d", "live/d", srcD, sinkD)
	if err := r.Reload(&Config{Pipelines: []*Pipeline{d, a2, b2}}); err != nil {
		t.Fatal(err)
	}
	before := sinkA.frames()
	waitFor(t, "the reloaded pipelines", func() bool {
		return sinkA.frames() > before+20 && sinkB.frames() > 0 && len(sinkB.all()) == 2 && sinkD.frames() > 5
	})
	if n, m := srcA.Made.Load(), len(sinkA.all()); n != 1 || m != 1 {
		t.Errorf("the unchanged pipeline's source was made %d times, its sink %d times; want 1 and 1", n, m)
	}
	if srcA.Stopped.Load() != 0 {
		t.Error("the unchanged pipeline's source was stopped")
	}
	if n := srcB.Made.Load(); n != 2 {
		t.Errorf("the changed pipeline's source was made %d times, want 2", n)
	}
	if !sinkB.all()[0].flushed.Load() {
		t.Error("the changed pipeline's first sink did not finish")
	}
	if srcC.Stopped.Load() != 1 {
		t.Error("the removed pipeline's source was not stopped")
	}
	if _, err := r.Origin().Consume("live/c"); err == nil {
		t.Error("the removed pipeline's broadcast is still in the Origin")
	}
	var names []string
	for _, st := range r.Status() {
		names = append(names, st.Name)
	}
	if fmt.Sprint(names) != "[d a b]" {
		t.Errorf("status lists %v, want [d a b]", names)
	}
}

// TestReloadFromLatest: a From pipeline changed by a reload reads the
// broadcasts live already from their latest group, not from the oldest
// cached one: its previous version read those, and a recording would
// write them twice.
func TestReloadFromLatest(t *testing.T) {
	src := &synthOpts{Interval: time.Millisecond}
	sink := &recOpts{}
	from := &Pipeline{Name: "rec", From: "live/*", Sinks: []*SinkSpec{{Kind: recKind, Options: sink}}, Restart: fastRestart, Fingerprint: "rec"}
	r, _ := startRunner(t, &Config{Pipelines: []*Pipeline{synthPipeline("src", "live/src", src), from}}, newEvents())
	// 20 ms frames, an audio group a second: several groups cached.
	waitFor(t, "the first version reading", func() bool { return sink.frames() > 400 })
	if first := sink.all()[0].first.Load() - 1; first != 0 {
		t.Errorf("the first version started at %v, want the broadcast's start", time.Duration(first))
	}
	changed := *from
	changed.Fingerprint = "rec-v2"
	if err := r.Reload(&Config{Pipelines: []*Pipeline{synthPipeline("src", "live/src", src), &changed}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second version reading", func() bool { return len(sink.all()) == 2 && sink.all()[1].frames.Load() > 0 })
	old, next := sink.all()[0], sink.all()[1]
	if start, end := time.Duration(next.first.Load()-1), time.Duration(old.last.Load()); start < end-sdk.DefaultAudioGroupDuration {
		t.Errorf("the second version started at %v, before the group the first one ended in (%v)", start, end)
	}
}

// TestFromPipeline: a From pipeline's sinks follow every broadcast under
// its pattern as it comes and goes, and none outside it.
func TestFromPipeline(t *testing.T) {
	src1, src2, other := &synthOpts{Interval: time.Millisecond}, &synthOpts{Interval: time.Millisecond}, &synthOpts{Interval: time.Millisecond}
	sink := &recOpts{}
	from := &Pipeline{Name: "rec", From: "live/*", Sinks: []*SinkSpec{{Kind: recKind, Options: sink}}, Restart: fastRestart, Fingerprint: "rec"}
	r, _ := startRunner(t, &Config{Pipelines: []*Pipeline{
		synthPipeline("one", "live/one", src1), synthPipeline("two", "live/two", src2), synthPipeline("other", "vod/x", other), from,
	}}, newEvents())
	waitFor(t, "sinks on both broadcasts", func() bool { return len(sink.all()) == 2 && sink.frames() > 10 })
	paths := map[string]bool{}
	for _, in := range sink.all() {
		paths[in.path] = true
	}
	if !paths["live/one"] || !paths["live/two"] {
		t.Errorf("sinks on %v, want live/one and live/two", paths)
	}
	if st := statusOf(r, "rec"); !st.SourceUp || fmt.Sprint(st.Broadcasts) != "[live/one live/two]" {
		t.Errorf("status: %+v", st)
	}
}

// routeOpts configures the test listener kind: it routes the publishes of
// RTMP application App through the runner's shared RTMP listener.
type routeOpts struct {
	App  string
	Keys []string
}

var routeKind = SourceKind{
	Name:    "rtmproute",
	Options: func() any { return &routeOpts{} },
	NewListener: func(env SourceEnv, opts any) (sdk.Listener, error) {
		o := opts.(*routeOpts)
		if env.RTMP == nil {
			return nil, sdk.Permanent(errors.New("no rtmp section"))
		}
		return listenerFunc(func(ctx context.Context, p *sdk.Publisher) error {
			return env.RTMP.Route(ctx, RTMPRoute{App: o.App, PathTemplate: "{app}/{key}", Keys: o.Keys}, p)
		}), nil
	},
}

type listenerFunc func(ctx context.Context, p *sdk.Publisher) error

func (f listenerFunc) Run(ctx context.Context, p *sdk.Publisher) error { return f(ctx, p) }

func routePipeline(name, app string, sink *recOpts) *Pipeline {
	return &Pipeline{Name: name, Path: "{app}/{key}", Source: &SourceSpec{Kind: routeKind, Options: &routeOpts{App: app}, Paths: app + "/*"},
		Sinks: []*SinkSpec{{Kind: recKind, Options: sink}}, Restart: fastRestart, Fingerprint: name + "-v1"}
}

// countersSink is a sink with SinkCounters of its own, which end when its
// broadcast does.
type countersSink struct{ sdk.Sink }

func (countersSink) Counters() SinkCounters { return SinkCounters{Connected: true} }

// TestSinkPermanentError: a sink that cannot be made (a permanent error)
// is reported and not retried, while the source and the other sinks run
// on; a sink with SinkCounters hands them to the Observer.
func TestSinkPermanentError(t *testing.T) {
	var made atomic.Int64
	broken := SinkKind{Name: "broken", Options: func() any { return nil }, New: func(SinkEnv, any) (sdk.Sink, error) {
		made.Add(1)
		return nil, sdk.Permanent(errors.New("bad option"))
	}}
	counted := SinkKind{Name: "counted", Options: func() any { return nil }, New: func(env SinkEnv, opts any) (sdk.Sink, error) {
		s, err := recKind.New(env, opts)
		return countersSink{s}, err
	}}
	src, good := &synthOpts{Interval: time.Millisecond}, &recOpts{}
	p := synthPipeline("p", "live/p", src, good)
	p.Sinks = append(p.Sinks, &SinkSpec{Kind: broken, Index: 1}, &SinkSpec{Kind: counted, Options: &recOpts{}, Index: 2})
	obs := newEvents()
	r, _ := startRunner(t, &Config{Pipelines: []*Pipeline{p}}, obs)
	waitFor(t, "the broken sink's failure", func() bool { return statusOf(r, "p").LastError != nil })
	before := good.frames()
	waitFor(t, "the good sink to read on", func() bool { return good.frames() > before+20 })
	if n := made.Load(); n != 1 {
		t.Errorf("the broken sink was made %d times, want 1", n)
	}
	if st := statusOf(r, "p"); !sdk.IsPermanent(st.LastError) || st.Restarts != 0 || !st.SourceUp {
		t.Errorf("status: %+v", st)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.extras != 1 {
		t.Errorf("%d sinks started with SinkCounters, want 1", obs.extras)
	}
}

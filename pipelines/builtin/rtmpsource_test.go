package builtin

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestRTMPPaths: the pattern of the broadcasts a path template makes,
// which the pipeline's sinks follow.
func TestRTMPPaths(t *testing.T) {
	for _, c := range []struct {
		template, app, want string
	}{
		{"live/{key}", "live", "live/*"},
		{"live/{key}", "*", "live/*"},
		{"/live/{key}/", "live", "live/*"},
		{"ingest/{app}/{key}", "*", "ingest/*"},
		{"ingest/{app}/{key}", "studio", "ingest/studio/*"},
		{"{app}/{key}", "live", "live/*"},
		{"{app}/{key}", "live/studio", "live/studio/*"},
		{"{app}/{key}", "*", "*"},
		{"{key}", "live", "*"},
		{"live/cam-{key}", "live", "live/*"},
		{"cam-{key}", "live", "*"},
		{"live/{key}/main", "live", "live/*"},
		{"live/studio", "live", "live/studio"},
		{"{app}/main", "live", "live/main"},
		{"{app}/main", "*", "*"},
	} {
		got, err := RTMPPaths(c.template, c.app)
		if err != nil || got != c.want {
			t.Errorf("RTMPPaths(%q, %q) = %q, %v; want %q", c.template, c.app, got, err, c.want)
		}
	}
	for _, bad := range []string{"live/{name}", "live/{key", "live/key}", "live/{{key}}", "live/../{key}", "live/\x01{key}", "live/*", "*/{key}"} {
		if got, err := RTMPPaths(bad, "live"); err == nil {
			t.Errorf("RTMPPaths(%q) = %q, want an error", bad, got)
		}
	}
	// The kind's Paths: the pipeline's path with the source's app; an
	// empty path is the default template.
	kind := RTMPSource()
	opts := newOptions[RTMPSourceOptions](t, kind.Options, nil)
	for path, want := range map[string]string{"live/{key}": "live/*", "": "live/*", "tv/{app}/{key}": "tv/live/*"} {
		if got, err := kind.Paths(path, opts); err != nil || got != want {
			t.Errorf("Paths(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
}

// fakeRouter is an RTMPRouter that records the routes asked for and
// holds each until its context ends.
type fakeRouter struct {
	mu     sync.Mutex
	routes []pipelines.RTMPRoute
	pubs   []*sdk.Publisher
	asked  chan struct{}
}

func (r *fakeRouter) Route(ctx context.Context, route pipelines.RTMPRoute, p *sdk.Publisher) error {
	r.mu.Lock()
	r.routes = append(r.routes, route)
	r.pubs = append(r.pubs, p)
	r.mu.Unlock()
	r.asked <- struct{}{}
	<-ctx.Done()
	return nil
}

// TestRTMPListener: the rtmp kind's listener routes its application,
// template and keys through the shared listener, with the publisher it
// is run with, until its context ends; without the rtmp: section it is
// refused.
func TestRTMPListener(t *testing.T) {
	kind := RTMPSource()
	if kind.NewListener == nil || kind.NewSource != nil {
		t.Fatal("rtmp is not a listener kind")
	}
	opts := newOptions(t, kind.Options, func(o *RTMPSourceOptions) { o.App, o.Keys, o.Replace = "studio", []string{"k1", "k2"}, true })
	if !opts.UsesRTMPListener() {
		t.Error("the rtmp source does not say it needs the rtmp: section")
	}
	router := &fakeRouter{asked: make(chan struct{}, 1)}
	env := pipelines.SourceEnv{Pipeline: "ingest", Path: "studio/{key}", RTMP: router}
	l, err := kind.NewListener(env, opts)
	if err != nil {
		t.Fatal(err)
	}
	origin := moq.NewOrigin()
	defer origin.Close()
	p := sdk.NewPublisher(origin, sdk.PublisherOptions{})
	defer p.Close()
	run := start(t, func(ctx context.Context) error { return l.Run(ctx, p) })
	select {
	case <-router.asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not route")
	}
	router.mu.Lock()
	got, pub := router.routes[0], router.pubs[0]
	router.mu.Unlock()
	want := pipelines.RTMPRoute{App: "studio", PathTemplate: "studio/{key}", Keys: []string{"k1", "k2"}, Linger: 5 * time.Second, Replace: true}
	if got.App != want.App || got.PathTemplate != want.PathTemplate || !slices.Equal(got.Keys, want.Keys) ||
		got.Linger != want.Linger || got.Replace != want.Replace || pub != p {
		t.Errorf("route %+v (publisher %p), want %+v (%p)", got, pub, want, p)
	}
	// The route's keys are its own: the options may change under it.
	opts.Keys[0] = "changed"
	if got.Keys[0] != "k1" {
		t.Error("the route shares the options' keys")
	}
	if err := run.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}

	// linger: 0 ends a broadcast at once, which the route says with a
	// negative linger (its 0 is sources/rtmp's default).
	opts.Linger = 0
	l, err = kind.NewListener(env, opts)
	if err != nil {
		t.Fatal(err)
	}
	if route := l.(*rtmpListener).route; route.Linger >= 0 {
		t.Errorf("linger 0 routes with linger %v, want a negative one", route.Linger)
	}

	env.RTMP = nil
	_, err = kind.NewListener(env, opts)
	if err == nil || !strings.Contains(err.Error(), `"rtmp:" section`) || !sdk.IsPermanent(err) {
		t.Errorf("without an rtmp: section: %v", err)
	}
	env.RTMP, env.Path = router, "studio/{stream}"
	if _, err := kind.NewListener(env, opts); err == nil || !sdk.IsPermanent(err) {
		t.Errorf("with a bad template: %v", err)
	}
	if _, err := kind.NewListener(env, &RTMPPullOptions{}); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("with another kind's options: %v", err)
	}
}

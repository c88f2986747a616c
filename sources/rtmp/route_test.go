package rtmp

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestRoute: Config.Route sends each RTMP application to its own
// publisher and path; an application no route takes is refused; when a
// route's context ends, its publisher's connection is closed and its
// broadcast ends at once (no linger), while the other route's publisher
// goes on untouched.
func TestRoute(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	type route struct {
		ctx    context.Context
		cancel context.CancelFunc
		pub    *sdk.Publisher
	}
	var mu sync.Mutex // the routes are set once the server runs
	routes := map[string]*route{}
	srv := startServer(t, Config{Linger: time.Minute, Route: func(req PublishRequest) (PublishRoute, error) {
		mu.Lock()
		r := routes[req.App]
		mu.Unlock()
		if r == nil {
			return PublishRoute{}, errors.New("no pipeline takes this application")
		}
		return PublishRoute{Publisher: r.pub, Path: "routed/" + req.App + "-" + req.Key, Context: r.ctx}, nil
	}})
	for _, app := range []string{"a", "b"} {
		rctx, cancel := context.WithCancel(ctx)
		p := sdk.NewPublisher(srv.origin, sdk.PublisherOptions{})
		mu.Lock()
		routes[app] = &route{ctx: rctx, cancel: cancel, pub: p}
		mu.Unlock()
		t.Cleanup(func() { cancel(); p.Close() })
	}

	publish := func(app, key string) *testPublisher {
		t.Helper()
		u, _ := url.Parse(srv.url + "/" + app + "#" + key)
		p, err := newTestPublisher(ctx, t, u, nil)
		if err != nil {
			t.Fatalf("publish to %s/%s: %v", app, key, err)
		}
		t.Cleanup(p.c.Close)
		if err := p.send(0, 0, 10); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pa := publish("a", "one")
	pb := publish("b", "two")
	ba, err := sdk.WaitBroadcast(ctx, srv.origin, "routed/a-one", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sdk.WaitBroadcast(ctx, srv.origin, "routed/b-two", 0); err != nil {
		t.Fatal(err)
	}
	if live := routes["a"].pub.Live(); len(live) != 1 || live[0] != "routed/a-one" {
		t.Errorf("route a's publisher has %q live, want routed/a-one", live)
	}

	u, _ := url.Parse(srv.url + "/c#three")
	if p, err := newTestPublisher(ctx, t, u, nil); err == nil {
		p.c.Close()
		t.Error("a publish no route takes was accepted")
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: refused: no pipeline takes this application", "app=c")

	routes["a"].cancel()
	select {
	case <-ba.Done():
	case <-ctx.Done():
		t.Fatal("route a's broadcast did not end with its route")
	}
	for pa.send(0, 10, 20) == nil {
		if ctx.Err() != nil {
			t.Fatal("route a's publisher is still connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := pb.send(0, 10, 20); err != nil {
		t.Errorf("route b's publisher was disturbed: %v", err)
	}
	if _, err := srv.origin.Consume("routed/b-two"); err != nil {
		t.Errorf("route b's broadcast: %v", err)
	}
}

// TestRouteLingerReplace: a route's Linger and Replace apply to its
// publishes where the server's would not: a second publisher of the key
// takes over, and when it drops the broadcast lingers.
func TestRouteLingerReplace(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	var pub atomic.Pointer[sdk.Publisher] // set once the server runs
	srv := startServer(t, Config{Linger: -1, Route: func(req PublishRequest) (PublishRoute, error) {
		return PublishRoute{Publisher: pub.Load(), Path: "r/" + req.Key, Linger: time.Minute, Replace: true}, nil
	}})
	pub.Store(sdk.NewPublisher(srv.origin, sdk.PublisherOptions{}))
	t.Cleanup(pub.Load().Close)
	u, _ := url.Parse(srv.url + "/live#k")
	first, err := newTestPublisher(ctx, t, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.c.Close()
	if err := first.send(0, 0, 10); err != nil {
		t.Fatal(err)
	}
	b, err := sdk.WaitBroadcast(ctx, srv.origin, "r/k", 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := newTestPublisher(ctx, t, u, nil)
	if err != nil {
		t.Fatalf("the route's Replace did not let a second publisher in: %v", err)
	}
	if err := second.send(0, 10, 20); err != nil {
		t.Fatal(err)
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: a new publisher replaces the live one", "path=r/k")
	second.c.Close()
	srv.log.WaitLog(t, 5*time.Second, "rtmp: publisher gone; the broadcast waits for it to return", "path=r/k", "linger=1m0s")
	select {
	case <-b.Done():
		t.Error("the broadcast ended instead of lingering")
	default:
	}
}

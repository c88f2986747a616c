package pipelines

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtmp"
)

// rtmpPublisher is a gortmplib client publishing generated H.264, a
// frame every 10 ms, until its context ends or a write fails (its
// connection was closed); err then holds why.
type rtmpPublisher struct {
	c    *gortmplib.Client
	done chan error
}

func publishRTMP(ctx context.Context, t *testing.T, rawURL string) (*rtmpPublisher, error) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	sps, _ := hex.DecodeString("6742c00dd90141fb0110000003001000000303c0f142a480")
	pps, _ := hex.DecodeString("68cb83cb20")
	c := &gortmplib.Client{URL: u, Publish: true}
	if err := c.Initialize(ctx); err != nil {
		return nil, err
	}
	video := &gortmplib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{video}}
	if err := w.Initialize(); err != nil {
		c.Close()
		return nil, err
	}
	p := &rtmpPublisher{c: c, done: make(chan error, 1)}
	go func() {
		defer c.Close()
		for i := 0; ; i++ {
			ts := time.Duration(i) * 10 * time.Millisecond
			nal := byte(0x41)
			if i%10 == 0 {
				nal = 0x65
			}
			if err := w.WriteH264(video, ts, ts, [][]byte{{nal, byte(i), 0x88, 0x84}}); err != nil {
				p.done <- err
				return
			}
			select {
			case <-ctx.Done():
				p.done <- nil
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return p, nil
}

// connected reports whether the publisher still publishes.
func (p *rtmpPublisher) connected() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// TestRTMPHub: the shared RTMP listener routes each publish by its
// application to the pipeline of that application, and refuses one no
// pipeline takes. A reload that changes one RTMP pipeline disconnects its
// publisher only: the other's connection, sink instance and frames go on
// untouched, and the reconnecting publisher reaches the new pipeline.
func TestRTMPHub(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	sinkA, sinkB := &recOpts{}, &recOpts{}
	a, b := routePipeline("ingest-a", "a", sinkA), routePipeline("ingest-b", "b", sinkB)
	cfg := &Config{RTMP: &RTMPConfig{Listen: "127.0.0.1:0"}, Pipelines: []*Pipeline{a, b}}
	r, stop := startRunner(t, cfg, newEvents())
	waitFor(t, "both routes", func() bool { return r.Ready() == nil })
	addrs := r.RTMPAddrs()
	if len(addrs) != 1 {
		t.Fatalf("RTMP listens on %v", addrs)
	}
	base := "rtmp://" + addrs[0]
	pubCtx, cancelPubs := context.WithCancel(ctx)
	defer cancelPubs()
	pa, err := publishRTMP(pubCtx, t, base+"/a#one")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := publishRTMP(pubCtx, t, base+"/b#two")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both sinks reading", func() bool { return sinkA.frames() > 5 && sinkB.frames() > 5 })
	if in := sinkA.all(); len(in) != 1 || in[0].path != "a/one" {
		t.Errorf("pipeline a's sinks: %d, first on %q", len(in), in[0].path)
	}
	if in := sinkB.all(); len(in) != 1 || in[0].path != "b/two" {
		t.Errorf("pipeline b's sinks: %d, first on %q", len(in), in[0].path)
	}
	if p, err := publishRTMP(pubCtx, t, base+"/c#three"); err == nil {
		p.c.Close()
		<-p.done
		t.Error("a publish to an application no pipeline takes was accepted")
	}

	b2 := routePipeline("ingest-b", "b", sinkB)
	b2.Fingerprint = "ingest-b-v2"
	if err := r.Reload(&Config{RTMP: cfg.RTMP, Pipelines: []*Pipeline{a, b2}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pipeline b's publisher disconnected", func() bool { return !pb.connected() })
	before := sinkA.frames()
	waitFor(t, "pipeline a reading on", func() bool { return sinkA.frames() > before+10 })
	if !pa.connected() {
		t.Error("pipeline a's publisher was disconnected by the reload of b")
	}
	if n := len(sinkA.all()); n != 1 {
		t.Errorf("pipeline a's sink was made %d times, want 1", n)
	}
	pb2, err := publishRTMP(pubCtx, t, base+"/b#two")
	if err != nil {
		t.Fatalf("publishing to the reloaded pipeline: %v", err)
	}
	waitFor(t, "the reloaded pipeline's sink", func() bool { in := sinkB.all(); return len(in) == 2 && in[1].frames.Load() > 5 })
	if !pa.connected() || !pb2.connected() {
		t.Error("a publisher was disconnected")
	}
	stop()
	cancelPubs()
	<-pa.done
	<-pb2.done
}

// TestRTMPHubRouting: the route table, without a network. A publish goes
// to its application's route (or "*"), at the route's path template, with
// the route's Linger and Replace; a second route of one application is
// refused permanently; a route's Keys decide, and with the relay's auth
// on, a key they do not allow needs the public prefix (or a token).
func TestRTMPHubRouting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := newRTMPHub(slog.New(slog.DiscardHandler))
	origin := moq.NewOrigin()
	defer origin.Close()
	p := sdk.NewPublisher(origin, sdk.PublisherOptions{})
	defer p.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	routes := []RTMPRoute{
		{App: "live", PathTemplate: "in/{key}", Linger: time.Second, Replace: true},
		{App: "studio", Keys: []string{"s3cret"}},
		{App: "*", PathTemplate: "other/{app}-{key}"},
	}
	for _, rt := range routes {
		wg.Go(func() { _ = h.Route(ctx, rt, p) })
	}
	waitFor(t, "the routes", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.routes) == 3 })
	if err := h.Route(ctx, RTMPRoute{App: "live"}, p); !sdk.IsPermanent(err) {
		t.Errorf("a second route of live: %v, want a permanent error", err)
	}

	route := func(app, key string, query url.Values) (string, error) {
		pr, err := h.route(rtmp.PublishRequest{App: app, Key: key, Query: query})
		if err == nil && pr.Publisher != p {
			t.Errorf("%s/%s: routed to another publisher", app, key)
		}
		return pr.Path, err
	}
	for _, c := range []struct{ app, key, path, err string }{
		{"live", "cam", "in/cam", ""},
		{"studio", "s3cret", "studio/s3cret", ""},
		{"studio", "guess", "", "stream key not allowed"},
		{"else", "x", "other/else-x", ""},
	} {
		path, err := route(c.app, c.key, nil)
		if path != c.path || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s/%s: %q, %v; want %q, %q", c.app, c.key, path, err, c.path, c.err)
		}
	}
	if pr, _ := h.route(rtmp.PublishRequest{App: "live", Key: "cam"}); pr.Linger != time.Second || !pr.Replace || pr.Context != ctx {
		t.Errorf("live's route: %+v", pr)
	}

	public := "in"
	az, err := authOf(ServerConfig{Auth: AuthConfig{Public: &public}})
	if err != nil {
		t.Fatal(err)
	}
	h.setAuth(az)
	if path, err := route("live", "cam", nil); err != nil || path != "in/cam" {
		t.Errorf("a path under the public prefix: %q, %v", path, err)
	}
	if _, err := route("else", "x", nil); err == nil || !strings.Contains(err.Error(), "outside the public prefix") {
		t.Errorf("a path outside the public prefix: %v", err)
	}
	if _, err := route("else", "x", url.Values{"jwt": {"eyJhbGciOiJIUzI1NiJ9.e30.sig"}}); err == nil {
		t.Error("an unverifiable token was accepted")
	}
	if path, err := route("studio", "s3cret", nil); err != nil || path != "studio/s3cret" {
		t.Errorf("a route key with auth on: %q, %v", path, err)
	}
	cancel()
	wg.Wait()
	if _, err := route("live", "cam", nil); err == nil || !strings.Contains(err.Error(), "no pipeline takes") {
		t.Errorf("after the routes ended: %v", err)
	}
}

// TestReloadRTMPSection: a changed "rtmp:" section restarts the
// listeners alone: their publishers are disconnected and come back on the
// new listener to the same, never restarted, pipeline; without the
// section nothing listens.
func TestReloadRTMPSection(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	sink := &recOpts{}
	p := routePipeline("ingest", "live", sink)
	r, _ := startRunner(t, &Config{RTMP: &RTMPConfig{Listen: "127.0.0.1:0"}, Pipelines: []*Pipeline{p}}, newEvents())
	waitFor(t, "the route", func() bool { return r.Ready() == nil })
	pubCtx, cancelPubs := context.WithCancel(ctx)
	defer cancelPubs()
	first, err := publishRTMP(pubCtx, t, "rtmp://"+r.RTMPAddrs()[0]+"/live#cam")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "frames", func() bool { return sink.frames() > 5 })

	if err := r.Reload(&Config{RTMP: &RTMPConfig{Listen: "127.0.0.1:0", MaxConns: 5}, Pipelines: []*Pipeline{p}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the publisher disconnected", func() bool { return !first.connected() })
	second, err := publishRTMP(pubCtx, t, "rtmp://"+r.RTMPAddrs()[0]+"/live#cam")
	if err != nil {
		t.Fatalf("publishing to the new listener: %v", err)
	}
	waitFor(t, "frames through the new listener", func() bool { in := sink.all(); return len(in) == 2 && in[1].frames.Load() > 5 })
	if st := statusOf(r, "ingest"); st.Restarts != 0 || st.State != StateRunning {
		t.Errorf("the pipeline was disturbed: %+v", st)
	}

	if err := r.Reload(&Config{Pipelines: []*Pipeline{p}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the publisher disconnected", func() bool { return !second.connected() })
	if addrs := r.RTMPAddrs(); len(addrs) != 0 {
		t.Errorf("still listening on %v without an rtmp section", addrs)
	}
	cancelPubs()
	<-first.done
	<-second.done
}

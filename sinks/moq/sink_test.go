package moq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/internal/testrelay"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/protocol/auth"
	"github.com/moqbridge/moqbridge/sdk"
)

const framesPerGroup = 3

func frameBytes(seq uint64, i int) []byte { return fmt.Appendf(nil, "group%d/frame%d", seq, i) }

// localBroadcast is a broadcast in a local Origin written by a goroutine
// that never waits for a reader: a catalog.json track, so that the SDK
// wiring takes it, and track "t" with a group of framesPerGroup frames
// every period.
type localBroadcast struct {
	origin  *moq.Origin
	bw      *moq.BroadcastWriter
	written atomic.Uint64 // groups written
	stop    func()
}

func startLocal(t *testing.T, ctx context.Context, path string, period time.Duration) *localBroadcast {
	t.Helper()
	l := &localBroadcast{origin: moq.NewOrigin(), bw: moq.NewBroadcast()}
	cat, err := l.bw.CreateTrack(sdk.CatalogTrackName, sdk.PriorityCatalog)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := cat.AppendGroup()
	_ = g.WriteFrame([]byte(`{}`))
	_ = g.Close()
	tw, err := l.bw.CreateTrack("t", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.origin.Publish(path, l.bw.Reader()); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			g, err := tw.AppendGroup()
			if err != nil {
				return
			}
			for i := range framesPerGroup {
				_ = g.WriteFrame(frameBytes(g.Sequence(), i))
			}
			_ = g.Close()
			l.written.Add(1)
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	l.stop = func() {
		cancel()
		wg.Wait()
		_ = l.bw.Close()
		l.origin.Close()
	}
	t.Cleanup(l.stop)
	return l
}

// receivedGroup is a group a subscriber on the relay read whole.
type receivedGroup struct {
	seq      uint64
	complete bool
}

// subscribe follows track t of the broadcast at path on the relay through
// a reconnecting client, finding the broadcast again whenever it comes
// back, and sends every group it reads, checking each frame's bytes.
func subscribe(t *testing.T, ctx context.Context, relay *testrelay.Relay, path string) <-chan receivedGroup {
	t.Helper()
	consume := moq.NewOrigin()
	client, err := protocol.Connect(ctx, relay.URL(), append(relay.Dial(), protocol.WithConsume(consume), protocol.WithAnnounceInterest(path),
		protocol.WithReconnect(protocol.Reconnect{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond}))...)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan receivedGroup, 1000)
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = client.Close()
		consume.Close()
	})
	wg.Go(func() {
		ann := consume.Announced(path)
		defer ann.Close()
		for {
			a, err := ann.Next(rctx)
			if err != nil {
				return
			}
			if !a.Active {
				continue
			}
			tr, err := a.Broadcast.Subscribe("t", 1)
			if err != nil {
				continue
			}
			for {
				g, err := tr.NextGroup(rctx)
				if err != nil {
					break
				}
				got := receivedGroup{seq: g.Sequence()}
				for i := 0; ; i++ {
					f, err := g.NextFrame(rctx)
					if errors.Is(err, io.EOF) {
						got.complete = i == framesPerGroup
						break
					}
					if err != nil {
						break
					}
					if want := frameBytes(g.Sequence(), i); string(f) != string(want) {
						t.Errorf("frame %q, want %q", f, want)
					}
				}
				g.Close()
				out <- got
			}
			tr.Close()
		}
	})
	return out
}

// TestSinkPushesAcrossRestart: a local broadcast pushed to relay B reaches
// a subscriber there with every group and frame; relay B is killed and
// restarted, the sink reconnects with backoff and groups flow again, and
// the local writer never waited meanwhile.
func TestSinkPushesAcrossRestart(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	relay := testrelay.Start(t)
	local := startLocal(t, ctx, "live/x", 20*time.Millisecond)
	lb := &testkit.LogBuffer{}
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	}()
	sink, err := New(Config{URL: relay.URL(), Path: "pushed/{path}", Dial: relay.Dial(), Backoff: fastBackoff, Origin: local.origin, Logger: lb.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	sinkCtx, stopSink := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sdk.Consume(sinkCtx, local.origin, "live/x", sink, sdk.ConsumeOptions{}) }()
	defer func() {
		stopSink()
		if err := <-done; err != nil {
			t.Errorf("the sink: %v", err)
		}
		if c := sink.Counters(); c.Connected {
			t.Error("Connected after the sink stopped")
		}
	}()

	groups := subscribe(t, ctx, relay, "pushed/live/x")
	var last uint64
	take := func(n int, what string) {
		t.Helper()
		for got := 0; got < n; {
			select {
			case g := <-groups:
				if last != 0 && g.seq <= last {
					t.Fatalf("%s: group %d after %d", what, g.seq, last)
				}
				if got > 0 && g.seq != last+1 {
					t.Fatalf("%s: group %d after %d: groups lost", what, g.seq, last)
				}
				last = g.seq
				if !g.complete {
					continue
				}
				got++
			case <-ctx.Done():
				t.Fatalf("%s: %d of %d groups", what, got, n)
			}
		}
	}
	take(10, "before the restart")
	if c := sink.Counters(); !c.Connected || c.Reconnects != 0 || c.DroppedGroups != 0 {
		t.Errorf("counters before the restart: %+v", c)
	}
	relay.Stop()
	// The writer goes on while nothing takes the broadcast anywhere.
	before := local.written.Load()
	for local.written.Load() < before+5 {
		select {
		case <-ctx.Done():
			t.Fatal("the local writer stalled while the relay was down")
		case <-time.After(10 * time.Millisecond):
		}
	}
	relay.Restart()
	take(10, "after the restart")
	if c := sink.Counters(); !c.Connected || c.Reconnects < 1 {
		t.Errorf("counters after the restart: %+v, want connected after a reconnection", c)
	}
	if !strings.Contains(lb.String(), "moq reconnected") {
		t.Error("no reconnection logged")
	}
}

// TestSinkEndsWithItsBroadcast: Forward returns nil once the local
// broadcast ends.
func TestSinkEndsWithItsBroadcast(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	relay := testrelay.Start(t)
	local := startLocal(t, ctx, "live/y", 20*time.Millisecond)
	sink, err := New(Config{URL: relay.URL(), Dial: relay.Dial(), Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sink.Forward(ctx, local.bw.Reader(), "live/y") }()
	if _, err := sdk.WaitBroadcast(ctx, relay.Origin(), "live/y", 0); err != nil {
		t.Fatalf("the broadcast never reached the relay at its own path: %v", err)
	}
	local.stop()
	if err := <-done; err != nil {
		t.Errorf("Forward after the broadcast ended: %v", err)
	}
}

// TestSinkPermanentErrors: a malformed URL, an untrusted certificate and a
// path that is not valid are permanent errors.
func TestSinkPermanentErrors(t *testing.T) {
	if _, err := New(Config{URL: "relay.example:4443"}); !sdk.IsPermanent(err) {
		t.Errorf("a URL without scheme: %v, want a permanent error", err)
	}
	ctx := testkit.Context(t, 30*time.Second)
	relay := testrelay.Start(t)
	local := startLocal(t, ctx, "live/z", 20*time.Millisecond)
	sink, err := New(Config{URL: relay.URL(), Dial: []protocol.DialOption{protocol.WithFingerprint([32]byte{1})}, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Forward(ctx, local.bw.Reader(), "live/z"); !sdk.IsPermanent(err) || !protocol.IsCertificateError(err) {
		t.Errorf("an untrusted certificate: %v, want a permanent certificate error", err)
	}
	sink, err = New(Config{URL: relay.URL(), Path: "a/../{path}"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Forward(ctx, local.bw.Reader(), "live/z"); !sdk.IsPermanent(err) {
		t.Errorf("an invalid remote path: %v, want a permanent error", err)
	}
}

// TestSinkRefusedToken: a relay that refuses the connection's token is a
// permanent error, not something to retry.
func TestSinkRefusedToken(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	key, err := auth.GenerateKey("HS256")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.jwk")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	az, err := auth.New(auth.Config{KeyFiles: []string{keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := protocol.NewServer(protocol.ServerConfig{Addr: "127.0.0.1:0", Auth: az})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() {
		_ = srv.Close()
		<-served
	}()
	local := startLocal(t, ctx, "live/z", 20*time.Millisecond)
	sink, err := New(Config{URL: fmt.Sprintf("https://%s/?jwt=not-a-token", srv.Addr()), Dial: []protocol.DialOption{protocol.WithFingerprint(srv.Fingerprint())}, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	err = sink.Forward(ctx, local.bw.Reader(), "live/z")
	if !sdk.IsPermanent(err) {
		t.Errorf("a refused token: %v, want a permanent error", err)
	}
	if strings.Contains(err.Error(), "not-a-token") || !strings.Contains(err.Error(), "jwt=REDACTED") {
		t.Errorf("the error %q shows the token", err)
	}
}

// TestSinkTransports: the sink pushes over WebTransport and WebSocket as
// over raw QUIC.
func TestSinkTransports(t *testing.T) {
	for _, transport := range []string{"webtransport", "websocket"} {
		t.Run(transport, func(t *testing.T) {
			ctx := testkit.Context(t, 30*time.Second)
			relay := testrelay.Start(t)
			local := startLocal(t, ctx, "live/x", 20*time.Millisecond)
			sink, err := New(Config{URL: relay.URLFor(transport), Dial: relay.Dial(), Backoff: fastBackoff})
			if err != nil {
				t.Fatal(err)
			}
			fctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- sink.Forward(fctx, local.bw.Reader(), "live/x") }()
			defer func() {
				stop()
				if err := <-done; err != nil {
					t.Errorf("Forward: %v", err)
				}
			}()
			groups := subscribe(t, ctx, relay, "live/x")
			for got := 0; got < 3; {
				select {
				case g := <-groups:
					if g.complete {
						got++
					}
				case <-ctx.Done():
					t.Fatal("no groups through the relay")
				}
			}
		})
	}
}

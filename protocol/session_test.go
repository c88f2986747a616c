package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// testServer starts a relay on loopback and returns it with its address.
func testServer(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.TCP == TCPOff {
		cfg.TCP = TCPHTTP
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

// transports are the dial paths of the matrix: raw QUIC, WebTransport, the
// WebSocket fallback (qmux-00), and development mode (the fingerprint
// fetched over HTTP, then WebTransport).
var transports = []string{"quic", "webtransport", "websocket", "http"}

func serverURL(srv *Server, kind, root string) string {
	port := srv.Addr().Port
	switch kind {
	case "quic":
		return fmt.Sprintf("moql://127.0.0.1:%d", port)
	case "websocket":
		return fmt.Sprintf("ws://127.0.0.1:%d/%s", port, root)
	case "http":
		return fmt.Sprintf("http://127.0.0.1:%d/%s", port, root)
	default:
		return fmt.Sprintf("https://127.0.0.1:%d/%s", port, root)
	}
}

func dialTest(t *testing.T, ctx context.Context, srv *Server, kind string, v Version, opts ...DialOption) *Session {
	t.Helper()
	opts = append([]DialOption{WithVersions(v)}, opts...)
	if kind != "http" {
		// Development mode learns the fingerprint by itself.
		opts = append(opts, WithFingerprint(srv.Fingerprint()))
	}
	sess, err := Dial(ctx, serverURL(srv, kind, ""), opts...)
	if err != nil {
		t.Fatalf("Dial %s %s: %v", kind, v, err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	if sess.Version() != v {
		t.Fatalf("negotiated %s, want %s", sess.Version(), v)
	}
	return sess
}

// nextAnnouncement waits for the next announcement or fails the test.
func nextAnnouncement(t *testing.T, ctx context.Context, a *moq.AnnouncementReader) moq.Announcement {
	t.Helper()
	an, err := a.Next(ctx)
	if err != nil {
		t.Fatalf("announced: %v", err)
	}
	return an
}

func frameBytes(group, frame int) []byte {
	// Distinct, size-varying payloads so misrouted or truncated frames show.
	n := 1 + (group*31+frame*17)%3000
	p := bytes.Repeat([]byte{byte(group), byte(frame)}, n)
	return p[:n]
}

// TestSessionMatrix runs publish → relay → subscribe for every version over
// every transport: announce discovery, subscribe, byte-exact frames across
// many groups, unsubscribe, the publisher ending the broadcast, and a
// session close with a code.
func TestSessionMatrix(t *testing.T) {
	for _, kind := range transports {
		for _, v := range AllVersions {
			t.Run(kind+"/"+v.String(), func(t *testing.T) {
				testPublishSubscribe(t, kind, v)
			})
		}
	}
}

func testPublishSubscribe(t *testing.T, kind string, v Version) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{})

	pubOrigin := moq.NewOrigin()
	defer pubOrigin.Close()
	bw := moq.NewBroadcast()
	video, err := bw.CreateTrack("video", 200)
	if err != nil {
		t.Fatal(err)
	}
	if err := pubOrigin.Publish("demo/bbb", bw.Reader()); err != nil {
		t.Fatal(err)
	}
	pub := dialTest(t, ctx, srv, kind, v, WithPublish(pubOrigin))

	subOrigin := moq.NewOrigin()
	defer subOrigin.Close()
	sub := dialTest(t, ctx, srv, kind, v, WithConsume(subOrigin))
	ann := subOrigin.Announced("demo")
	defer ann.Close()
	a := nextAnnouncement(t, ctx, ann)
	if a.Path != "demo/bbb" || !a.Active {
		t.Fatalf("first announcement %+v, want demo/bbb active", a)
	}

	// Group 0 exists before the subscription: the subscriber starts there.
	const groups, frames = 20, 10
	writeGroup := func(g int) {
		gw, err := video.AppendGroup()
		if err != nil {
			t.Fatal(err)
		}
		for f := 0; f < frames; f++ {
			if err := gw.WriteFrame(frameBytes(g, f)); err != nil {
				t.Fatal(err)
			}
		}
		if err := gw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	writeGroup(0)
	tr, err := a.Broadcast.Subscribe("video", 200)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	readGroup := func(want int) {
		t.Helper()
		g, err := tr.NextGroup(ctx)
		if err != nil {
			t.Fatalf("group %d: %v", want, err)
		}
		if g.Sequence() != uint64(want) {
			t.Fatalf("got group %d, want %d", g.Sequence(), want)
		}
		for f := 0; f < frames; f++ {
			p, err := g.NextFrame(ctx)
			if err != nil {
				t.Fatalf("group %d frame %d: %v", want, f, err)
			}
			if !bytes.Equal(p, frameBytes(want, f)) {
				t.Fatalf("group %d frame %d: %d bytes differ from the %d sent", want, f, len(p), len(frameBytes(want, f)))
			}
		}
		if _, err := g.NextFrame(ctx); !errors.Is(err, io.EOF) {
			t.Fatalf("group %d: after the last frame got %v, want io.EOF", want, err)
		}
		g.Close()
	}
	readGroup(0)
	for g := 1; g < groups; g++ {
		writeGroup(g)
		readGroup(g)
	}
	if n := pub.Stats().SubscriptionsServed; n != 1 {
		t.Errorf("publisher served %d subscriptions, want 1", n)
	}

	// Unsubscribe: the relay's last reader goes, so the relay ends its
	// upstream subscription and the publisher's track has no reader left.
	tr.Close()
	select {
	case <-video.Unused():
	case <-ctx.Done():
		t.Fatal("publisher track still in use after the only subscriber left")
	}

	// The publisher ends the broadcast: the subscriber sees it go.
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	a = nextAnnouncement(t, ctx, ann)
	if a.Path != "demo/bbb" || a.Active {
		t.Fatalf("announcement %+v, want demo/bbb ended", a)
	}

	// Session close with a code reaches the other side.
	var relaySide *Session
	for _, s := range srv.Sessions() {
		if s.Stats().SubscriptionsServed > 0 {
			relaySide = s // the session serving the subscriber
		}
	}
	if relaySide == nil {
		t.Fatal("relay has no session serving the subscriber")
	}
	if err := sub.CloseWithError(42, "done watching"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-relaySide.Done():
	case <-ctx.Done():
		t.Fatal("relay session still open after the client closed")
	}
	var se *SessionError
	if err := relaySide.Err(); !errors.As(err, &se) || se.Code != 42 || !se.Remote {
		t.Fatalf("relay session ended with %v, want remote code 42", err)
	}
}

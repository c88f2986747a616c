package protocol

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// TestSessionBudget: a reservation takes from the session's budget and the
// shared one together, or from neither, and says which one is exhausted.
func TestSessionBudget(t *testing.T) {
	shared := newByteBudget("server", 300)
	a := sessionBudget{own: newByteBudget("session", 200), shared: shared}
	b := sessionBudget{own: newByteBudget("session", 200), shared: shared}
	if err := a.Reserve(150); err != nil {
		t.Fatal(err)
	}
	if err := a.Reserve(100); err == nil {
		t.Fatal("session budget of 200 gave 250")
	}
	if err := b.Reserve(150); err != nil {
		t.Fatal(err)
	}
	err := b.Reserve(10)
	var we wireCoded
	if !errors.As(err, &we) || we.code != wire.CodeBoundsExceeded {
		t.Fatalf("shared budget exhausted: %v, want BoundsExceeded", err)
	}
	if got := b.own.used.Load(); got != 150 {
		t.Fatalf("a refused shared reservation left %d bytes in the session budget, want 150", got)
	}
	a.Release(150)
	if err := b.Reserve(50); err != nil {
		t.Fatalf("after the other session released: %v", err)
	}
	b.Release(200)
	if a.own.used.Load() != 0 || b.own.used.Load() != 0 || shared.used.Load() != 0 {
		t.Fatal("bytes left reserved after every release")
	}

	// An ended session gives back what its streams did not.
	if err := a.Reserve(120); err != nil {
		t.Fatal(err)
	}
	a.settle()
	if a.own.used.Load() != 0 || shared.used.Load() != 0 {
		t.Fatalf("after settle: session %d, shared %d bytes reserved", a.own.used.Load(), shared.used.Load())
	}
}

// logLines collects the messages a logger writes.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.lines = append(l.lines, r.Message)
	l.mu.Unlock()
	return nil
}

func (l *logLines) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.lines {
		if m == msg {
			n++
		}
	}
	return n
}

// TestBufferBudgetResets: messages and frames that grow past the session's
// buffer budget reset their stream with BoundsExceeded, one log line a
// second covers them all, every reserved byte comes back, and the session
// keeps working.
func TestBufferBudgetResets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const budget = 256 << 10
	logs := &logLines{}
	limits := Limits{MaxSessionBuffer: budget, MaxMessageSize: 2 << 20}
	srv := testServer(t, ServerConfig{Limits: limits, Logger: slog.New(logs)})

	// Control messages: each declares 1 MiB and sends 300 KiB of it.
	const streams = 5
	conn := rawDial(t, ctx, srv)
	body := make([]byte, 300<<10)
	for range streams {
		str, err := conn.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		msg := wire.AppendVarint(wire.AppendStreamType(nil, wire.StreamSubscribe), 1<<20)
		go func() { _, _ = str.Write(append(msg, body...)) }()
		expectReset(t, "subscribe message beyond the session budget", str, wire.CodeBoundsExceeded)
	}
	if n := logs.count("moq stream rejected"); n < 1 || n > 2 {
		t.Errorf("%d streams rejected within a second or two logged %d lines, want 1 or 2", streams, n)
	}

	// A frame: the relay subscribes to the peer, which declares a 1 MiB
	// frame on a valid group stream and sends 300 KiB of it.
	origin := moq.NewOrigin()
	defer origin.Close()
	bw := moq.NewBroadcast()
	if _, err := bw.CreateTrack("video", 0); err != nil {
		t.Fatal(err)
	}
	if err := origin.Publish("live/big", bw.Reader()); err != nil {
		t.Fatal(err)
	}
	pub := dialTest(t, ctx, srv, "quic", Lite04, WithPublish(origin))
	relayTrack, err := waitAnnounced(t, ctx, srv.Origin(), "live/big").Subscribe("video", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer relayTrack.Close()
	for pub.Stats().SubscriptionsServed == 0 {
		if ctx.Err() != nil {
			t.Fatal("the relay never subscribed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	uni, err := pub.conn.OpenUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := wire.AppendGroupHeader(nil, wire.Group{SubscribeID: 0, Sequence: 7})
	msg = wire.AppendFrameHeader(msg, 1<<20)
	go func() { _, _ = uni.Write(append(msg, body...)) }()
	select {
	case <-uni.Context().Done():
	case <-ctx.Done():
		t.Fatal("the relay kept reading a frame beyond its budget")
	}
	var se *transport.StreamError
	if cause := context.Cause(uni.Context()); !errors.As(cause, &se) || se.Code != uint64(wire.CodeBoundsExceeded) {
		t.Errorf("frame beyond the session budget: stream ended with %v, want a stop with BoundsExceeded", cause)
	}

	// Everything reserved comes back, and the sessions keep working.
	for _, sess := range srv.Sessions() {
		for sess.mem.own.used.Load() != 0 {
			if ctx.Err() != nil {
				t.Fatalf("%d bytes still reserved by a relay session", sess.mem.own.used.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := sess.Err(); err != nil {
			t.Errorf("a relay session ended: %v", err)
		}
	}
	r := wire.NewReader(rawSubscribe(t, ctx, conn, 9, "live/big", "video"))
	if typ, err := r.ReadVarint(); err != nil || typ != wire.ResponseOK {
		t.Fatalf("subscribe after the resets: response %d, err %v", typ, err)
	}
}

// TestServerBufferBudgetShared: the server's buffer budget is one for all
// its sessions: two peers each within their session budget, together over
// the server's, get the second one's stream reset, and the budget comes
// back once the first one's stream ends.
func TestServerBufferBudgetShared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limits := Limits{MaxSessionBuffer: 256 << 10, MaxServerBuffer: 300 << 10, MaxMessageSize: 2 << 20}
	srv := testServer(t, ServerConfig{Limits: limits})

	// Each peer declares a 1 MiB SUBSCRIBE and sends 200 KiB of it.
	partial := append(wire.AppendVarint(wire.AppendStreamType(nil, wire.StreamSubscribe), 1<<20), make([]byte, 200<<10)...)
	first, err := rawDial(t, ctx, srv).OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Write(partial); err != nil {
		t.Fatal(err)
	}
	for srv.buffers.used.Load() < 200<<10 {
		if ctx.Err() != nil {
			t.Fatalf("the relay holds %d bytes of the first peer's message, want 200 KiB", srv.buffers.used.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	second, err := rawDial(t, ctx, srv).OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = second.Write(partial) }()
	expectReset(t, "a second session's message beyond the server budget", second, wire.CodeBoundsExceeded)

	first.CancelWrite(0)
	for srv.buffers.used.Load() != 0 {
		if ctx.Err() != nil {
			t.Fatalf("%d bytes of the server budget never came back", srv.buffers.used.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

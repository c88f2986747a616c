package protocol

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// expectReset reads str to its end and requires a reset with code.
func expectReset(t *testing.T, what string, str transport.Stream, code ErrorCode) {
	t.Helper()
	_ = str.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(str)
	var se *transport.StreamError
	if !errors.As(err, &se) || se.Code != uint64(code) {
		t.Errorf("%s: stream ended with %v, want a reset with %s (%d)", what, err, code, code)
	}
}

// TestLimits: each limit resets only the offending stream, with the
// reference error code, and the session keeps working.
func TestLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{Limits: Limits{MaxPathLength: 64, MaxSubscriptions: 2, MaxFrameSize: 1024}})
	_, _, tw := publishTrack(t, ctx, srv, "quic", "live/limits", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/limits")
	gw, _ := tw.AppendGroup()
	_ = gw.WriteFrame([]byte("ok"))
	_ = gw.Close()
	conn := rawDial(t, ctx, srv)
	sessions := relaySessions(t, ctx, srv, 2) // the publisher's and conn's

	long := strings.Repeat("x", 65)
	expectReset(t, "long broadcast path", rawSubscribe(t, ctx, conn, 0, long, "video"), wire.CodeBoundsExceeded)
	expectReset(t, "long track name", rawSubscribe(t, ctx, conn, 1, "live/limits", long), wire.CodeBoundsExceeded)
	expectReset(t, "unknown broadcast", rawSubscribe(t, ctx, conn, 2, "live/none", "video"), wire.CodeNotFound)
	expectReset(t, "unknown track", rawSubscribe(t, ctx, conn, 3, "live/limits", "audio"), wire.CodeNotFound)

	// Two subscriptions are allowed; the third is refused.
	a := rawSubscribe(t, ctx, conn, 4, "live/limits", "video")
	b := rawSubscribe(t, ctx, conn, 5, "live/limits", "video")
	for _, s := range []transport.Stream{a, b} {
		r := wire.NewReader(s)
		if typ, err := r.ReadVarint(); err != nil || typ != wire.ResponseOK {
			t.Fatalf("subscription within the limit: response %d, err %v", typ, err)
		}
	}
	expectReset(t, "third subscription", rawSubscribe(t, ctx, conn, 6, "live/limits", "video"), wire.CodeBoundsExceeded)

	// An oversized control message.
	str, err := conn.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = str.Write(wire.AppendVarint(wire.AppendStreamType(nil, wire.StreamSubscribe), 2<<20))
	expectReset(t, "2 MiB subscribe message", str, wire.CodeBoundsExceeded)

	checkSessionsUp(t, srv, sessions, "after refused requests")
}

// TestFrameSizeLimit: a publisher sending a frame over the limit has that
// group aborted; the subscriber sees an error on that group, not a hang, and
// later groups still flow.
func TestFrameSizeLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{Limits: Limits{MaxFrameSize: 1024}})
	_, _, tw := publishTrack(t, ctx, srv, "quic", "live/big", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/big")
	sub := dialTest(t, ctx, srv, "quic", Lite04)
	g0, _ := tw.AppendGroup()
	_ = g0.WriteFrame([]byte("small"))
	tr, err := sub.Consume("live/big").Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	gr, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := gr.NextFrame(ctx); err != nil || string(p) != "small" {
		t.Fatalf("first frame %q, %v", p, err)
	}
	_ = g0.WriteFrame(make([]byte, 4096))
	if _, err := gr.NextFrame(ctx); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("oversized frame: got %v, want the group aborted", err)
	}
	_ = g0.Close()
	g1, _ := tw.AppendGroup()
	_ = g1.WriteFrame([]byte("after"))
	_ = g1.Close()
	gr, err = tr.NextGroup(ctx)
	if err != nil || gr.Sequence() != 1 {
		t.Fatalf("next group %v, %v; want 1", gr, err)
	}
	if p, err := gr.NextFrame(ctx); err != nil || string(p) != "after" {
		t.Fatalf("frame after the oversized one: %q, %v", p, err)
	}
}

// TestGroupSizeLimit: a publisher whose group goes on past MaxGroupSize
// (a stream of frames that never ends) has it aborted at the limit, so the
// relay holds no more of it; later groups still flow.
func TestGroupSizeLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{Limits: Limits{MaxGroupSize: 8 << 10, MaxFrameSize: 1 << 10}})
	_, _, tw := publishTrack(t, ctx, srv, "quic", "live/long", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/long")
	sub := dialTest(t, ctx, srv, "quic", Lite04)
	tr, err := sub.Consume("live/long").Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	g0, _ := tw.AppendGroup()
	frame := make([]byte, 1<<10)
	for range 8 {
		_ = g0.WriteFrame(frame) // exactly the limit
	}
	gr, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if _, err := gr.NextFrame(ctx); err != nil {
			t.Fatalf("frame %d within the group limit: %v", i, err)
		}
	}
	_ = g0.WriteFrame(frame) // one past it
	if _, err := gr.NextFrame(ctx); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("a group past the limit: got %v, want it aborted", err)
	}
	_ = g0.Close()
	g1, _ := tw.AppendGroup()
	_ = g1.WriteFrame([]byte("after"))
	_ = g1.Close()
	if gr, err = tr.NextGroup(ctx); err != nil || gr.Sequence() != 1 {
		t.Fatalf("next group %v, %v; want 1", gr, err)
	}
	if p, err := gr.NextFrame(ctx); err != nil || string(p) != "after" {
		t.Fatalf("frame after the long group: %q, %v", p, err)
	}
}

// TestExpiredGroupStopped: a group still arriving after the relay's cache
// let it go for its budget is aborted and its stream stopped with Old, so
// its frames are not held outside every budget; the newer groups flow.
func TestExpiredGroupStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{Cache: moq.CacheConfig{MaxBytes: 64 << 10}})
	_, _, tw := publishTrack(t, ctx, srv, "quic", "live/old", "video")
	tr, err := waitAnnounced(t, ctx, srv.Origin(), "live/old").Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	g0, _ := tw.AppendGroup()
	_ = g0.WriteFrame([]byte("first"))
	gr0, err := tr.NextGroup(ctx)
	if err != nil || gr0.Sequence() != 0 {
		t.Fatalf("group 0: %v, %v", gr0, err)
	}
	if p, err := gr0.NextFrame(ctx); err != nil || string(p) != "first" {
		t.Fatalf("first frame %q, %v", p, err)
	}
	// A newer group larger than the relay's cache budget pushes group 0,
	// still open, out of it.
	g1, _ := tw.AppendGroup()
	for range 8 {
		_ = g1.WriteFrame(make([]byte, 16<<10))
	}
	_ = g1.Close()
	gr1, err := tr.NextGroup(ctx)
	if err != nil || gr1.Sequence() != 1 {
		t.Fatalf("group 1: %v, %v", gr1, err)
	}
	for range 8 {
		if _, err := gr1.NextFrame(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Group 0 goes on: the relay stops it.
	_ = g0.WriteFrame([]byte("late"))
	for {
		_, err := gr0.NextFrame(ctx)
		if err == nil {
			continue
		}
		if !errors.Is(err, moq.ErrGroupDropped) {
			t.Fatalf("group 0 after the cache let it go: %v, want moq.ErrGroupDropped", err)
		}
		break
	}
	_ = g0.Close()
	// The relay counts the stream it stopped right after aborting the group.
	for {
		var rejected uint64
		for _, sess := range srv.Sessions() {
			rejected += sess.Stats().StreamsRejected
		}
		if rejected > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the relay did not stop the expired group's stream")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPublisherGoesAway: when a publishing client disconnects, its
// broadcasts end cleanly for readers on the other side of the relay.
func TestPublisherGoesAway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{})
	pub, _, tw := publishTrack(t, ctx, srv, "webtransport", "live/gone", "video")
	subOrigin := moq.NewOrigin()
	defer subOrigin.Close()
	dialTest(t, ctx, srv, "quic", Lite02, WithConsume(subOrigin))
	b := waitAnnounced(t, ctx, subOrigin, "live/gone")
	ann := subOrigin.Announced("live")
	defer ann.Close()
	if a := nextAnnouncement(t, ctx, ann); !a.Active {
		t.Fatalf("want the broadcast active first, got %+v", a)
	}
	gw, _ := tw.AppendGroup()
	_ = gw.WriteFrame([]byte("last words"))
	tr, err := b.Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	gr, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := gr.NextFrame(ctx); err != nil || string(p) != "last words" {
		t.Fatalf("frame %q, %v", p, err)
	}
	_ = pub.Close()
	if a := nextAnnouncement(t, ctx, ann); a.Active || a.Path != "live/gone" {
		t.Fatalf("after the publisher left: %+v, want live/gone ended", a)
	}
	select {
	case <-b.Done():
	case <-ctx.Done():
		t.Fatal("broadcast still live after its publisher left")
	}
	if _, err := gr.NextFrame(ctx); err == nil {
		t.Fatal("the unfinished group still reads after its publisher left")
	}
	if _, err := tr.NextGroup(ctx); err == nil {
		t.Fatal("the track still delivers after its publisher left")
	}
}

// TestProbe: on Lite04 the client opens the probe stream and the server
// reports its bandwidth and RTT estimates from the QUIC connection.
func TestProbe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{})
	// QUIC-based transports only: the WebSocket fallback has no congestion
	// controller to report from.
	for _, kind := range []string{"quic", "webtransport", "http"} {
		sess := dialTest(t, ctx, srv, kind, Lite04)
		for {
			if bitrate, rtt := sess.Bandwidth(); bitrate > 0 && rtt > 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: no PROBE with bitrate and RTT arrived", kind)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// TestGoaway: a Lite04 GOAWAY is read and answered with FIN; the session
// stays up.
func TestGoaway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{})
	conn := rawDial(t, ctx, srv)
	sessions := relaySessions(t, ctx, srv, 1)
	str, err := conn.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = str.Write(wire.AppendGoaway(wire.AppendStreamType(nil, wire.StreamGoaway), wire.Goaway{URI: "https://elsewhere.example/"}))
	_ = str.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(str); err != nil {
		t.Fatalf("goaway stream: %v, want a FIN", err)
	}
	checkSessionsUp(t, srv, sessions, "after GOAWAY")
}

// TestVersionMismatch: a legacy client offering only versions the server
// does not accept is refused with the Version code.
func TestVersionMismatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{Versions: []Version{Lite04, Lite02}})
	_, err := Dial(ctx, serverURL(srv, "quic", ""), WithFingerprint(srv.Fingerprint()), WithVersions(Lite01))
	var se *SessionError
	if !errors.As(err, &se) || se.Code != uint64(wire.CodeVersion) {
		t.Fatalf("dial offering only Lite01: %v, want a session closed with code %d", err, wire.CodeVersion)
	}
}

// TestProbeChanged: a PROBE is worth sending on a 25 % move, but not for
// millisecond jitter of a short RTT.
func TestProbeChanged(t *testing.T) {
	for _, c := range []struct {
		last, now wire.Probe
		want      bool
	}{
		{wire.Probe{}, wire.Probe{BitrateBps: 1000}, true},
		{wire.Probe{BitrateBps: 1000, RTTms: 2}, wire.Probe{BitrateBps: 1000, RTTms: 3}, false},
		{wire.Probe{BitrateBps: 1000, RTTms: 2}, wire.Probe{BitrateBps: 1000, RTTms: 9}, true},
		{wire.Probe{BitrateBps: 1000, RTTms: 40}, wire.Probe{BitrateBps: 1200, RTTms: 40}, false},
		{wire.Probe{BitrateBps: 1000, RTTms: 40}, wire.Probe{BitrateBps: 700, RTTms: 40}, true},
	} {
		if got := probeChanged(c.last, c.now); got != c.want {
			t.Errorf("probeChanged(%+v, %+v) = %v, want %v", c.last, c.now, got, c.want)
		}
	}
}

// TestProbeDue: the first estimate goes out at once, later moves at most
// every probeQuiet, and an estimate that did not move never.
func TestProbeDue(t *testing.T) {
	first := wire.Probe{BitrateBps: 1000, RTTms: 40}
	moved := wire.Probe{BitrateBps: 300, RTTms: 40}
	for _, c := range []struct {
		name      string
		last, now wire.Probe
		since     time.Duration
		want      bool
	}{
		{"first", wire.Probe{}, first, 0, true},
		{"moved within the quiet time", first, moved, probeQuiet / 2, false},
		{"moved after the quiet time", first, moved, probeQuiet, true},
		{"unchanged after the quiet time", first, first, 10 * probeQuiet, false},
	} {
		if got := probeDue(c.last, c.now, c.since); got != c.want {
			t.Errorf("%s: probeDue = %v, want %v", c.name, got, c.want)
		}
	}
}

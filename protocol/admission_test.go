package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// configuredCert returns a TLS configuration with a certificate, as an
// operator's --cert would give (no generated development certificate).
func configuredCert(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := transport.GenerateSelfSigned([]string{"relay.example", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// dialWithOrigin opens a bare transport session to the relay as a browser
// page at origin would, over WebSocket or WebTransport.
func dialWithOrigin(ctx context.Context, srv *Server, kind, origin string) (transport.Session, error) {
	cfg := transport.DialConfig{
		TLSConfig: transport.PinnedTLSConfig(srv.Fingerprint()),
		Protocols: protocolsFor(AllVersions),
		Header:    http.Header{"Origin": {origin}},
	}
	if kind == "websocket" {
		return transport.DialWebSocket(ctx, serverURL(srv, kind, "room"), cfg)
	}
	return transport.DialWebTransport(ctx, serverURL(srv, kind, "room"), cfg)
}

// TestServerAllowsAnyOriginByDefault: a relay with a configured certificate
// and no origin settings accepts a page from another origin, over
// WebTransport and WebSocket, as the reference relay does.
func TestServerAllowsAnyOriginByDefault(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{TLSConfig: configuredCert(t)})
	for _, kind := range []string{"websocket", "webtransport"} {
		s, err := dialWithOrigin(ctx, srv, kind, "https://player.example")
		if err != nil {
			t.Fatalf("%s from another origin: %v", kind, err)
		}
		_ = s.CloseWithError(0, "")
	}
}

// TestServerAllowedOriginsRestrict: with AllowedOrigins, another origin is
// refused with 403 and a warning that names the origin and the flag to set.
func TestServerAllowedOriginsRestrict(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	logs := &testkit.LogBuffer{}
	srv := testServer(t, ServerConfig{
		TLSConfig:      configuredCert(t),
		AllowedOrigins: []string{"https://app.example"},
		Logger:         slog.New(slog.NewTextHandler(logs, nil)),
	})
	for _, kind := range []string{"websocket", "webtransport"} {
		_, err := dialWithOrigin(ctx, srv, kind, "https://evil.example")
		var he *transport.HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusForbidden {
			t.Fatalf("%s from a refused origin: %v, want HTTP 403", kind, err)
		}
		s, err := dialWithOrigin(ctx, srv, kind, "https://app.example")
		if err != nil {
			t.Fatalf("%s from an allowed origin: %v", kind, err)
		}
		_ = s.CloseWithError(0, "")
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "origin=https://evil.example") || !strings.Contains(out, "--allow-origin") {
		t.Fatalf("no warning naming the origin and --allow-origin:\n%s", out)
	}
}

// TestServerSessionBudgets: the ServerConfig budgets reach the listener;
// a client beyond MaxSessionsPerAddr is refused with BoundsExceeded over raw
// QUIC and 429 over WebSocket, beyond MaxSessions with 503; -1 lifts a
// limit.
func TestServerSessionBudgets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{MaxSessionsPerAddr: 1})
	dialTest(t, ctx, srv, "quic", Lite04)
	waitSessions(t, ctx, srv, 1)

	_, err := Dial(ctx, serverURL(srv, "websocket", ""), WithVersions(Lite04))
	var he *transport.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests {
		t.Fatalf("second session over WebSocket: %v, want HTTP 429", err)
	}
	sess, err := Dial(ctx, serverURL(srv, "quic", ""), WithVersions(Lite04), WithFingerprint(srv.Fingerprint()))
	if err == nil {
		// The refusal follows the handshake; the session ends with it.
		<-sess.Done()
		err = sess.Err()
		_ = sess.Close()
	}
	var se *SessionError
	if !errors.As(err, &se) || se.Code != uint64(wire.CodeBoundsExceeded) || !se.Remote {
		t.Fatalf("second session over raw QUIC: %v, want a close with BoundsExceeded (11)", err)
	}

	// -1: no per-address limit; the relay-wide one still holds.
	unlimited := testServer(t, ServerConfig{MaxSessions: 2, MaxSessionsPerAddr: -1, MaxPendingHandshakes: -1})
	for range 2 {
		dialTest(t, ctx, unlimited, "websocket", Lite04)
	}
	waitSessions(t, ctx, unlimited, 2)
	_, err = Dial(ctx, serverURL(unlimited, "websocket", ""), WithVersions(Lite04))
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("third session on a relay of two: %v, want HTTP 503", err)
	}
}

func TestBudgetDefaults(t *testing.T) {
	for _, c := range []struct{ v, def, want int }{
		{0, 10, 10},
		{-1, 10, 0},
		{7, 10, 7},
	} {
		if got := budget(c.v, c.def); got != c.want {
			t.Errorf("budget(%d, %d) = %d, want %d", c.v, c.def, got, c.want)
		}
	}
}

// waitSessions waits until the server runs n sessions: a client's Dial can
// return before the server has admitted its session.
func waitSessions(t *testing.T, ctx context.Context, srv *Server, n int) {
	t.Helper()
	for len(srv.Sessions()) != n {
		select {
		case <-ctx.Done():
			t.Fatalf("server runs %d sessions, want %d", len(srv.Sessions()), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

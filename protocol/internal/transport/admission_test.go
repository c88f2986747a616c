package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

const testRefusedCode = 11

// startBudgeted runs a listener with budgets, both UDP and plain TCP, and a
// log captured in the returned buffer.
func startBudgeted(t *testing.T, b Budgets, mod func(*ListenConfig)) (*testServer, *testkit.LogBuffer) {
	t.Helper()
	logs := &testkit.LogBuffer{}
	b.RefusedCode = testRefusedCode
	ts := startWS(t, TCPHTTP, func(c *ListenConfig) {
		c.Budgets = b
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		if mod != nil {
			mod(c)
		}
	})
	return ts, logs
}

// dialKind opens a client session of kind (KindQUIC, KindWebTransport or
// KindWebSocket) without waiting for the server side.
func dialKind(ctx context.Context, ts *testServer, kind string) (Session, error) {
	cfg := DialConfig{TLSConfig: PinnedTLSConfig(ts.fp), Protocols: moqProtocols}
	switch kind {
	case KindQUIC:
		return DialQUIC(ctx, ts.addr(), "localhost", cfg)
	case KindWebTransport:
		return DialWebTransport(ctx, ts.url("/"), cfg)
	default:
		return DialWebSocket(ctx, ts.wsURL("/"), cfg)
	}
}

// expectRefused dials kind and checks the refusal: an HTTP status before
// the upgrade, or for raw QUIC a close with testRefusedCode right after the
// handshake.
func expectRefused(t *testing.T, ts *testServer, kind string, status int, reason string) {
	t.Helper()
	ctx := testCtx(t)
	s, err := dialKind(ctx, ts, kind)
	if kind != KindQUIC {
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != status {
			if s != nil {
				_ = s.CloseWithError(0, "")
			}
			t.Fatalf("%s dial: %v, want a refusal with HTTP %d", kind, err, status)
		}
		return
	}
	if err != nil {
		t.Fatalf("quic dial: %v (the refusal comes after the handshake)", err)
	}
	defer s.CloseWithError(0, "")
	select {
	case <-s.Context().Done():
	case <-ctx.Done():
		t.Fatal("raw QUIC session over budget was not closed")
	}
	var se *SessionError
	if err := context.Cause(s.Context()); !errors.As(err, &se) || se.Code != testRefusedCode || !se.Remote || se.Reason != reason {
		t.Fatalf("raw QUIC session over budget ended with %v, want a remote close with code %d %q", err, testRefusedCode, reason)
	}
}

// admitEventually dials kind until the listener admits it (a budget slot
// is given back when the server notices the end of a session, which takes
// a round trip) and returns both ends.
func admitEventually(t *testing.T, ts *testServer, kind string) (client, server Session) {
	t.Helper()
	ctx := testCtx(t)
	for {
		c, err := dialKind(ctx, ts, kind)
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			s, aerr := ts.l.Accept(sctx)
			cancel()
			if aerr == nil {
				t.Cleanup(func() {
					_ = c.CloseWithError(0, "")
					_ = s.CloseWithError(0, "")
				})
				return c, s
			}
			_ = c.CloseWithError(0, "")
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: never admitted: %v", kind, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestBudgetMaxSessions: beyond MaxSessions every kind is refused (503
// before the upgrade, BoundsExceeded for raw QUIC), with a warning in the
// log; a session that ends gives its slot back.
func TestBudgetMaxSessions(t *testing.T) {
	ts, logs := startBudgeted(t, Budgets{MaxSessions: 2}, nil)
	c1, _ := admitEventually(t, ts, KindQUIC)
	admitEventually(t, ts, KindWebSocket)
	for _, kind := range []string{KindQUIC, KindWebTransport, KindWebSocket} {
		expectRefused(t, ts, kind, http.StatusServiceUnavailable, "too many sessions")
	}
	if !strings.Contains(logs.String(), "maximum of sessions") || !strings.Contains(logs.String(), "max_sessions=2") {
		t.Errorf("no warning about the session budget in the log:\n%s", logs)
	}
	_ = c1.CloseWithError(0, "")
	admitEventually(t, ts, KindWebTransport)
}

// TestBudgetMaxSessionsPerAddr: beyond MaxSessionsPerAddr a client address
// is refused (429, BoundsExceeded) whatever the kind.
func TestBudgetMaxSessionsPerAddr(t *testing.T) {
	ts, logs := startBudgeted(t, Budgets{MaxSessionsPerAddr: 1, MaxSessions: 100}, nil)
	c, _ := admitEventually(t, ts, KindWebTransport)
	for _, kind := range []string{KindQUIC, KindWebTransport, KindWebSocket} {
		expectRefused(t, ts, kind, http.StatusTooManyRequests, "too many sessions from this address")
	}
	if !strings.Contains(logs.String(), "client address holds its maximum") || !strings.Contains(logs.String(), "addr=127.0.0.1") {
		t.Errorf("no warning about the per-address budget in the log:\n%s", logs)
	}
	_ = c.CloseWithError(0, "")
	admitEventually(t, ts, KindQUIC)
}

// TestBudgetMaxPendingTCP: a TCP connection that has not upgraded holds a
// pending slot; beyond MaxPending new TCP connections get a 503 and QUIC
// connections are refused before their handshake; closing the connection
// gives the slot back.
func TestBudgetMaxPendingTCP(t *testing.T) {
	ts, logs := startBudgeted(t, Budgets{MaxPending: 1}, nil)
	hold, err := net.Dial("tcp", ts.l.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	// Wait until the listener has counted it: then the next connection is
	// answered with a 503 and closed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", ts.l.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		line, _ := bufio.NewReader(c).ReadString('\n')
		_ = c.Close()
		if strings.HasPrefix(line, "HTTP/1.1 503") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second TCP connection got %q, want a 503", line)
		}
	}
	ctx := testCtx(t)
	_, err = DialQUIC(ctx, ts.addr(), "localhost", DialConfig{TLSConfig: PinnedTLSConfig(ts.fp), Protocols: moqProtocols})
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("QUIC dial beyond the pending budget: %v, want CONNECTION_REFUSED", err)
	}
	if !strings.Contains(logs.String(), "still handshaking") {
		t.Errorf("no warning about the pending budget in the log:\n%s", logs)
	}
	_ = hold.Close()
	admitEventually(t, ts, KindWebSocket)
	admitEventually(t, ts, KindQUIC)
}

// TestBudgetPendingHTTP3Expires: an HTTP/3 connection that never sends a
// WebTransport CONNECT holds its pending slot only until the pending
// timeout, then it is closed; an upgraded one gives its slot back at once.
func TestBudgetPendingHTTP3Expires(t *testing.T) {
	ts, _ := startBudgeted(t, Budgets{MaxPending: 1}, func(c *ListenConfig) {
		c.pendingTimeout = 300 * time.Millisecond
	})
	ctx := testCtx(t)
	idle, err := quic.DialAddr(ctx, ts.addr(), &tls.Config{
		NextProtos:            []string{http3.NextProtoH3},
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: PinnedTLSConfig(ts.fp).VerifyPeerCertificate,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.CloseWithError(0, "")
	select {
	case <-idle.Context().Done():
	case <-ctx.Done():
		t.Fatal("an HTTP/3 connection without a CONNECT was never closed")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(idle.Context()); !errors.As(err, &ae) || ae.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeRequestRejected) {
		t.Fatalf("idle HTTP/3 connection ended with %v, want H3_REQUEST_REJECTED", err)
	}
	// Two sessions in a row: each upgrade gives its pending slot back.
	admitEventually(t, ts, KindWebTransport)
	admitEventually(t, ts, KindWebTransport)
}

func TestAddrKey(t *testing.T) {
	key := func(s string) string {
		k, ok := addrKey(net.UDPAddrFromAddrPort(mustAddrPort(t, s)))
		if !ok {
			return "none"
		}
		return k.String()
	}
	for _, c := range []struct{ in, want string }{
		{"127.0.0.1:1", "127.0.0.1"},
		{"[::ffff:192.0.2.7]:5", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:3::1]:443", "2001:db8:1:3::"},
	} {
		if got := key(c.in); got != c.want {
			t.Errorf("addrKey(%s) = %s, want %s", c.in, got, c.want)
		}
	}
	if _, ok := addrKey(nil); ok {
		t.Error("addrKey(nil) has a key")
	}
}

// TestAdmissionPerAddress: the per-address budget counts each address on
// its own, and releasing twice gives back one slot.
func TestAdmissionPerAddress(t *testing.T) {
	a := newAdmission(Budgets{MaxSessions: 3, MaxSessionsPerAddr: 1}, slog.New(slog.DiscardHandler))
	addr := func(s string) net.Addr { return net.UDPAddrFromAddrPort(mustAddrPort(t, s)) }
	r1, why := a.admitSession(addr("127.0.0.1:1"))
	if why != admitted {
		t.Fatal("first session refused")
	}
	if _, why := a.admitSession(addr("127.0.0.1:2")); why != refusedAddr {
		t.Errorf("second session from 127.0.0.1: %v, want refusedAddr", why)
	}
	r2, why := a.admitSession(addr("127.0.0.2:1"))
	if why != admitted {
		t.Error("another address refused")
	}
	r3, _ := a.admitSession(addr("127.0.0.3:1"))
	if _, why := a.admitSession(addr("127.0.0.4:1")); why != refusedFull {
		t.Errorf("fourth session: %v, want refusedFull", why)
	}
	r1()
	r1()
	if a.sessions != 2 || len(a.perAddr) != 2 {
		t.Errorf("after one release (twice): %d sessions, %d addresses; want 2 and 2", a.sessions, len(a.perAddr))
	}
	r2()
	r3()
	if a.sessions != 0 || len(a.perAddr) != 0 {
		t.Errorf("after all releases: %d sessions, %d addresses", a.sessions, len(a.perAddr))
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

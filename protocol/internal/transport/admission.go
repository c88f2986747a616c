package transport

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/internal/lograte"
)

// Budgets bound what a Listener admits. A field of zero or less means no
// limit. A refused WebTransport or WebSocket request is answered before the
// upgrade (503 Service Unavailable when the listener is full, 429 Too Many
// Requests when the client's address is); a refused raw QUIC connection is
// closed with RefusedCode once its handshake is done; a connection beyond
// MaxPending is refused before its handshake (QUIC CONNECTION_REFUSED, or the
// TCP connection is closed, after a 503 on plain HTTP).
type Budgets struct {
	// MaxSessions bounds the sessions of all kinds open at once, counted
	// from admission (before the upgrade) until the session ends.
	MaxSessions int
	// MaxSessionsPerAddr bounds the sessions one client address holds at
	// once. IPv6 addresses count per /64, the prefix one subscriber line
	// usually gets.
	MaxSessionsPerAddr int
	// MaxPending bounds the connections that are not (yet) a session: QUIC
	// connections from their first packet until the raw session is
	// accepted or the WebTransport CONNECT is upgraded, and TCP connections
	// from accept until a WebSocket upgrade hijacks them (plain HTTP
	// requests, keep-alive connections and TLS handshakes included).
	MaxPending int
	// RefusedCode is the application error code a raw QUIC connection over
	// a session budget is closed with.
	RefusedCode uint64
}

// pendingTimeout bounds how long a QUIC connection that completed its
// handshake may stay without becoming a session (an HTTP/3 connection that
// sends no WebTransport CONNECT, or only refused ones). Keep-alives would
// otherwise keep such a connection, and its pending slot, forever.
const pendingTimeout = 10 * time.Second

// refusal says why a session was not admitted.
type refusal int

const (
	admitted refusal = iota
	refusedFull
	refusedAddr
)

// admission counts what a Listener holds against its Budgets.
type admission struct {
	b   Budgets
	log *slog.Logger

	mu       sync.Mutex
	sessions int
	perAddr  map[netip.Addr]int
	pending  int

	fullLog, addrLog, pendingLog LogLimiter
}

func newAdmission(b Budgets, log *slog.Logger) *admission {
	return &admission{b: b, log: log, perAddr: make(map[netip.Addr]int)}
}

// addrKey is the per-address budget key of a remote address: the IP, with
// IPv4-mapped addresses unmapped and IPv6 cut to its /64. ok is false for
// addresses without an IP, which only the relay-wide budget counts.
func addrKey(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if a == nil {
			return netip.Addr{}, false
		}
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	ip := ap.Addr().Unmap()
	if !ip.IsValid() {
		return netip.Addr{}, false
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, true
}

// admitSession reserves a session slot for a client at remote. On success
// release gives the slot back (it may be called more than once).
func (a *admission) admitSession(remote net.Addr) (release func(), why refusal) {
	key, keyed := addrKey(remote)
	a.mu.Lock()
	if a.b.MaxSessions > 0 && a.sessions >= a.b.MaxSessions {
		a.mu.Unlock()
		a.fullLog.Log(a.log, slog.LevelWarn, "transport: session refused: the listener holds its maximum of sessions",
			"max_sessions", a.b.MaxSessions, "remote", addrString(remote))
		return nil, refusedFull
	}
	if keyed && a.b.MaxSessionsPerAddr > 0 && a.perAddr[key] >= a.b.MaxSessionsPerAddr {
		a.mu.Unlock()
		a.addrLog.Log(a.log, slog.LevelWarn, "transport: session refused: the client address holds its maximum of sessions",
			"max_sessions_per_addr", a.b.MaxSessionsPerAddr, "addr", key.String())
		return nil, refusedAddr
	}
	a.sessions++
	if keyed {
		a.perAddr[key]++
	}
	a.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			a.sessions--
			if keyed {
				if n := a.perAddr[key] - 1; n > 0 {
					a.perAddr[key] = n
				} else {
					delete(a.perAddr, key)
				}
			}
			a.mu.Unlock()
		})
	}, admitted
}

// pending is one connection's claim on the pending budget.
type pending struct {
	a     *admission
	once  sync.Once
	timer *time.Timer // set by expireAfter; guarded by a.mu
	done  bool        // guarded by a.mu
}

// beginPending claims a pending slot, or returns nil when the budget is
// spent (after logging, rate-limited).
func (a *admission) beginPending(kind string, remote net.Addr) *pending {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.b.MaxPending > 0 && a.pending >= a.b.MaxPending {
		a.pendingLog.Log(a.log, slog.LevelWarn, "transport: connection refused: too many connections are still handshaking",
			"kind", kind, "max_pending", a.b.MaxPending, "remote", addrString(remote))
		return nil
	}
	a.pending++
	return &pending{a: a}
}

// release gives the slot back; later calls do nothing. A nil *pending is
// allowed, so callers need not know whether the connection was counted.
func (p *pending) release() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		p.a.mu.Lock()
		p.a.pending--
		p.done = true
		if p.timer != nil {
			p.timer.Stop()
		}
		p.a.mu.Unlock()
	})
}

// expireAfter runs f if the slot is still held after d.
func (p *pending) expireAfter(d time.Duration, f func()) {
	if p == nil {
		return
	}
	p.a.mu.Lock()
	defer p.a.mu.Unlock()
	if !p.done {
		p.timer = time.AfterFunc(d, func() {
			p.a.mu.Lock()
			done := p.done
			p.a.mu.Unlock()
			if !done {
				f()
			}
		})
	}
}

// pendingKey is the context key under which a connection's *pending is kept
// (QUIC connection contexts, HTTP connection contexts).
type pendingKey struct{}

func pendingFrom(ctx context.Context) *pending {
	p, _ := ctx.Value(pendingKey{}).(*pending)
	return p
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// LogLimiter writes at most one line per LogInterval, counting the ones
// it holds back (package lograte).
type LogLimiter = lograte.Limiter

// LogInterval is the shortest time between two lines of one LogLimiter.
const LogInterval = lograte.Interval

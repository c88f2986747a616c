package transport

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// FingerprintPath is where the TCP side of a Listener serves the hex SHA-256
// of its certificate, and where FetchFingerprint looks for it.
const FingerprintPath = "/certificate.sha256"

// DialWebSocket opens a WebSocket fallback session to a ws:// or wss:// URL.
// It offers the Sec-WebSocket-Protocol list "qmux-00.P" for each
// cfg.Protocols entry P, then "qmux-00" and "webtransport"; the server's
// answer picks the dialect and Protocol() (for example "moq-lite-04" over
// qmux-00, or "" over the legacy "webtransport" dialect). wss uses
// cfg.TLSConfig; cfg.Header is sent with the upgrade request. A refused
// upgrade yields an error wrapping *HTTPError.
func DialWebSocket(ctx context.Context, rawURL string, cfg DialConfig) (Session, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("transport: parse %q: %w", rawURL, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("transport: WebSocket URL %q must use ws or wss", rawURL)
	}
	// A transport of its own per dial: the TLS configuration is the
	// caller's, and the remote address is recorded from the dialed socket.
	var (
		remoteMu sync.Mutex
		remote   net.Addr
	)
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				remoteMu.Lock()
				remote = c.RemoteAddr()
				remoteMu.Unlock()
			}
			return c, err
		},
		TLSClientConfig:     wsClientTLSConfig(cfg.TLSConfig),
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	hdr := cfg.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	heard := &wsHeard{}
	conn, rsp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPClient:     &http.Client{Transport: tr},
		HTTPHeader:     hdr.Clone(),
		Subprotocols:   wsOffer(cfg.Protocols),
		OnPingReceived: heard.onPing,
		OnPongReceived: heard.onPong,
	})
	if err != nil {
		if rsp != nil && rsp.StatusCode != http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("transport: websocket %s: %w", rawURL, &HTTPError{Status: rsp.StatusCode})
		}
		return nil, fmt.Errorf("transport: websocket %s: %w", rawURL, err)
	}
	d, proto := wsDialectOf(conn.Subprotocol())
	remoteMu.Lock()
	raddr := remote
	remoteMu.Unlock()
	limits := defaultWSLimits()
	if cfg.wsLimits != nil {
		limits = *cfg.wsLimits
	}
	sess := newWSSession(wsSessionConfig{
		conn:     conn,
		dialect:  d,
		server:   false,
		protocol: proto,
		req:      &ConnectRequest{URL: u, Header: hdr, Origin: hdr.Get("Origin")},
		remote:   raddr,
		limits:   limits,
	})
	go sess.keepAlive(cfg.Liveness, heard)
	return sess, nil
}

// wsHeard records when a ping or a pong last arrived from the peer:
// control frames, which the session's message counter does not see. A
// peer's ping counts as hearing from it, so when both ends keep alive only
// one of them pings per period.
type wsHeard struct{ nanos atomic.Int64 }

func (h *wsHeard) onPing(context.Context, []byte) bool {
	h.nanos.Store(time.Now().UnixNano())
	return true // answer it
}

func (h *wsHeard) onPong(context.Context, []byte) { h.nanos.Store(time.Now().UnixNano()) }

// last is the arrival time of the latest ping or pong (zero: none yet).
func (h *wsHeard) last() time.Time {
	if n := h.nanos.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// wsIdleError ends a WebSocket session whose peer was silent for the idle
// timeout. Like quic-go's idle timeout error it is a net.Error whose
// Timeout is true.
type wsIdleError struct{ idle time.Duration }

func (e *wsIdleError) Error() string {
	return fmt.Sprintf("transport: websocket peer silent for %v (no message or pong): connection considered dead", e.idle)
}

func (e *wsIdleError) Timeout() bool   { return true }
func (e *wsIdleError) Temporary() bool { return false }

var _ net.Error = (*wsIdleError)(nil)

// keepAlive gives a WebSocket session the liveness QUIC has built in: TCP
// notices a peer that vanished without a FIN or RST (a crashed host, a
// dropped path, a stopped process) only after minutes of retransmissions or
// hours of kernel keep-alive. After lv.KeepAlive without anything from the
// peer (a message, a ping or a pong, the latter two seen through heard) it
// sends a WebSocket ping (browsers and every WebSocket library answer pings
// by themselves, the reference's @moq/qmux included); when nothing has
// arrived for lv.IdleTimeout, the session ends with a *wsIdleError. It runs beside the session's reader and writer
// goroutines and returns when the session has ended and its socket is being
// dropped, at the latest right after the session's done channel closes.
//
// A pong queues behind whatever this side has written before it, so a peer
// whose path holds more than IdleTimeout of unsent data counts as dead: it
// is that far behind live, beyond any group lag the relay lets a subscriber
// keep, and reconnecting brings it back to the live edge.
func (s *wsSession) keepAlive(lv Liveness, ctl *wsHeard) {
	lv = lv.withDefaults()
	recv := s.bytesRecv.Load()
	heard := time.Now()
	t := time.NewTimer(lv.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if n := s.bytesRecv.Load(); n != recv {
			recv, heard = n, now
		}
		if c := ctl.last(); c.After(heard) {
			heard = c
		}
		if wait := heard.Add(lv.KeepAlive).Sub(now); wait > 0 {
			t.Reset(wait)
			continue
		}
		// Silent for KeepAlive: ping, and wait for the pong until the idle
		// deadline. The ping's context is the socket's, not the session's,
		// so that a session closing cleanly does not cut its close
		// handshake short by abandoning a ping halfway through its write.
		deadline := heard.Add(lv.IdleTimeout)
		pctx, cancel := context.WithDeadline(s.sockCtx, deadline)
		err := s.conn.Ping(pctx)
		cancel()
		if err != nil && time.Now().Before(deadline) {
			// The ping failed early (the socket broke, which the reader
			// reports as the session's end, or the write lock stayed
			// taken): the deadline still decides.
			t.Reset(time.Until(deadline))
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		if n := s.bytesRecv.Load(); err == nil || n != recv || ctl.last().After(heard) {
			recv, heard = n, time.Now()
			t.Reset(lv.KeepAlive)
			continue
		}
		s.mu.Lock()
		s.closeLocked(&wsIdleError{idle: lv.IdleTimeout}, nil, websocket.StatusGoingAway)
		s.mu.Unlock()
		return
	}
}

// wsClientTLSConfig clones base for WebSocket over TLS, which needs
// HTTP/1.1 (the upgrade does not exist in HTTP/2 as net/http speaks it).
func wsClientTLSConfig(base *tls.Config) *tls.Config {
	var c *tls.Config
	if base == nil {
		c = &tls.Config{}
	} else {
		c = base.Clone()
	}
	c.NextProtos = []string{"http/1.1"}
	return c
}

// wsOffer is the Sec-WebSocket-Protocol list a Go client offers.
func wsOffer(protocols []string) []string {
	offer := make([]string, 0, len(protocols)+2)
	for _, p := range protocols {
		offer = append(offer, prefixQMux00+p)
	}
	return append(offer, subprotoQMux00, subprotoLegacy)
}

// wsDialectOf interprets the subprotocol a server answered, as @moq/qmux
// does: "qmux-00.X" and "qmux-00" select qmux-00, "webtransport.X" and
// anything else (including none) the legacy dialect; X is the application
// protocol.
func wsDialectOf(answer string) (qmuxDialect, string) {
	switch {
	case strings.HasPrefix(answer, prefixQMux00):
		return dialectQMux00, answer[len(prefixQMux00):]
	case answer == subprotoQMux00:
		return dialectQMux00, ""
	case strings.HasPrefix(answer, prefixLegacy):
		return dialectLegacy, answer[len(prefixLegacy):]
	}
	return dialectLegacy, ""
}

// selectWSSubprotocol picks the server's answer to a client's offered
// subprotocols: the first "qmux-00.X" in the client's order whose X is one of
// supported; else "webtransport" (legacy dialect, no application protocol,
// which is what @moq/lite's default offer "qmux-00, webtransport" gets, as
// from the reference relay); else bare "qmux-00"; else none (legacy).
func selectWSSubprotocol(offered, supported []string) (answer string, d qmuxDialect, proto string) {
	for _, o := range offered {
		if x, ok := strings.CutPrefix(o, prefixQMux00); ok && slices.Contains(supported, x) {
			return o, dialectQMux00, x
		}
	}
	if slices.Contains(offered, subprotoLegacy) {
		return subprotoLegacy, dialectLegacy, ""
	}
	if slices.Contains(offered, subprotoQMux00) {
		return subprotoQMux00, dialectQMux00, ""
	}
	return "", dialectLegacy, ""
}

// offeredSubprotocols lists the Sec-WebSocket-Protocol tokens of a request.
func offeredSubprotocols(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				out = append(out, tok)
			}
		}
	}
	return out
}

// FetchFingerprint fetches the certificate fingerprint a development server
// publishes at FingerprintPath over plain HTTP: httpURL's scheme must be
// http; its path is replaced and its query dropped. The body must be the
// SHA-256 in hex (optional 0x prefix, no whitespace). Pin the result with
// PinnedTLSConfig to dial WebTransport to the https:// form of the URL.
func FetchFingerprint(ctx context.Context, httpURL string) ([32]byte, error) {
	var fp [32]byte
	u, err := url.Parse(httpURL)
	if err != nil {
		return fp, fmt.Errorf("transport: parse %q: %w", httpURL, err)
	}
	if u.Scheme != "http" {
		return fp, fmt.Errorf("transport: fingerprint URL %q must use http", httpURL)
	}
	target := url.URL{Scheme: "http", Host: u.Host, Path: FingerprintPath}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return fp, fmt.Errorf("transport: fingerprint request: %w", err)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	rsp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fp, fmt.Errorf("transport: fetch %s: %w", target.String(), err)
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		return fp, fmt.Errorf("transport: fetch %s: %w", target.String(), &HTTPError{Status: rsp.StatusCode})
	}
	body, err := io.ReadAll(io.LimitReader(rsp.Body, 256))
	if err != nil {
		return fp, fmt.Errorf("transport: fetch %s: %w", target.String(), err)
	}
	fp, err = parseFingerprint(string(body))
	if err != nil {
		return fp, fmt.Errorf("transport: fetch %s: %w", target.String(), err)
	}
	return fp, nil
}

// parseFingerprint parses a hex SHA-256 the way @moq/lite does: an optional
// 0x prefix, then pairs of hex digits, nothing else.
func parseFingerprint(s string) ([32]byte, error) {
	var fp [32]byte
	h := strings.TrimPrefix(s, "0x")
	if len(h)%2 != 0 {
		return fp, errors.New("fingerprint has an odd number of hex digits")
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return fp, fmt.Errorf("fingerprint is not hex: %w", err)
	}
	if len(b) != len(fp) {
		return fp, fmt.Errorf("fingerprint has %d bytes, want %d", len(b), len(fp))
	}
	copy(fp[:], b)
	return fp, nil
}

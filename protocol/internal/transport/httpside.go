package transport

import (
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// TCPMode selects what a Listener serves on the TCP port with the same
// number as its UDP socket: the WebSocket fallback on any path and the
// certificate fingerprint at FingerprintPath.
type TCPMode int

const (
	// TCPOff opens no TCP socket.
	TCPOff TCPMode = iota
	// TCPHTTP serves plain HTTP (ws://), for development: browsers fetch
	// the fingerprint over it to pin the self-signed certificate for
	// WebTransport, and fall back to WebSocket over it.
	TCPHTTP
	// TCPHTTPS serves HTTPS (wss://) with the listener's certificate.
	TCPHTTPS
)

func (m TCPMode) String() string {
	switch m {
	case TCPOff:
		return "off"
	case TCPHTTP:
		return "http"
	case TCPHTTPS:
		return "https"
	}
	return fmt.Sprintf("TCPMode(%d)", int(m))
}

// pairAttempts bounds the search for a port number free on both UDP and
// TCP when the listen address asks for any port.
const pairAttempts = 20

// bindSockets opens the UDP socket and, if withTCP, a TCP listener on the
// same address and port number. With port 0 the kernel's UDP choice is
// retried until TCP can follow it.
func bindSockets(addr *net.UDPAddr, withTCP bool) (*net.UDPConn, *net.TCPListener, error) {
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenUDP("udp", addr)
		if err != nil || !withTCP {
			return udp, nil, err
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: addr.IP, Port: port, Zone: addr.Zone})
		if err == nil {
			return udp, tcp, nil
		}
		_ = udp.Close()
		if addr.Port != 0 || attempt+1 >= pairAttempts {
			return nil, nil, fmt.Errorf("TCP port %d: %w", port, err)
		}
	}
}

// tcpSide is the HTTP(S) server on a Listener's TCP port.
type tcpSide struct {
	l         *Listener
	mode      TCPMode
	ln        net.Listener // the TCP listener itself
	srv       *http.Server
	served    chan struct{}
	protocols []string
	limits    wsLimits

	mu       sync.Mutex
	closing  bool
	handlers sync.WaitGroup // requests that may still create sessions
	sessions map[*wsSession]struct{}
}

// startTCP serves HTTP or HTTPS on ln.
func (l *Listener) startTCP(cfg ListenConfig, ln *net.TCPListener) *tcpSide {
	t := &tcpSide{
		l:         l,
		mode:      cfg.TCP,
		ln:        ln,
		served:    make(chan struct{}),
		protocols: append([]string(nil), cfg.WebTransportProtocols...),
		limits:    defaultWSLimits(),
		sessions:  make(map[*wsSession]struct{}),
	}
	if cfg.wsLimits != nil {
		t.limits = *cfg.wsLimits
	}
	t.srv = &http.Server{
		Handler:           http.HandlerFunc(t.serve),
		ReadHeaderTimeout: 10 * time.Second,
		// A keep-alive connection counts as pending (Budgets.MaxPending)
		// until it closes; plain requests (the fingerprint, HTTPHandler's
		// routes) are one-off fetches, so idle connections need not
		// linger.
		IdleTimeout: 10 * time.Second,
		ErrorLog:    slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		// A WebSocket upgrade hijacks its connection: from then on it is a
		// session, no longer pending.
		ConnState: func(c net.Conn, state http.ConnState) {
			if state == http.StateHijacked {
				pendingOf(c).release()
			}
		},
	}
	var serveLn net.Listener = &pendingListener{TCPListener: ln, l: l, plain: t.mode == TCPHTTP}
	if t.mode == TCPHTTPS {
		serveLn = tls.NewListener(ln, tcpTLSConfig(cfg.TLSConfig))
	}
	go func() {
		defer close(t.served)
		if err := t.srv.Serve(serveLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("transport: TCP server failed", "error", err)
		}
	}()
	return t
}

// tcpTLSConfig clones base for HTTPS/1.1 (WebSocket upgrades need HTTP/1.1),
// also on configs returned by a GetConfigForClient hook.
func tcpTLSConfig(base *tls.Config) *tls.Config {
	protos := []string{"http/1.1"}
	c := base.Clone()
	c.NextProtos = protos
	if get := c.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			conf, err := get(hello)
			if conf == nil || err != nil {
				return conf, err
			}
			conf = conf.Clone()
			conf.NextProtos = protos
			return conf, nil
		}
	}
	return c
}

// serve handles every TCP request: WebSocket upgrades on any path, the
// fingerprint, and anything else through ListenConfig.HTTPHandler (404
// without one).
func (t *tcpSide) serve(w http.ResponseWriter, r *http.Request) {
	upgrade := headerHasToken(r.Header, "Upgrade", "websocket")
	if !upgrade {
		t.l.servePlain(w, r)
		return
	}
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	t.handlers.Add(1)
	t.mu.Unlock()
	defer t.handlers.Done()
	t.serveWebSocket(w, r)
}

// servePlain answers a plain HTTP request (TCP side or HTTP/3): the
// fingerprint at FingerprintPath, anything else through
// ListenConfig.HTTPHandler, or 404 without one.
func (l *Listener) servePlain(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == FingerprintPath:
		l.serveFingerprint(w, r)
	case l.web != nil:
		l.web.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// serveFingerprint answers GET FingerprintPath with the lowercase hex
// SHA-256 of the leaf certificate, no newline, readable cross-origin.
func (l *Listener) serveFingerprint(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	cert, err := l.certificate(r)
	if err != nil {
		l.log.Warn("transport: no certificate to fingerprint", "error", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	fp := Fingerprint(cert)
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, hex.EncodeToString(fp[:]))
}

// certificate returns the certificate the listener presents: the first of
// TLSConfig.Certificates, or what GetCertificate returns for the request's
// host (asked on every request, so a certificate the hook swaps is
// followed).
func (l *Listener) certificate(r *http.Request) (tls.Certificate, error) {
	if len(l.tlsConf.Certificates) > 0 {
		return l.tlsConf.Certificates[0], nil
	}
	if l.tlsConf.GetCertificate != nil {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		c, err := l.tlsConf.GetCertificate(&tls.ClientHelloInfo{ServerName: host})
		if err != nil {
			return tls.Certificate{}, err
		}
		if c != nil {
			return *c, nil
		}
	}
	return tls.Certificate{}, errors.New("the TLS configuration has no certificate")
}

// serveWebSocket admits, upgrades and delivers a WebSocket session.
func (t *tcpSide) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	l := t.l
	if !l.admitRequest(w, r, "websocket") {
		return
	}
	answer, dialect, proto := selectWSSubprotocol(offeredSubprotocols(r.Header), t.protocols)
	heard := &wsHeard{}
	opts := &websocket.AcceptOptions{
		// Origins were checked by admitRequest (CheckOrigin).
		InsecureSkipVerify: true,
		OnPingReceived:     heard.onPing,
		OnPongReceived:     heard.onPong,
	}
	if answer != "" {
		opts.Subprotocols = []string{answer}
	}
	var remote net.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		remote = net.TCPAddrFromAddrPort(ap)
	}
	release, why := l.adm.admitSession(remote)
	if why != admitted {
		w.WriteHeader(refusalStatus(why))
		return
	}
	conn, err := websocket.Accept(w, r, opts)
	if err != nil {
		release()
		l.log.Info("transport: websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	scheme := "ws"
	if t.mode == TCPHTTPS {
		scheme = "wss"
	}
	var sess *wsSession
	sess = newWSSession(wsSessionConfig{
		conn:     conn,
		dialect:  dialect,
		server:   true,
		protocol: proto,
		req: &ConnectRequest{
			URL:    &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
			Header: r.Header.Clone(),
			Origin: r.Header.Get("Origin"),
		},
		remote: remote,
		limits: t.limits,
		onDone: func() {
			release()
			t.mu.Lock()
			delete(t.sessions, sess)
			t.mu.Unlock()
		},
	})
	t.mu.Lock()
	select {
	case <-sess.done:
	default:
		t.sessions[sess] = struct{}{}
	}
	t.mu.Unlock()
	go sess.keepAlive(l.liveness, heard)
	l.deliver(sess)
}

// pendingListener counts every accepted TCP connection against
// Budgets.MaxPending until it closes or a WebSocket upgrade hijacks it, and
// refuses connections beyond the budget at once: with a 503 response on
// plain HTTP, by closing them on HTTPS (before the TLS handshake costs
// anything).
type pendingListener struct {
	*net.TCPListener
	l     *Listener
	plain bool
}

// refused503 is the whole answer to a plain HTTP connection over the
// pending budget.
const refused503 = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

func (pl *pendingListener) Accept() (net.Conn, error) {
	for {
		c, err := pl.TCPListener.Accept()
		if err != nil {
			return nil, err
		}
		p := pl.l.adm.beginPending("tcp", c.RemoteAddr())
		if p == nil {
			if pl.plain {
				// A new socket's send buffer is empty: this does not block.
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = io.WriteString(c, refused503)
			}
			_ = c.Close()
			continue
		}
		return &pendingConn{Conn: c, p: p}, nil
	}
}

// pendingConn is a TCP connection holding a pending slot until it closes.
type pendingConn struct {
	net.Conn
	p *pending
}

func (c *pendingConn) Close() error {
	c.p.release()
	return c.Conn.Close()
}

// pendingOf finds the pending slot of a connection the HTTP server hands
// out (a *pendingConn, or a *tls.Conn around one).
func pendingOf(c net.Conn) *pending {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*pendingConn); ok {
		return pc.p
	}
	return nil
}

// close stops the server and ends every WebSocket session it created,
// waiting for their goroutines.
func (t *tcpSide) close() error {
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
	err := t.srv.Close()
	<-t.served
	t.handlers.Wait()
	t.mu.Lock()
	sessions := make([]*wsSession, 0, len(t.sessions))
	for s := range t.sessions {
		sessions = append(sessions, s)
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() {
			_ = s.CloseWithError(0, "server shutting down")
			<-s.done
		})
	}
	wg.Wait()
	return err
}

// headerHasToken reports whether a comma-separated header contains token,
// ignoring case.
func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

// admitRequest applies CheckOrigin (403) and Admit before an upgrade of
// either kind, answering refused requests itself.
func (l *Listener) admitRequest(w http.ResponseWriter, r *http.Request, kind string) bool {
	if l.checkOrigin != nil && !l.checkOrigin(r) {
		// Debug only: the owner of CheckOrigin knows how to tell the
		// operator what to change (protocol.Server logs a warning).
		l.log.Debug("transport: "+kind+" origin refused", "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusForbidden)
		return false
	}
	if l.admit != nil {
		status, err := l.admit(r)
		refused := status != 0 && status != http.StatusOK
		if err != nil && !refused {
			status, refused = http.StatusForbidden, true
		}
		if refused {
			l.log.Info("transport: "+kind+" session refused", "status", status, "path", r.URL.Path, "remote", r.RemoteAddr, "error", err)
			w.WriteHeader(status)
			return false
		}
	}
	return true
}

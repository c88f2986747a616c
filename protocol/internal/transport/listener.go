package transport

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/moqbridge/moqbridge/internal/redact"
)

// ListenConfig configures a Listener.
type ListenConfig struct {
	// Addr is the UDP address to listen on, e.g. ":4443" or "127.0.0.1:0".
	Addr string
	// TLSConfig supplies the certificates. The listener sets NextProtos itself.
	TLSConfig *tls.Config
	// RawProtocols are the ALPNs accepted as raw QUIC MOQ sessions, in server
	// preference order, e.g. {"moq-lite-04", "moq-lite-03", "moql"}.
	RawProtocols []string
	// WebTransportProtocols are the WebTransport application protocols
	// offered; the first one in the client's list that appears here wins.
	WebTransportProtocols []string
	// CheckOrigin validates a WebTransport request's Origin; nil allows all.
	// Refused requests get 403.
	CheckOrigin func(r *http.Request) bool
	// Admit, if set, is called before the WebTransport upgrade (typically to
	// check a token). A status other than 0 and 200 refuses the request with
	// that HTTP status; a non-nil error without such a status refuses it with
	// 403. The error is logged.
	Admit func(r *http.Request) (status int, err error)
	// Logger receives diagnostics; nil uses slog.Default().
	Logger *slog.Logger
	// QUICConfig optionally overrides QUIC settings. Zero fields get
	// moqbridge's defaults (1024 incoming bidi and uni streams, and the
	// idle timeout and keep-alive of Liveness); datagrams and stream-reset
	// partial delivery are always enabled because webtransport-go requires
	// both.
	QUICConfig *quic.Config
	// Liveness bounds how long a silent peer keeps its session, on every
	// kind of session (zero fields take the defaults; QUICConfig's own idle
	// timeout and keep-alive, when set, win for QUIC).
	Liveness Liveness
	// Budgets bound the sessions and pending connections the listener
	// admits (zero: no limits).
	Budgets Budgets
	// TCP optionally opens the TCP port with the same number as the UDP
	// socket and serves there the WebSocket fallback on any path (sessions
	// come out of Accept like the others; CheckOrigin and Admit apply) and
	// the certificate fingerprint at FingerprintPath. WebSocket
	// subprotocols "qmux-00.X" are accepted for X in WebTransportProtocols.
	TCP TCPMode
	// HTTPHandler, when set, answers the plain HTTP requests the listener
	// does not handle itself: every request that is neither a WebSocket
	// upgrade (TCP side) or a CONNECT (HTTP/3) nor one for FingerprintPath,
	// which the listener answers on both. Without it they get 404. An
	// HTTP/3 connection that carries no WebTransport session is still
	// closed after the pending timeout (10 s from its handshake), so long
	// requests belong on the TCP side.
	HTTPHandler http.Handler

	// wsLimits overrides the WebSocket receive limits (tests).
	wsLimits *wsLimits
	// pendingTimeout overrides how long a handshaken QUIC connection may
	// stay without a session (tests; default pendingTimeout).
	pendingTimeout time.Duration
}

// quicConnKey is the request-context key under which serveHTTP finds the
// QUIC connection a request arrived on.
type quicConnKey struct{}

// acceptQueueLen bounds sessions that are established but not yet taken by
// Accept; beyond it, new connections wait in quic-go's own accept queue.
const acceptQueueLen = 64

// Listener accepts raw QUIC and WebTransport sessions on one UDP socket,
// routing each QUIC connection by its negotiated ALPN: "h3" goes to the
// WebTransport server, the RawProtocols become raw QUIC sessions. With
// ListenConfig.TCP it also accepts WebSocket sessions on the TCP port of the
// same number.
type Listener struct {
	log         *slog.Logger
	raw         []string
	checkOrigin func(*http.Request) bool
	admit       func(*http.Request) (int, error)
	web         http.Handler
	tlsConf     *tls.Config // as given, for the fingerprint
	adm         *admission
	liveness    Liveness
	pendingTTL  time.Duration

	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener
	wt  *webtransport.Server

	tcp *tcpSide // nil without ListenConfig.TCP

	sessions chan Session
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	loopDone chan struct{}
	serving  sync.WaitGroup // ServeQUICConn calls

	mu    sync.Mutex
	conns map[*quic.Conn]struct{}

	closeOnce sync.Once
}

// Listen opens the UDP socket and starts accepting connections. The TLS
// NextProtos become RawProtocols followed by "h3".
func Listen(cfg ListenConfig) (*Listener, error) {
	if cfg.TLSConfig == nil {
		return nil, errors.New("transport: ListenConfig.TLSConfig is required")
	}
	if slices.Contains(cfg.RawProtocols, http3.NextProtoH3) {
		return nil, errors.New(`transport: "h3" cannot be a raw QUIC protocol; it selects WebTransport`)
	}
	if cfg.TCP < TCPOff || cfg.TCP > TCPHTTPS {
		return nil, fmt.Errorf("transport: unknown ListenConfig.TCP %v", cfg.TCP)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = redact.TokenLogger(log) // the HTTP/3 server logs request URIs
	addr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("transport: resolve %q: %w", cfg.Addr, err)
	}
	udp, tcpLn, err := bindSockets(addr, cfg.TCP != TCPOff)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %q: %w", cfg.Addr, err)
	}
	adm := newAdmission(cfg.Budgets, log)
	tr := &quic.Transport{
		Conn: udp,
		// Every QUIC connection is pending from its first packet until it
		// is a session; beyond the budget it is refused before the TLS
		// handshake costs anything.
		ConnContext: func(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
			p := adm.beginPending("quic", info.RemoteAddr)
			if p == nil {
				return nil, errTooManyPending
			}
			context.AfterFunc(ctx, p.release)
			return context.WithValue(ctx, pendingKey{}, p), nil
		},
	}
	ln, err := tr.Listen(serverTLSConfig(cfg.TLSConfig, cfg.RawProtocols), quicConfig(cfg.QUICConfig, cfg.Liveness))
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		if tcpLn != nil {
			_ = tcpLn.Close()
		}
		return nil, fmt.Errorf("transport: listen: %w", err)
	}

	l := &Listener{
		log:         log,
		raw:         slices.Clone(cfg.RawProtocols),
		checkOrigin: cfg.CheckOrigin,
		admit:       cfg.Admit,
		web:         cfg.HTTPHandler,
		tlsConf:     cfg.TLSConfig,
		adm:         adm,
		liveness:    cfg.Liveness.withDefaults(),
		pendingTTL:  cmp.Or(cfg.pendingTimeout, pendingTimeout),
		udp:         udp,
		tr:          tr,
		ln:          ln,
		sessions:    make(chan Session, acceptQueueLen),
		loopDone:    make(chan struct{}),
		conns:       make(map[*quic.Conn]struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wt = &webtransport.Server{
		H3: &http3.Server{
			Handler: http.HandlerFunc(l.serveHTTP),
			Logger:  log,
			// The session adapter needs the QUIC connection for Stats and
			// to close it when the session ends.
			ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
				return context.WithValue(ctx, quicConnKey{}, c)
			},
		},
		ApplicationProtocols: slices.Clone(cfg.WebTransportProtocols),
		// Origins are checked in serveHTTP so that refusals get a 403
		// instead of webtransport-go's generic upgrade error.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	if tcpLn != nil {
		l.tcp = l.startTCP(cfg, tcpLn)
	}
	go l.acceptLoop()
	return l, nil
}

// serverTLSConfig clones base and installs the ALPN list, also on configs
// returned by a GetConfigForClient hook (which would otherwise replace it).
func serverTLSConfig(base *tls.Config, raw []string) *tls.Config {
	protos := append(slices.Clone(raw), http3.NextProtoH3)
	c := base.Clone()
	c.NextProtos = protos
	if c.MinVersion < tls.VersionTLS13 {
		c.MinVersion = tls.VersionTLS13
	}
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

// errTooManyPending refuses a QUIC connection beyond Budgets.MaxPending.
var errTooManyPending = errors.New("transport: too many pending connections")

// Liveness bounds how long a silent peer keeps its session. Zero fields take
// DefaultKeepAlive and DefaultIdleTimeout.
type Liveness struct {
	// KeepAlive is how long a session may go without receiving anything
	// before it sends a keep-alive the peer must answer (a QUIC PING, a
	// WebSocket ping). It is capped at half of IdleTimeout.
	KeepAlive time.Duration
	// IdleTimeout ends a session from whose peer nothing at all (data,
	// acknowledgements, pongs) has been received for this long. On QUIC it
	// is the max_idle_timeout transport parameter, so the smaller value of
	// the two ends applies; quic-go counts it from the first packet sent
	// after the last one received (and never below three probe timeouts),
	// so a silent peer is noticed between IdleTimeout and
	// KeepAlive+IdleTimeout after its last packet. On WebSocket it is
	// counted from the last message, ping or pong received, as seen at the
	// next keep-alive check: also between IdleTimeout and
	// KeepAlive+IdleTimeout.
	IdleTimeout time.Duration
}

// The liveness defaults: a silent peer is noticed within 5–6 s. The
// reasoning, and what the reference stack uses, is on
// protocol.DefaultLiveness.
const (
	DefaultKeepAlive   = time.Second
	DefaultIdleTimeout = 5 * time.Second
)

func (l Liveness) withDefaults() Liveness {
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.KeepAlive <= 0 {
		l.KeepAlive = DefaultKeepAlive
	}
	l.KeepAlive = min(l.KeepAlive, l.IdleTimeout/2)
	return l
}

// defaultQUICConfig returns the QUIC settings moqbridge uses on both ends:
// generous stream limits because every MOQ group is its own stream, the
// idle timeout and keep-alive of lv, and the datagram and
// stream-reset-partial-delivery extensions that WebTransport requires.
func defaultQUICConfig(lv Liveness) *quic.Config {
	lv = lv.withDefaults()
	return &quic.Config{
		MaxIncomingStreams:               1024,
		MaxIncomingUniStreams:            1024,
		MaxIdleTimeout:                   lv.IdleTimeout,
		KeepAlivePeriod:                  lv.KeepAlive,
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
	}
}

// quicConfig fills the zero fields of an override with the defaults.
func quicConfig(override *quic.Config, lv Liveness) *quic.Config {
	def := defaultQUICConfig(lv)
	if override == nil {
		return def
	}
	c := override.Clone()
	if c.MaxIncomingStreams == 0 {
		c.MaxIncomingStreams = def.MaxIncomingStreams
	}
	if c.MaxIncomingUniStreams == 0 {
		c.MaxIncomingUniStreams = def.MaxIncomingUniStreams
	}
	if c.MaxIdleTimeout == 0 {
		c.MaxIdleTimeout = def.MaxIdleTimeout
	}
	if c.KeepAlivePeriod == 0 {
		c.KeepAlivePeriod = def.KeepAlivePeriod
	}
	c.EnableDatagrams = true
	c.EnableStreamResetPartialDelivery = true
	return c
}

func (l *Listener) acceptLoop() {
	defer close(l.loopDone)
	for {
		conn, err := l.ln.Accept(l.ctx)
		if err != nil {
			if l.ctx.Err() == nil {
				l.log.Error("transport: accept failed", "error", err)
			}
			return
		}
		l.track(conn)
		alpn := conn.ConnectionState().TLS.NegotiatedProtocol
		pend := pendingFrom(conn.Context())
		switch {
		case alpn == http3.NextProtoH3:
			// Pending until a WebTransport CONNECT is upgraded (serveHTTP);
			// a connection that never gets there is closed.
			pend.expireAfter(l.pendingTTL, func() {
				_ = conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeRequestRejected), "no WebTransport session")
			})
			l.serving.Go(func() {
				if err := l.wt.ServeQUICConn(conn); err != nil && !errors.Is(err, http.ErrServerClosed) {
					l.log.Warn("transport: webtransport connection failed", "remote", conn.RemoteAddr(), "error", err)
				}
			})
		case slices.Contains(l.raw, alpn):
			pend.release()
			release, why := l.adm.admitSession(conn.RemoteAddr())
			if why != admitted {
				_ = conn.CloseWithError(quic.ApplicationErrorCode(l.adm.b.RefusedCode), refusalReason(why))
				continue
			}
			context.AfterFunc(conn.Context(), release)
			l.deliver(newQUICSession(conn, &ConnectRequest{
				URL:    &url.URL{Scheme: "moqt", Host: conn.ConnectionState().TLS.ServerName},
				Header: http.Header{},
			}))
		default:
			// TLS only completes with one of our ALPNs; this guards against
			// a future change of that behaviour.
			_ = conn.CloseWithError(0, "unsupported ALPN")
		}
	}
}

// track remembers live connections so that Close can end them with a
// CONNECTION_CLOSE before the shared socket goes away.
func (l *Listener) track(conn *quic.Conn) {
	l.mu.Lock()
	l.conns[conn] = struct{}{}
	l.mu.Unlock()
	context.AfterFunc(conn.Context(), func() {
		l.mu.Lock()
		delete(l.conns, conn)
		l.mu.Unlock()
	})
}

// deliver hands a session to Accept, or closes it if the listener closes first.
func (l *Listener) deliver(s Session) {
	select {
	case l.sessions <- s:
	case <-l.ctx.Done():
		_ = s.CloseWithError(0, "listener closed")
	}
}

// serveHTTP handles every HTTP/3 request: WebTransport CONNECTs on any path
// are admitted and upgraded, other CONNECTs get 404, and plain requests
// are answered like on the TCP side (servePlain).
func (l *Listener) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		l.servePlain(w, r)
		return
	}
	if r.Proto != "webtransport-h3" && r.Proto != "webtransport" {
		http.NotFound(w, r)
		return
	}
	if !l.admitRequest(w, r, "webtransport") {
		return
	}
	conn, ok := r.Context().Value(quicConnKey{}).(*quic.Conn)
	if !ok {
		// Unreachable while ConnContext is installed; refuse rather than
		// run a session that could not be cleaned up.
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	release, why := l.adm.admitSession(conn.RemoteAddr())
	if why != admitted {
		w.WriteHeader(refusalStatus(why))
		return
	}
	sess, err := l.wt.Upgrade(w, r)
	if err != nil {
		release()
		l.log.Warn("transport: webtransport upgrade failed", "remote", r.RemoteAddr, "error", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	pendingFrom(conn.Context()).release()
	context.AfterFunc(sess.Context(), release)
	l.deliver(newWTSession(sess, conn, &ConnectRequest{
		URL:    &url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Header: r.Header.Clone(),
		Origin: r.Header.Get("Origin"),
	}))
}

// Accept returns the next established session of either kind, in arrival
// order. It fails with an error wrapping net.ErrClosed once the listener is
// closed.
func (l *Listener) Accept(ctx context.Context) (Session, error) {
	select {
	case s := <-l.sessions:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, fmt.Errorf("transport: listener closed: %w", net.ErrClosed)
	}
}

// Addr is the local UDP address.
func (l *Listener) Addr() net.Addr { return l.udp.LocalAddr() }

// TCPAddr is the local TCP address (same port number as Addr), or nil
// without ListenConfig.TCP.
func (l *Listener) TCPAddr() net.Addr {
	if l.tcp == nil {
		return nil
	}
	return l.tcp.ln.Addr()
}

// Close stops accepting and closes the socket. Because every session shares
// that socket, all sessions, including those already returned by Accept, end
// with a CONNECTION_CLOSE; WebSocket sessions end too, with the TCP side. The
// listener's goroutines have stopped when Close returns.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.cancel()
		err = l.ln.Close()
		<-l.loopDone

		l.mu.Lock()
		conns := make([]*quic.Conn, 0, len(l.conns))
		for c := range l.conns {
			conns = append(conns, c)
		}
		l.mu.Unlock()
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { _ = c.CloseWithError(0, "server shutting down") })
		}
		wg.Wait()

		if cerr := l.wt.Close(); cerr != nil && err == nil {
			err = cerr
		}
		l.serving.Wait()
		if l.tcp != nil {
			if cerr := l.tcp.close(); cerr != nil && err == nil {
				err = cerr
			}
		}
		// Sessions queued but never accepted belong to nobody; end them.
		for {
			select {
			case s := <-l.sessions:
				_ = s.CloseWithError(0, "listener closed")
				continue
			default:
			}
			break
		}
		if cerr := l.tr.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if cerr := l.udp.Close(); cerr != nil && err == nil {
			err = cerr
		}
	})
	return err
}

// refusalStatus is the HTTP status of a refused WebTransport or WebSocket
// request: 503 when the listener is full, 429 when the client's address is.
func refusalStatus(why refusal) int {
	if why == refusedAddr {
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

// refusalReason is the close reason of a refused raw QUIC connection.
func refusalReason(why refusal) string {
	if why == refusedAddr {
		return "too many sessions from this address"
	}
	return "too many sessions"
}

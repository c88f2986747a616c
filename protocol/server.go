package protocol

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/internal/redact"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/auth"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// ServerConfig configures a Server. The zero value serves on :4443 with a
// generated self-signed certificate and a fresh moq.Origin.
type ServerConfig struct {
	// Addr is the UDP address raw QUIC and WebTransport share (default ":4443").
	Addr string
	// CertFile and KeyFile are a PEM certificate chain and key. When both are
	// empty (and TLSConfig is nil) a self-signed ECDSA P-256 certificate valid
	// for 13 days is generated; browsers accept it by its SHA-256 hash.
	CertFile, KeyFile string
	// Hosts are the names and addresses put into a generated certificate
	// (default localhost, 127.0.0.1, ::1).
	Hosts []string
	// TLSConfig, when set, is used as is (its certificates win).
	TLSConfig *tls.Config
	// Origin is what the server serves and where clients publish (default: a
	// new moq.Origin, see Server.Origin).
	Origin *moq.Origin
	// Versions the server accepts (default: all, preferring the newest).
	Versions []Version
	// Limits per session (zero fields take DefaultLimits).
	Limits Limits
	// Cache bounds what the relay keeps per track of a client's broadcast
	// (zero fields take the defaults: 16 MiB, 30 s).
	Cache moq.CacheConfig
	// AllowedOrigins, when not empty, restricts the browser origins (e.g.
	// "https://app.example") that may open WebTransport and WebSocket
	// sessions; "*" allows any. When empty, any origin may connect, as
	// with the reference relay and MediaMTX: a page's origin is no
	// authorization (non-browser clients send whatever they like), tokens
	// are (Auth). Requests without an Origin header (non-browser clients)
	// are always allowed. A refused request gets HTTP 403 and a warning
	// in the log naming the origin.
	AllowedOrigins []string
	// CheckOrigin, when set, replaces the AllowedOrigins policy.
	CheckOrigin func(*http.Request) bool
	// Liveness bounds how long a silent client keeps its session (zero
	// fields take DefaultLiveness: a silent peer is noticed within 5–6 s).
	Liveness Liveness
	// MaxSessions bounds the sessions of every transport served at once;
	// a client beyond it is refused (raw QUIC: closed with BoundsExceeded
	// (11); WebTransport and WebSocket: HTTP 503 before the upgrade). Zero
	// takes DefaultMaxSessions; negative means no limit.
	MaxSessions int
	// MaxSessionsPerAddr bounds the sessions one client IP address (IPv6:
	// one /64) holds at once; beyond it: BoundsExceeded (11) or HTTP 429.
	// Zero takes DefaultMaxSessionsPerAddr; negative means no limit.
	MaxSessionsPerAddr int
	// MaxPendingHandshakes bounds the connections accepted but not yet a
	// session: QUIC connections in their TLS handshake or before their
	// WebTransport CONNECT, TCP connections before their WebSocket upgrade
	// (including TLS handshakes and plain HTTP requests). Beyond it a QUIC
	// connection is refused before its handshake (CONNECTION_REFUSED) and
	// a TCP connection is closed (plain HTTP: after a 503). Zero takes
	// DefaultMaxPendingHandshakes; negative means no limit.
	MaxPendingHandshakes int
	// TCP serves the same port number over TCP for browsers without
	// WebTransport: the WebSocket fallback on every path, GET
	// /certificate.sha256 (the certificate's SHA-256 in hex, for dev-mode
	// clients), and the HTTP routes of the reference relay: GET
	// /announced[/PREFIX], GET /fetch/BROADCAST/TRACK and a landing page
	// (404) for anything else (see serveWeb; HTTP/3 requests that are not
	// WebTransport get the same answers). TCPOff (the zero value) serves
	// nothing over TCP; TCPHTTP is plain HTTP, as the reference relay
	// serves in development; TCPHTTPS uses the server's certificate.
	TCP TCPMode
	// Auth, when set, authorizes every connection from the JWT in its URL
	// (the `jwt` query parameter) and scopes it to the token's root and
	// put/get prefixes; a refused WebTransport or WebSocket connection gets
	// HTTP 401, a refused raw QUIC connection is closed with Unauthorized.
	// Nil: every client may publish and subscribe anywhere.
	Auth *auth.Authorizer
	// Logger receives structured logs (nil: discard).
	Logger *slog.Logger
}

// The admission defaults hold a small machine (2 cores, a few GB).
// Measured (docs/benchmarks.md, "Idle sessions"), an idle session costs the
// relay 85–135 KiB of RSS (70–85 KiB of it Go heap, which the garbage
// collector may let grow to twice that), 10–11 goroutines and 45–75 µs of
// CPU per second for its keep-alives. 5 000 sessions are then about 0.65 GiB
// (up to 1.3 GiB with the collector's headroom) and a third of one core
// before any media flows, which leaves memory for the media the per-session
// limits allow and CPU for forwarding; at 6 Mbit/s per viewer the two cores
// deliver to well under 2 000 viewers anyway. 256 sessions per address let
// a NAT, an office, a CGNAT pool or a local pipeline host many clients
// while one misbehaving host (a reconnect loop, a flood) takes at most 5 %
// of the relay. 256 handshakes in flight are about what two cores finish
// in a fraction of a second; beyond that, a reconnect storm after a restart
// is refused (and retried by clients) instead of piling up memory and CPU.
const (
	DefaultMaxSessions          = 5000
	DefaultMaxSessionsPerAddr   = 256
	DefaultMaxPendingHandshakes = 256
)

// budget turns a ServerConfig budget into a transport one: zero takes the
// default, negative means none (0 for the transport).
func budget(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Server is a MOQ Lite relay: clients publish into its moq.Origin and subscribe
// from it, over raw QUIC and WebTransport on one UDP port. N subscribers of
// one track share one upstream subscription, because every remote track is
// fetched through the moq.Origin's broadcast, which deduplicates by name.
type Server struct {
	cfg        ServerConfig
	origin     *moq.Origin
	ownsOrigin bool
	ln         *transport.Listener
	// cert is the certificate presented to new connections, swapped by
	// ReloadCertificate; reloadable says it came from CertFile/KeyFile.
	cert       atomic.Pointer[serverCert]
	reloadable bool
	log        *slog.Logger
	originLog  transport.LogLimiter
	// buffers is Limits.MaxServerBuffer, shared by every session.
	buffers *byteBudget
	// probes sends the PROBEs of every session; Close stops it.
	probes probeClock
	// stats are the relay-wide counters of Stats (stats.go).
	stats serverCounters
	// web owns the plain HTTP requests being answered (web.go): Close
	// cancels webCtx and waits for them.
	webCtx    context.Context
	webCancel context.CancelFunc
	web       sync.WaitGroup
	// fetchWait, when not zero, replaces fetchTimeout (tests).
	fetchWait atomic.Int64

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool
	// closeDone is closed once the first Close has finished, so that a
	// second Close (Serve's own, after its context ended) returns only
	// when every session has been told and the socket is closed.
	closeDone chan struct{}
	wg        sync.WaitGroup
}

// NewServer opens the server's UDP socket; call Serve to accept sessions.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = ":4443"
	}
	if len(cfg.Versions) == 0 {
		cfg.Versions = AllVersions
	}
	s := &Server{cfg: cfg, origin: cfg.Origin, log: redact.TokenLogger(loggerOr(cfg.Logger)), sessions: make(map[*Session]struct{}), closeDone: make(chan struct{})}
	tlsConf, err := s.serverTLS()
	if err != nil {
		return nil, err
	}
	s.buffers = newByteBudget("server", cfg.Limits.withDefaults().MaxServerBuffer)
	if s.origin == nil {
		s.origin = moq.NewOrigin()
		s.ownsOrigin = true
	}
	s.webCtx, s.webCancel = context.WithCancel(context.Background())
	protocols := protocolsFor(cfg.Versions)
	s.ln, err = transport.Listen(transport.ListenConfig{
		Addr:                  cfg.Addr,
		TLSConfig:             tlsConf,
		RawProtocols:          protocols,
		WebTransportProtocols: protocols,
		CheckOrigin:           s.checkOrigin(originPolicy(cfg)),
		Admit:                 s.admit,
		TCP:                   cfg.TCP,
		HTTPHandler:           http.HandlerFunc(s.serveWeb),
		Logger:                s.log,
		QUICConfig:            quicConfig(cfg.Limits.withDefaults(), cfg.Liveness),
		Liveness:              cfg.Liveness.withDefaults().transport(),
		Budgets: transport.Budgets{
			MaxSessions:        budget(cfg.MaxSessions, DefaultMaxSessions),
			MaxSessionsPerAddr: budget(cfg.MaxSessionsPerAddr, DefaultMaxSessionsPerAddr),
			MaxPending:         budget(cfg.MaxPendingHandshakes, DefaultMaxPendingHandshakes),
			RefusedCode:        uint64(wire.CodeBoundsExceeded),
		},
	})
	if err != nil {
		s.webCancel()
		if s.ownsOrigin {
			s.origin.Close()
		}
		return nil, fmt.Errorf("moq server: %w", err)
	}
	return s, nil
}

// originPolicy turns ServerConfig's origin settings into one check: any
// origin unless AllowedOrigins restricts them.
func originPolicy(cfg ServerConfig) func(*http.Request) bool {
	if cfg.CheckOrigin != nil {
		return cfg.CheckOrigin
	}
	if len(cfg.AllowedOrigins) == 0 {
		return nil
	}
	allowed := make(map[string]bool, len(cfg.AllowedOrigins))
	for _, o := range cfg.AllowedOrigins {
		allowed[strings.TrimSuffix(strings.ToLower(o), "/")] = true
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		return origin == "" || allowed["*"] || allowed[strings.ToLower(origin)]
	}
}

// checkOrigin wraps an origin check so that refusals are logged as
// warnings that say what to change, at most once a second.
func (s *Server) checkOrigin(check func(*http.Request) bool) func(*http.Request) bool {
	if check == nil {
		return nil
	}
	return func(r *http.Request) bool {
		if check(r) {
			return true
		}
		s.stats.refused.Add(1)
		s.originLog.Log(s.log, slog.LevelWarn, "moq connection refused: browser origin not allowed; add it with --allow-origin (ServerConfig.AllowedOrigins)",
			"origin", r.Header.Get("Origin"), "remote", r.RemoteAddr, "path", r.URL.Path)
		return false
	}
}

// serverTLS builds the TLS configuration from the caller's config, or
// around the certificate from files or a generated one, which the server
// then presents through GetCertificate so that ReloadCertificate can swap
// it for new connections.
func (s *Server) serverTLS() (*tls.Config, error) {
	cfg := s.cfg
	if cfg.TLSConfig != nil {
		conf := cfg.TLSConfig.Clone()
		if len(conf.Certificates) > 0 {
			s.cert.Store(newServerCert(conf.Certificates[0]))
		}
		return conf, nil
	}
	var cert tls.Certificate
	var err error
	switch {
	case cfg.CertFile != "" || cfg.KeyFile != "":
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, errors.New("moq server: both a certificate file and a key file are needed")
		}
		cert, err = transport.LoadKeyPair(cfg.CertFile, cfg.KeyFile)
		s.reloadable = true
	default:
		cert, err = transport.GenerateSelfSigned(cfg.Hosts, time.Now())
	}
	if err != nil {
		return nil, fmt.Errorf("moq server: %w", err)
	}
	s.cert.Store(newServerCert(cert))
	return &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS13}, nil
}

// serverCert is a certificate with its fingerprint, swapped as one.
type serverCert struct {
	cert        tls.Certificate
	fingerprint [32]byte
}

func newServerCert(cert tls.Certificate) *serverCert {
	return &serverCert{cert: cert, fingerprint: transport.Fingerprint(cert)}
}

// GetCertificate returns the certificate the server presents now, for
// tls.Config.GetCertificate of other listeners that share it (RTMPS
// ingest) and so follow ReloadCertificate. It fails when the server was
// given a TLSConfig without certificates.
func (s *Server) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cert.Load()
	if c == nil {
		return nil, errors.New("moq server: no certificate (ServerConfig.TLSConfig has none)")
	}
	return &c.cert, nil
}

// ReloadCertificate reads ServerConfig.CertFile and KeyFile again and
// presents the new certificate to every connection made from now on:
// sessions already running keep theirs. Fingerprint, Certificate,
// GetCertificate and /certificate.sha256 follow. If the pair cannot be read
// or does not match, the server keeps its certificate and the error says
// why. It fails for a generated certificate or a ServerConfig.TLSConfig,
// which the server did not load from files. Safe for concurrent use (a
// SIGUSR1 handler, say).
func (s *Server) ReloadCertificate() error {
	if !s.reloadable {
		return errors.New("moq server: reload certificate: the certificate was not loaded from ServerConfig.CertFile and KeyFile")
	}
	cert, err := transport.LoadKeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("moq server: reload certificate: %w", err)
	}
	c := newServerCert(cert)
	s.cert.Store(c)
	s.log.Info("moq certificate reloaded", "cert", s.cfg.CertFile, "fingerprint", hex.EncodeToString(c.fingerprint[:]))
	return nil
}

// protocolsFor lists the ALPN / WebTransport protocol names for versions in
// preference order; Lite01 and Lite02 share "moql" (SETUP decides).
func protocolsFor(versions []Version) []string {
	var out []string
	legacy := false
	for _, v := range versions {
		switch {
		case v.ALPN() != "":
			out = append(out, v.ALPN())
		case !legacy:
			legacy = true
			out = append(out, wire.ALPNLegacy)
		}
	}
	return out
}

func legacyOf(versions []Version) []Version {
	var out []Version
	for _, v := range versions {
		if v == Lite01 || v == Lite02 {
			out = append(out, v)
		}
	}
	return out
}

// Addr is the UDP address the server listens on.
func (s *Server) Addr() *net.UDPAddr { return s.ln.Addr().(*net.UDPAddr) }

// TCPAddr is the TCP address of the HTTP/WebSocket side, nil when TCP is off.
func (s *Server) TCPAddr() net.Addr { return s.ln.TCPAddr() }

// TCPMode selects what a Server serves over TCP; see ServerConfig.TCP.
type TCPMode = transport.TCPMode

// The TCP modes.
const (
	TCPOff   = transport.TCPOff
	TCPHTTP  = transport.TCPHTTP
	TCPHTTPS = transport.TCPHTTPS
)

// Fingerprint is the SHA-256 of the server's leaf certificate, what browsers
// pin with serverCertificateHashes and clients with WithFingerprint. It
// changes with ReloadCertificate.
func (s *Server) Fingerprint() [32]byte {
	if c := s.cert.Load(); c != nil {
		return c.fingerprint
	}
	return [32]byte{}
}

// Certificate is the server's TLS certificate (from ServerConfig's files,
// or the one it generated), for other listeners that share it, such as
// RTMPS ingest. It is the certificate of the moment: a listener that
// should follow ReloadCertificate uses GetCertificate instead.
func (s *Server) Certificate() tls.Certificate {
	if c := s.cert.Load(); c != nil {
		return c.cert
	}
	return tls.Certificate{}
}

// Origin is the table of broadcasts the server relays.
func (s *Server) Origin() *moq.Origin { return s.origin }

// Sessions returns the sessions currently being served.
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		out = append(out, sess)
	}
	return out
}

// Serve accepts sessions until ctx ends or Close is called, then closes
// every session and returns.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	logCtx, stopLog := context.WithCancel(context.Background())
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		s.logBroadcasts(logCtx)
	}()
	defer func() {
		stopLog()
		<-logDone
	}()
	for {
		conn, err := s.ln.Accept(ctx)
		if err != nil {
			_ = s.Close()
			if ctx.Err() != nil || s.isClosed() {
				return nil
			}
			return fmt.Errorf("moq server: accept: %w", err)
		}
		// Counted under the lock Close takes before it waits, so that a
		// connection accepted while Close runs is either waited for or
		// closed here, never raced with the wait.
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = conn.CloseWithError(uint64(wire.CodeClosed), serverShutdownReason)
			continue
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, conn)
		}()
	}
}

// logBroadcasts writes one info line whenever a broadcast becomes live at a
// path of the moq.Origin or ends there, until ctx ends.
func (s *Server) logBroadcasts(ctx context.Context) {
	ann := s.origin.Announced("")
	defer ann.Close()
	for {
		a, err := ann.Next(ctx)
		if err != nil {
			return
		}
		if a.Active {
			s.stats.broadcasts.Add(1)
			s.log.Info("moq broadcast live", "path", a.Path)
		} else {
			s.stats.broadcasts.Add(-1)
			s.log.Info("moq broadcast ended", "path", a.Path)
		}
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// admit refuses an HTTP-based connection (WebTransport, WebSocket) whose
// token does not authorize it, before any MOQ byte is exchanged.
func (s *Server) admit(r *http.Request) (int, error) {
	if s.cfg.Auth == nil {
		return http.StatusOK, nil
	}
	if _, err := s.cfg.Auth.Authorize(r.URL); err != nil {
		s.stats.refused.Add(1)
		return http.StatusUnauthorized, err
	}
	return http.StatusOK, nil
}

// permissions scopes a connection: the URL path is its root (wire paths
// are relative to it, as with the reference relay), narrowed by its token
// when the server authorizes connections.
func (s *Server) permissions(conn transport.Session) (Permissions, error) {
	u := &url.URL{}
	if req := conn.Request(); req != nil && req.URL != nil {
		u = req.URL
	}
	if conn.Kind() == transport.KindQUIC {
		// Raw QUIC carries no path: the root is empty.
		u = &url.URL{RawQuery: u.RawQuery}
	}
	return s.authorize(u)
}

// authorize scopes a request for u: its path is the root, narrowed by
// the token of its jwt query parameter when the server authorizes
// connections. Sessions and the HTTP routes (web.go) share it, so a token
// grants the same over both.
func (s *Server) authorize(u *url.URL) (Permissions, error) {
	if s.cfg.Auth == nil {
		return Permissions{Root: u.Path}, nil
	}
	g, err := s.cfg.Auth.Authorize(u)
	if err != nil {
		return Permissions{}, err
	}
	return Permissions{Root: g.Root, Publish: g.Publish, Subscribe: g.Subscribe}, nil
}

// serveConn runs one session to its end.
func (s *Server) serveConn(ctx context.Context, conn transport.Session) {
	perm, err := s.permissions(conn)
	if err != nil {
		s.stats.refused.Add(1)
		s.log.Info("moq connection refused", "remote", conn.RemoteAddr().String(), "err", err)
		_ = conn.CloseWithError(uint64(wire.CodeUnauthorized), "unauthorized")
		return
	}
	sess, err := startSession(ctx, conn, sessionConfig{
		server:         true,
		perm:           perm,
		publish:        s.origin,
		consume:        s.origin,
		limits:         s.cfg.Limits,
		cache:          s.cfg.Cache,
		log:            s.log,
		shared:         s.buffers,
		probes:         &s.probes,
		legacyVersions: legacyOf(s.cfg.Versions),
	})
	if err != nil {
		s.stats.refused.Add(1)
		s.log.Info("moq session refused", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = sess.CloseWithError(wire.CodeClosed, serverShutdownReason)
		return
	}
	s.sessions[sess] = struct{}{}
	s.stats.started(conn.Kind())
	s.mu.Unlock()
	remote := conn.RemoteAddr().String()
	s.log.Info("moq session started", "remote", remote, "transport", sess.Transport(), "version", sess.Version().String(), "root", perm.Root)
	_ = sess.Wait()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.stats.ended(sess)
	s.mu.Unlock()
	s.log.Info("moq session ended", "remote", remote, "reason", sess.Err())
}

// Close stops accepting, closes every session and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closeDone
		return nil
	}
	s.closed = true
	defer close(s.closeDone)
	s.webCancel()
	sessions := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	// Sessions first, so that each peer hears the MOQ close and its
	// reason (then the listener closes what is left, and the socket).
	var closing sync.WaitGroup
	for _, sess := range sessions {
		closing.Go(func() { _ = sess.CloseWithError(wire.CodeClosed, serverShutdownReason) })
	}
	closing.Wait()
	err := s.ln.Close()
	s.wg.Wait()
	s.web.Wait()
	s.probes.close()
	if s.ownsOrigin {
		s.origin.Close()
	}
	return err
}

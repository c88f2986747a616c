package rtmp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/internal/lograte"
	"github.com/moqbridge/moqbridge/sdk"
)

// DefaultPathTemplate makes rtmp://host/live/alice the broadcast
// live/alice.
const DefaultPathTemplate = "{app}/{key}"

// DefaultAddr is RTMP's port on every interface.
const DefaultAddr = ":1935"

// Default timeouts.
const (
	// DefaultSetupTimeout bounds the handshake and the connect and
	// publish commands, and then separately gortmplib's analysis of the
	// first media (2 s of media time).
	DefaultSetupTimeout = 10 * time.Second
	// DefaultReadTimeout is how long a publisher may send nothing before
	// its connection is dropped.
	DefaultReadTimeout = 10 * time.Second
	// DefaultMaxConns is how many clients the server serves at once
	// (publishing or still connecting); further connections are closed
	// at once. Each may hold up to its setup budget while its tracks are
	// analysed, so this bounds what a flood of clients can make the
	// server hold.
	DefaultMaxConns = 64
	// DefaultMaxConnsPerAddr is how many of those one address may hold:
	// a studio pushing several streams from behind one address fits, one
	// host opening connections in a loop does not take every slot.
	DefaultMaxConnsPerAddr = 16
	// DefaultLinger is how long a broadcast whose publisher dropped waits
	// for the same stream key to return and continue it.
	DefaultLinger = 5 * time.Second
)

// Byte budgets of a client (see budgetConn): what it may send before its
// tracks are known (gortmplib keeps all of it to replay), and then between
// two complete messages (gortmplib assembles a message of up to 10 MiB,
// possibly several at once on different chunk streams).
const (
	setupBudget   = 16 << 20 // 2 s of media at 64 Mbit/s
	messageBudget = 32 << 20
)

// Config configures a Server. The zero value listens on DefaultAddr and
// accepts any stream key.
type Config struct {
	// Addr is the TCP address to listen on; default DefaultAddr.
	Addr string

	// PathTemplate makes the broadcast path of a publish from
	// placeholders {app} (the RTMP application, "live" in
	// rtmp://host/live/alice) and {key} (the stream key, "alice"); default
	// DefaultPathTemplate.
	PathTemplate string

	// Keys are the stream keys allowed to publish at any path, KeyRules
	// those allowed at the paths a pattern matches. When both are empty
	// and Authorize is nil, any key may publish.
	Keys     []string
	KeyRules []KeyRule

	// Authorize, if set, decides on a publish whose stream key is not in
	// Keys or KeyRules (a JWT in the key or its query, say): it returns
	// the broadcast path (req.Path, or another), or an error that refuses
	// the publish; the error is logged, so it must not hold secrets.
	Authorize func(req PublishRequest) (path string, err error)

	// Route, if set, decides where a publish goes once its stream key was
	// accepted (by Keys, KeyRules, Authorize, or because none is set):
	// it gets the request, whose Path is the path decided so far, and
	// returns the publisher and path to publish at, or an error that
	// refuses the publish (logged, so it must not hold secrets). A server
	// shared by several pipelines routes each RTMP application to its
	// own pipeline this way.
	Route func(req PublishRequest) (PublishRoute, error)

	// Linger is how long a broadcast whose publisher dropped waits for
	// the same stream key to return and continue it (subscribers stay
	// subscribed; group sequences and timestamps go on); 0 takes
	// DefaultLinger, negative ends broadcasts at once.
	Linger time.Duration

	// Replace lets a new publisher on a path take over from the one live
	// there (whose connection is closed) instead of being refused; with
	// the same stream key, the broadcast continues as after a linger.
	Replace bool

	// TLS, if set, makes the server RTMPS: every connection is TLS with
	// this configuration (it needs a certificate).
	TLS *tls.Config

	// SetupTimeout and ReadTimeout: see DefaultSetupTimeout and
	// DefaultReadTimeout (0 takes those).
	SetupTimeout time.Duration
	ReadTimeout  time.Duration

	// MaxConns bounds the clients served at once (default
	// DefaultMaxConns; negative: no bound), MaxConnsPerAddr those from one
	// IP address, IPv6 /64 network (default DefaultMaxConnsPerAddr;
	// negative: no bound): one host cannot take every slot.
	MaxConns        int
	MaxConnsPerAddr int

	// Logger receives a line per publish, refusal and disconnect; default
	// slog.Default().
	Logger *slog.Logger
}

// PublishRoute is where Config.Route sends a publish.
type PublishRoute struct {
	// Publisher starts the broadcast; nil: the one Run was given.
	Publisher *sdk.Publisher
	// Path is the broadcast path.
	Path string
	// Context, if set, bounds the publish: when it ends, the publisher's
	// connection is closed and its broadcast ends at once, without
	// lingering (the route was taken away).
	Context context.Context
	// Linger, if not 0, replaces Config.Linger for the broadcast
	// (negative: it ends at once when its publisher drops).
	Linger time.Duration
	// Replace, if set, lets this publish take over from the one live at
	// its path, as Config.Replace does for every publish.
	Replace bool
}

// Server is an RTMP server that publishes what clients send as broadcasts:
// an sdk.Listener. Create it with NewServer; Run serves until its context
// ends.
type Server struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	ln      net.Listener
	streams map[string]*stream // broadcasts this server publishes, live or lingering, by path
	conns   int                // clients being served
	perAddr map[string]int     // of those, by addrKey

	// refuseLog writes the line about refused connections at most once a
	// second: a flood would otherwise flood the log too.
	refuseLog lograte.Limiter

	// panicked, if set, is told about a panic recovered while serving a
	// connection (tests fail on it).
	panicked func(v any)
}

// NewServer returns a Server for cfg; it does not listen yet (Listen,
// Run).
func NewServer(cfg Config) *Server {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.PathTemplate == "" {
		cfg.PathTemplate = DefaultPathTemplate
	}
	if cfg.SetupTimeout <= 0 {
		cfg.SetupTimeout = DefaultSetupTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerAddr == 0 {
		cfg.MaxConnsPerAddr = DefaultMaxConnsPerAddr
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("source", "rtmp"), streams: make(map[string]*stream), perAddr: make(map[string]int)}
}

// Listen binds the server's address, so that Addr is known before Run
// (with port 0 in tests). Run calls it if it was not called; calling it
// again does nothing.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	for _, r := range s.cfg.KeyRules {
		if err := r.Validate(); err != nil {
			return sdk.Permanent(err)
		}
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return sdk.Permanent(fmt.Errorf("rtmp: listen on %s: %w", s.cfg.Addr, err))
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.ln = ln
	return nil
}

// Addr returns the address the server listens on, nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Run accepts RTMP clients until ctx ends (it returns nil then) or the
// listener fails, publishing each client's stream through p. When it
// returns, the listener and every connection are closed and the
// broadcasts they published ended.
func (s *Server) Run(ctx context.Context, p *sdk.Publisher) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	scheme := "rtmp"
	if s.cfg.TLS != nil {
		scheme = "rtmps"
	}
	s.log.Info("rtmp: listening", "addr", ln.Addr().String(), "scheme", scheme)
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer ln.Close()
	var wg sync.WaitGroup
	defer s.endLingering()
	defer wg.Wait()
	var tempDelay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("rtmp: accept: %w", err)
		}
		tempDelay = 0
		host := addrKey(conn.RemoteAddr())
		if why := s.admit(host); why != "" {
			s.refuseLog.Log(s.log, slog.LevelWarn, "rtmp: connection refused: "+why,
				"remote", conn.RemoteAddr().String(), "max_conns", s.cfg.MaxConns, "max_conns_per_addr", s.cfg.MaxConnsPerAddr)
			_ = conn.Close()
			continue
		}
		wg.Go(func() {
			defer s.leave(host)
			s.serveConn(ctx, conn, p)
		})
	}
}

// admit takes a client slot for a client of host (addrKey); it returns
// why not when MaxConns are served, or MaxConnsPerAddr for that host.
func (s *Server) admit(host string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxConns > 0 && s.conns >= s.cfg.MaxConns {
		return "the server serves its maximum of clients"
	}
	if s.cfg.MaxConnsPerAddr > 0 && s.perAddr[host] >= s.cfg.MaxConnsPerAddr {
		return "its address has its maximum of clients"
	}
	s.conns++
	s.perAddr[host]++
	return ""
}

// leave gives a client slot of host back.
func (s *Server) leave(host string) {
	s.mu.Lock()
	s.conns--
	if s.perAddr[host]--; s.perAddr[host] <= 0 {
		delete(s.perAddr, host)
	}
	s.mu.Unlock()
}

// addrKey is what MaxConnsPerAddr counts by: the IP address, for IPv6 its
// /64 network (one host's share of addresses).
func addrKey(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String()
}

// TLS reports whether the server speaks RTMPS.
func (s *Server) TLS() bool { return s.cfg.TLS != nil }

// pathFor expands the path template.
func (s *Server) pathFor(app, key string) string {
	return strings.NewReplacer("{app}", app, "{key}", key).Replace(s.cfg.PathTemplate)
}

package rtmp

import (
	"context"
	"crypto/subtle"
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

	// Keys are the stream keys allowed to publish; empty allows any.
	Keys []string

	// SetupTimeout and ReadTimeout: see DefaultSetupTimeout and
	// DefaultReadTimeout (0 takes those).
	SetupTimeout time.Duration
	ReadTimeout  time.Duration

	// MaxConns bounds the clients served at once (default
	// DefaultMaxConns; negative: no bound).
	MaxConns int

	// Logger receives a line per publish, refusal and disconnect; default
	// slog.Default().
	Logger *slog.Logger
}

// Server is an RTMP server that publishes what clients send as broadcasts:
// an sdk.Listener. Create it with NewServer; Run serves until its context
// ends.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	ln     net.Listener
	active map[string]struct{} // paths this server is publishing
	conns  int                 // clients being served

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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("source", "rtmp"), active: make(map[string]struct{})}
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
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return sdk.Permanent(fmt.Errorf("rtmp: listen on %s: %w", s.cfg.Addr, err))
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
	s.log.Info("rtmp: listening", "addr", ln.Addr().String())
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer ln.Close()
	var wg sync.WaitGroup
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
		if !s.admit() {
			s.refuseLog.Log(s.log, slog.LevelWarn, "rtmp: connection refused: the server serves its maximum of clients",
				"remote", conn.RemoteAddr().String(), "max_conns", s.cfg.MaxConns)
			_ = conn.Close()
			continue
		}
		wg.Go(func() {
			defer s.leave()
			s.serveConn(ctx, conn, p)
		})
	}
}

// admit takes a client slot; it reports false when MaxConns are served.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxConns > 0 && s.conns >= s.cfg.MaxConns {
		return false
	}
	s.conns++
	return true
}

// leave gives a client slot back.
func (s *Server) leave() {
	s.mu.Lock()
	s.conns--
	s.mu.Unlock()
}

// Keys returns the stream keys allowed to publish (none: any).
func (s *Server) Keys() []string { return append([]string(nil), s.cfg.Keys...) }

// pathFor expands the path template.
func (s *Server) pathFor(app, key string) string {
	return strings.NewReplacer("{app}", app, "{key}", key).Replace(s.cfg.PathTemplate)
}

// keyAllowed reports whether key may publish.
func (s *Server) keyAllowed(key string) bool {
	if len(s.cfg.Keys) == 0 {
		return true
	}
	ok := false
	for _, k := range s.cfg.Keys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			ok = true
		}
	}
	return ok
}

// claim reserves path for one publisher of this server; it reports false
// if another holds it.
func (s *Server) claim(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.active[path]; ok {
		return false
	}
	s.active[path] = struct{}{}
	return true
}

func (s *Server) release(path string) {
	s.mu.Lock()
	delete(s.active, path)
	s.mu.Unlock()
}

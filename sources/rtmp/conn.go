package rtmp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/bluenviron/gortmplib"

	"github.com/moqbridge/moqbridge/sdk"
)

// errBudget reports a client that sent more than its byte budget without
// completing a message (or, before its tracks are known, in all).
var errBudget = errors.New("rtmp: client exceeded its byte budget")

// errRefused reports a publish this server refused (logged already).
var errRefused = errors.New("rtmp: refused")

// readBuffer is how much of a client's bytes are read from the socket at
// once. gortmplib reads through a 4 KiB buffer, which at a few Mbit/s is a
// read system call per few packets; reading ahead in larger blocks
// saves most of them.
const readBuffer = 64 << 10

// budgetConn is a client connection whose reads are counted against a
// budget of bytes: when it is spent, Read fails. The connection's reader
// (one goroutine) refills it as messages complete. Reads go through a
// readBuffer-sized buffer.
type budgetConn struct {
	net.Conn
	r    *bufio.Reader
	left int64
}

func newBudgetConn(nc net.Conn, budget int64) *budgetConn {
	return &budgetConn{Conn: nc, r: bufio.NewReaderSize(socketReader(nc), readBuffer), left: budget}
}

func (b *budgetConn) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errBudget
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// serveConn serves one client until it disconnects, fails or ctx ends; it
// closes the connection. A panic (a bug, in gortmplib or here, met by some
// input) is recovered and logged: it ends this connection only.
func (s *Server) serveConn(ctx context.Context, nc net.Conn, p *sdk.Publisher) {
	log := s.log.With("remote", nc.RemoteAddr().String())
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	defer nc.Close()
	defer func() {
		if v := recover(); v != nil {
			log.Error("rtmp: connection failed: panic", "panic", v, "stack", string(debug.Stack()))
			if s.panicked != nil {
				s.panicked(v)
			}
		}
	}()
	log, err := s.handle(ctx, nc, log, p)
	switch {
	case errors.Is(err, errRefused):
	case err == nil, ctx.Err() != nil:
		log.Debug("rtmp: connection closed")
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		log.Info("rtmp: publisher disconnected")
	case errors.Is(err, syscall.ECONNRESET):
		// An encoder killed or cut off: as common as a clean close.
		log.Info("rtmp: publisher disconnected", "reset", true)
	default:
		log.Warn("rtmp: connection failed", "err", err)
	}
}

// handle runs the RTMP session of one client: handshake, publish, track
// analysis, then media until the client stops. It returns the logger with
// what it learnt about the client.
func (s *Server) handle(ctx context.Context, nc net.Conn, log *slog.Logger, p *sdk.Publisher) (*slog.Logger, error) {
	bc := newBudgetConn(nc, setupBudget)
	_ = nc.SetDeadline(time.Now().Add(s.cfg.SetupTimeout))
	sc := &gortmplib.ServerConn{RW: bc}
	if err := sc.Initialize(); err != nil {
		return log, fmt.Errorf("rtmp: handshake: %w", err)
	}
	if err := sc.AcceptConn(); err != nil {
		return log, fmt.Errorf("rtmp: connect: %w", err)
	}
	app, key := splitURL(sc.URL)
	log = log.With("app", app)
	refuse := func(msg string, args ...any) (*slog.Logger, error) {
		_ = sc.RejectAction()
		log.Warn("rtmp: refused: "+msg, args...)
		return log, errRefused
	}
	if !sc.Publish {
		return refuse("playing is not supported, only publishing")
	}
	req := PublishRequest{Remote: nc.RemoteAddr(), App: app, Key: key, Path: s.pathFor(app, key)}
	if sc.URL != nil {
		req.Query = sc.URL.Query()
	}
	path, err := s.authorize(req)
	if err != nil {
		return refuse(err.Error())
	}
	routeCtx := context.Background()
	policy := streamPolicy{linger: s.cfg.Linger, replace: s.cfg.Replace}
	if s.cfg.Route != nil {
		req.Path = path
		route, err := s.cfg.Route(req)
		if err != nil {
			return refuse(err.Error())
		}
		path = route.Path
		if route.Linger != 0 {
			policy.linger = route.Linger
		}
		policy.replace = policy.replace || route.Replace
		if route.Publisher != nil {
			p = route.Publisher
		}
		if route.Context != nil {
			routeCtx = route.Context
			stop := context.AfterFunc(routeCtx, func() { _ = nc.Close() })
			defer stop()
		}
	}
	log = log.With("path", path)
	st, o, resumed, err := s.acquire(ctx, p, policy, path, key, nc)
	switch {
	case errors.Is(err, errLive):
		return refuse(err.Error())
	case err != nil:
		return refuse("cannot publish at this path", "err", err)
	}
	published := false // a publish refused or failed before its media flowed does not linger
	defer func() { s.release(st, o, ctx.Err() != nil || routeCtx.Err() != nil || !published) }()
	if resumed {
		log.Info("rtmp: publisher returned; the broadcast continues")
	}

	_ = nc.SetDeadline(time.Now().Add(s.cfg.SetupTimeout))
	// The Reader accepts the publish itself only when it reads the
	// ServerConn directly; it reads it through analysisConn here.
	if err := sc.AcceptAction(); err != nil {
		return log, fmt.Errorf("rtmp: accepting the publish: %w", err)
	}
	r, analysis, fromMetadata, err := readTracks(sc)
	if err != nil {
		return log, fmt.Errorf("rtmp: reading the tracks: %w", err)
	}
	pub := &publish{st: st, log: log}
	if err := pub.setup(r); err != nil {
		log.Error("rtmp: refused: "+err.Error(), "codecs", codecNames(r.Tracks()))
		return log, errRefused
	}
	published = true
	// analysis: from the first message after the publish command to
	// the tracks known (the first frames are written right after).
	log.Info("rtmp: publishing", "codecs", codecNames(r.Tracks()), "analysis", analysis, "from_metadata", fromMetadata)
	return log, readMedia(r, pub, bc, s.cfg.ReadTimeout)
}

// readMedia reads a client's media until it fails or a frame cannot be
// written, each message within timeout and messageBudget.
func readMedia(r *gortmplib.Reader, pub *publish, bc *budgetConn, timeout time.Duration) error {
	for {
		if pub.err != nil {
			return pub.err
		}
		bc.left = messageBudget
		// Reads, and the acknowledgements gortmplib writes meanwhile.
		_ = bc.SetDeadline(time.Now().Add(timeout))
		if err := r.Read(); err != nil {
			return err
		}
	}
}

// splitURL returns the application and the stream key of a publish URL
// (rtmp://host/live/alice?x=y → live, alice): the key is the last path
// segment, the application what precedes it.
func splitURL(u *url.URL) (app, key string) {
	if u == nil {
		return "", ""
	}
	p := strings.Trim(u.Path, "/")
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

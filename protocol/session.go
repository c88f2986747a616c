package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// SessionError reports that a session was closed with an application code;
// Remote says whether the peer closed it.
type SessionError = transport.SessionError

// StreamError reports that a stream was reset or stopped with a code.
type StreamError = transport.StreamError

// Session is one MOQ Lite session with a peer, on any transport and version.
//
// A session is symmetric: it serves the peer's announce and subscribe
// requests from its publish moq.Origin, and it learns the peer's broadcasts
// into its consume moq.Origin, subscribing upstream only when a local reader
// asks for a track. Either moq.Origin may be nil (then that direction is off).
type Session struct {
	conn    transport.Session
	version Version
	server  bool
	perm    Permissions
	publish *moq.Origin
	consume *moq.Origin
	limits  Limits
	cache   moq.CacheConfig
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	recv streamSet // group streams being received

	// mem counts what the peer's incomplete messages and frames hold
	// (budget.go); bidiSlots and uniSlots hold one token per peer stream
	// being served, Limits.MaxStreams of each; limitLog writes the lines
	// about streams rejected and limits the peer hits, at most one a
	// second, with a count of those it held back.
	mem                 sessionBudget
	bidiSlots, uniSlots chan struct{}
	limitLog            transport.LogLimiter

	mu        sync.Mutex
	nextSubID uint64
	upstream  map[uint64]*upstreamSub
	remote    map[string]*moq.BroadcastWriter // broadcasts the peer announced, by local path
	consumed  map[string]*moq.BroadcastWriter // broadcasts opened with Consume, by wire path
	own       map[*moq.BroadcastReader]struct{}
	served    map[*moq.TrackReader]chan struct{} // subscriptions being served (noteServed)
	// interests are the prefixes (local paths) the peer asked for
	// announcements under, by stream; interestCh is closed and replaced
	// when they change (PeerInterests).
	interests  map[*wire.Reader]string
	interestCh chan struct{}
	started    time.Time
	inboundSub int

	stats sessionCounters
	probe atomic.Pointer[wire.Probe]
	// probes sends the PROBEs of the probe streams the peer opened: the
	// Server's clock, or the session's own (ownProbes), which shutdown
	// stops.
	probes    *probeClock
	ownProbes bool

	endMu  sync.Mutex
	endErr error // why the session ended, first reason wins
}

// Permissions scope what a peer may do in a session. Paths on the wire are
// relative to Root; Publish and Subscribe list the (root-relative) prefixes
// the peer may announce into and subscribe from. A nil list means any path.
type Permissions struct {
	Root      string
	Publish   []string
	Subscribe []string
}

func (p Permissions) may(list []string, path string) bool {
	if list == nil {
		return true
	}
	for _, prefix := range list {
		if moq.HasPathPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// SessionStats are counters of one session.
type SessionStats struct {
	// SubscriptionsServed counts SUBSCRIBE requests the peer made that this
	// session answered with SUBSCRIBE_OK.
	SubscriptionsServed uint64
	// SubscriptionsMade counts SUBSCRIBE requests this session sent upstream.
	SubscriptionsMade uint64
	// GroupsSent and GroupsReceived count group streams completed each way;
	// GroupsDropped counts group streams reset because the peer fell behind.
	GroupsSent, GroupsReceived, GroupsDropped uint64
	// FramesSent and FramesReceived count frames each way.
	FramesSent, FramesReceived uint64
	// StreamsRejected counts peer streams reset for a protocol or limit violation.
	StreamsRejected uint64
}

type sessionCounters struct {
	subsServed, subsMade                   atomic.Uint64
	groupsSent, groupsReceived, groupsDrop atomic.Uint64
	framesSent, framesReceived             atomic.Uint64
	rejected                               atomic.Uint64
}

// sessionConfig is what both Dial and the Server hand to newSession.
type sessionConfig struct {
	server  bool
	perm    Permissions
	publish *moq.Origin
	consume *moq.Origin
	limits  Limits
	cache   moq.CacheConfig
	log     *slog.Logger
	// versions offered (client) or accepted (server) on the legacy SETUP path.
	legacyVersions []Version
	// shared is the buffer budget of every session of a Server
	// (Limits.MaxServerBuffer); nil gives the session one of its own, as
	// Dial does.
	shared *byteBudget
	// probes is the probe clock of every session of a Server, which stops
	// it when it closes; nil gives the session one of its own, as Dial
	// does, stopped when the session ends.
	probes *probeClock
}

// startSession negotiates the version on conn and starts serving it. On
// error the connection is closed.
func startSession(ctx context.Context, conn transport.Session, cfg sessionConfig) (*Session, error) {
	s := &Session{
		conn:     conn,
		server:   cfg.server,
		perm:     cfg.perm,
		publish:  cfg.publish,
		consume:  cfg.consume,
		limits:   cfg.limits.withDefaults(),
		cache:    cfg.cache,
		upstream: make(map[uint64]*upstreamSub),
		remote:   make(map[string]*moq.BroadcastWriter),
		consumed: make(map[string]*moq.BroadcastWriter),
		own:      make(map[*moq.BroadcastReader]struct{}),

		interests:  make(map[*wire.Reader]string),
		interestCh: make(chan struct{}),
		started:    time.Now(),
	}
	if cfg.shared == nil {
		cfg.shared = newByteBudget("server", s.limits.MaxServerBuffer)
	}
	s.mem = sessionBudget{own: newByteBudget("session", s.limits.MaxSessionBuffer), shared: cfg.shared}
	s.probes = cfg.probes
	if s.probes == nil {
		s.probes, s.ownProbes = &probeClock{}, true
	}
	s.bidiSlots = make(chan struct{}, s.limits.MaxStreams)
	s.uniSlots = make(chan struct{}, s.limits.MaxStreams)
	s.perm.Root = moq.CleanPath(s.perm.Root)
	// The session context is not derived from the connection's: Accept then
	// reports the real reason a connection ended (a peer's close code)
	// rather than a bare cancellation.
	s.ctx, s.cancel = context.WithCancelCause(context.Background())

	var err error
	var setup *setupStream
	if v, ok := wire.VersionFromALPN(conn.Protocol()); ok {
		s.version = v
	} else if cfg.server {
		s.version, setup, err = acceptSetup(ctx, conn, cfg.legacyVersions)
	} else {
		s.version, setup, err = openSetup(ctx, conn, cfg.legacyVersions)
	}
	if err != nil {
		code := wire.CodeVersion
		var we wireCoded
		if errors.As(err, &we) {
			code = we.code
		}
		_ = conn.CloseWithError(uint64(code), err.Error())
		s.cancel(err)
		return nil, fmt.Errorf("moq session: setup: %w", err)
	}
	s.log = loggerOr(cfg.log).With("remote", conn.RemoteAddr().String(), "version", s.version.String(), "transport", conn.Kind())

	if setup != nil {
		s.spawn(func() { s.runSessionStream(setup) })
	}
	// One watch stops every group stream being received when the session
	// ends (quic-go would fail their reads anyway; webtransport-go may
	// leave a read parked).
	context.AfterFunc(s.ctx, func() { s.recv.end(wire.CodeCancel) })
	s.spawn(s.acceptBidi)
	s.spawn(s.acceptUni)
	if s.version >= Lite03 && !s.server {
		// The subscriber side opens the probe stream at once, as the
		// reference client does, and then only listens on it.
		s.spawn(s.runProbeSubscriber)
	}
	if s.consume != nil {
		// One announce interest per prefix the peer may publish under, as
		// the reference relay does.
		prefixes := s.perm.Publish
		if prefixes == nil {
			prefixes = []string{""}
		}
		for _, prefix := range prefixes {
			s.spawn(func() { s.runAnnounceSubscriber(prefix) })
		}
	}
	s.log.Debug("moq session started")
	return s, nil
}

// spawn runs fn in a goroutine owned by the session.
func (s *Session) spawn(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Version is the negotiated MOQ Lite version.
func (s *Session) Version() Version { return s.version }

// Transport names the transport: "quic", "webtransport" or "websocket".
func (s *Session) Transport() string { return s.conn.Kind() }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.ctx.Done() }

// Err reports why the session ended (nil while it runs): a *SessionError
// when either side closed it with a code.
func (s *Session) Err() error {
	if s.ctx.Err() == nil {
		return nil
	}
	s.endMu.Lock()
	defer s.endMu.Unlock()
	if s.endErr != nil {
		return s.endErr
	}
	return context.Cause(s.ctx)
}

// end records why the session ended (the first reason wins) and cancels
// everything the session runs.
func (s *Session) end(err error) {
	s.endMu.Lock()
	if s.endErr == nil {
		s.endErr = err
	}
	s.endMu.Unlock()
	s.cancel(err)
}

// Stats returns a snapshot of the session's counters.
func (s *Session) Stats() SessionStats {
	c := &s.stats
	return SessionStats{
		SubscriptionsServed: c.subsServed.Load(),
		SubscriptionsMade:   c.subsMade.Load(),
		GroupsSent:          c.groupsSent.Load(),
		GroupsReceived:      c.groupsReceived.Load(),
		GroupsDropped:       c.groupsDrop.Load(),
		FramesSent:          c.framesSent.Load(),
		FramesReceived:      c.framesReceived.Load(),
		StreamsRejected:     c.rejected.Load(),
	}
}

// Bandwidth is the latest PROBE the peer sent (bits per second and RTT in
// milliseconds, 0 when unknown). Only Lite03 and Lite04 carry probes.
func (s *Session) Bandwidth() (bitrate, rttMillis uint64) {
	if p := s.probe.Load(); p != nil {
		return p.BitrateBps, p.RTTms
	}
	return 0, 0
}

// Close ends the session normally (code 0) and waits for its goroutines.
// Subscriptions the peer made to tracks that have ended get up to
// closeGrace to deliver their last groups and FIN first: a publisher that
// closes its broadcast and then the session has its tracks seen as
// finished, not lost.
func (s *Session) Close() error {
	s.finishEnded(closeGrace)
	return s.CloseWithError(0, "")
}

// closeGrace bounds how long Close waits for ended subscriptions.
const closeGrace = 2 * time.Second

// CloseWithError ends the session with an application code and reason the
// peer will see, and waits until everything the session started has stopped.
func (s *Session) CloseWithError(code ErrorCode, reason string) error {
	s.end(&SessionError{Code: uint64(code), Reason: reason})
	err := s.conn.CloseWithError(uint64(code), reason)
	s.shutdown()
	return err
}

// Wait blocks until the session has ended and its goroutines have stopped.
func (s *Session) Wait() error {
	<-s.ctx.Done()
	s.shutdown()
	return s.Err()
}

var errSessionClosed = errors.New("moq session closed")

// shutdown ends every broadcast the session fed into the consume moq.Origin and
// waits for all session goroutines. Safe to call more than once.
func (s *Session) shutdown() {
	s.end(errSessionClosed)
	s.mu.Lock()
	var ending []*moq.BroadcastWriter
	for _, b := range s.remote {
		ending = append(ending, b)
	}
	for _, b := range s.consumed {
		ending = append(ending, b)
	}
	clear(s.remote)
	clear(s.consumed)
	s.mu.Unlock()
	// Their tracks end with the session's error: a reader can tell the
	// connection was lost from a broadcast that finished.
	cause := s.Err()
	for _, b := range ending {
		_ = b.CloseWithError(cause)
	}
	s.wg.Wait()
	if s.ownProbes {
		s.probes.close()
	}
	s.mem.settle()
}

// reject resets both halves of a peer stream with code and logs why (at
// most one line a second: a peer may do this on every stream it opens).
func (s *Session) reject(str transport.Stream, code ErrorCode, err error) {
	s.stats.rejected.Add(1)
	s.limitLog.Log(s.log, slog.LevelWarn, "moq stream rejected", "code", code.String(), "err", err)
	str.CancelRead(uint64(code))
	str.CancelWrite(uint64(code))
}

// takeStreamSlot waits until the session serves fewer than
// Limits.MaxStreams peer streams of one kind and takes a slot; it reports
// false when the session ends first. Meanwhile the peer's further streams
// wait in the transport, whose own stream limit bounds them.
func (s *Session) takeStreamSlot(slots chan struct{}, kind string) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	s.limitLog.Log(s.log, slog.LevelInfo, "moq peer at its stream limit; its next streams wait", "kind", kind, "limit", cap(slots))
	select {
	case slots <- struct{}{}:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// codeFor maps a decoding/limit error to the reference error code.
func codeFor(err error) ErrorCode {
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return wire.CodeBoundsExceeded
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, wire.ErrShort),
		errors.Is(err, wire.ErrTrailing), errors.Is(err, wire.ErrInvalid):
		return wire.CodeDecode
	}
	var we wireCoded
	if errors.As(err, &we) {
		return we.code
	}
	return wire.CodeDecode
}

// wireCoded is an error that carries the code to reset or close with.
type wireCoded struct {
	code ErrorCode
	err  error
}

func (e wireCoded) Error() string { return e.err.Error() }
func (e wireCoded) Unwrap() error { return e.err }

func coded(code ErrorCode, format string, args ...any) error {
	return wireCoded{code: code, err: fmt.Errorf(format, args...)}
}

// acceptBidi serves every bidirectional stream the peer opens, at most
// Limits.MaxStreams at once.
func (s *Session) acceptBidi() {
	for {
		if !s.takeStreamSlot(s.bidiSlots, "bidirectional") {
			return
		}
		str, err := s.conn.AcceptStream(s.ctx)
		if err != nil {
			s.end(err)
			return
		}
		s.spawn(func() {
			defer func() { <-s.bidiSlots }()
			s.serveBidi(str)
		})
	}
}

func (s *Session) serveBidi(str transport.Stream) {
	r := wire.NewReader(str)
	r.SetBudget(s.mem)
	defer func() {
		// A handler waits for its reading goroutine unless the session
		// ended, and then shutdown settles the session's reservations.
		if s.ctx.Err() == nil {
			r.Release()
		}
	}()
	// Every read below ends when the session does.
	stop := context.AfterFunc(s.ctx, func() { str.CancelRead(uint64(wire.CodeCancel)) })
	defer stop()
	t, err := r.ReadVarint()
	if err != nil {
		s.reject(str, wire.CodeDecode, fmt.Errorf("stream type: %w", err))
		return
	}
	switch wire.StreamType(t) {
	case wire.StreamAnnounce:
		s.serveAnnounce(str, r)
	case wire.StreamSubscribe:
		s.serveSubscribe(str, r)
	case wire.StreamProbe:
		if s.version < Lite03 {
			s.reject(str, wire.CodeUnexpectedStream, fmt.Errorf("probe stream on %s", s.version))
			return
		}
		s.serveProbe(str, r)
	case wire.StreamGoaway:
		if s.version < Lite04 {
			s.reject(str, wire.CodeUnexpectedStream, fmt.Errorf("goaway stream on %s", s.version))
			return
		}
		s.serveGoaway(str, r)
	case wire.StreamFetch:
		// Defined since Lite03 but served by no reference peer; refuse it
		// the same way.
		s.reject(str, wire.CodeUnsupported, errors.New("fetch is not served"))
	default:
		s.reject(str, wire.CodeUnexpectedStream, fmt.Errorf("unknown stream type %#x", t))
	}
}

// acceptUni serves every unidirectional (group) stream the peer opens, at
// most Limits.MaxStreams at once. Streams are accepted in the order the
// peer opened them, which for a moqbridge or reference publisher is group
// order; each stream's goroutine lets its predecessor create its group
// first (see groupOrderWait), so readers see groups in the order they were
// sent.
func (s *Session) acceptUni() {
	prev := make(chan struct{})
	close(prev)
	for {
		if !s.takeStreamSlot(s.uniSlots, "unidirectional") {
			return
		}
		str, err := s.conn.AcceptUniStream(s.ctx)
		if err != nil {
			s.end(err)
			return
		}
		if !s.recv.add(str) {
			<-s.uniSlots
			continue // the session is ending
		}
		created := make(chan struct{})
		after := prev
		prev = created
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.uniSlots }()
			s.receiveGroup(str, after, created)
		}()
	}
}

// serveGoaway logs the peer's GOAWAY and ends the stream; moqbridge does not
// migrate sessions.
func (s *Session) serveGoaway(str transport.Stream, r *wire.Reader) {
	body, err := r.ReadMessage(s.limits.MaxMessageSize)
	if err != nil {
		s.reject(str, codeFor(err), fmt.Errorf("goaway: %w", err))
		return
	}
	g, err := wire.DecodeGoaway(body)
	if err != nil {
		s.reject(str, codeFor(err), fmt.Errorf("goaway: %w", err))
		return
	}
	s.log.Info("moq peer sent goaway", "uri", g.URI)
	_ = str.Close()
}

// localPath maps a root-relative wire path to the moq.Origin path.
func (s *Session) localPath(wirePath string) string {
	return moq.JoinPath(s.perm.Root, wirePath)
}

// checkPath enforces the path length limit and moq.ValidatePath's rules on a
// path or name a peer sent.
func (s *Session) checkPath(what, p string) error {
	if len(p) > s.limits.MaxPathLength {
		return coded(wire.CodeBoundsExceeded, "%s: %d bytes exceeds the %d-byte limit", what, len(p), s.limits.MaxPathLength)
	}
	if err := moq.ValidatePathMax(p, s.limits.MaxPathLength); err != nil {
		return coded(wire.CodeDecode, "%s: %w", what, err)
	}
	return nil
}

package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsCloseTimeout bounds how long the socket of an ended session may stay
// open: writing the close frame and the WebSocket close handshake must
// finish within it, or the connection is dropped.
const wsCloseTimeout = 2 * time.Second

// maxWSCloseReason is the longest reason a WebSocket close frame carries.
const maxWSCloseReason = 123

// wsLimits are the receive-side limits of a WebSocket session.
type wsLimits struct {
	// params are advertised in the qmux-00 dialect; together with flow
	// control they bound what the peer can make us buffer.
	params transportParams
	// The legacy dialect has no flow control. When a frame would make a
	// stream buffer more than legacyStreamBuffer unread bytes, or the
	// session more than legacySessionBuffer, the socket is not read (TCP
	// backpressure) until the application has read enough; if that takes
	// longer than legacyStall, the session is closed with an error. A peer
	// keeping more than legacyMaxStreams of its streams open per direction
	// is disconnected.
	legacyStreamBuffer  int
	legacySessionBuffer int
	legacyStall         time.Duration
	legacyMaxStreams    uint64
}

// wsMaxStreams is how many streams of each kind a WebSocket peer may keep
// open, the default of protocol.Limits.MaxStreams (see there why): every
// open stream costs its state here and a goroutine in the session.
const wsMaxStreams = 256

// defaultWSLimits returns moqbridge's receive limits for WebSocket sessions.
// Everything a peer can make a session buffer is bounded by them: at most
// 8 MiB of unread stream data (qmux-00 by flow control, legacy by not
// reading the socket), held in memory proportional to it (see
// wsStream.appendRecv), and wsMaxStreams streams of each kind.
func defaultWSLimits() wsLimits {
	return wsLimits{
		params: transportParams{
			MaxData:                 8 << 20,
			MaxStreamDataBidiLocal:  1 << 20,
			MaxStreamDataBidiRemote: 1 << 20,
			MaxStreamDataUni:        1 << 20,
			MaxStreamsBidi:          wsMaxStreams,
			MaxStreamsUni:           wsMaxStreams,
		},
		legacyStreamBuffer:  1 << 20,
		legacySessionBuffer: 8 << 20,
		legacyStall:         2 * time.Second,
		legacyMaxStreams:    wsMaxStreams,
	}
}

// Direction indexes for per-direction arrays.
const (
	dirBidi = 0
	dirUni  = 1
)

func dirOf(id uint64) int {
	if id&0x2 != 0 {
		return dirUni
	}
	return dirBidi
}

// signal is a broadcast wake-up guarded by the session mutex: waiters take
// the channel, a broadcast closes it.
type signal struct{ ch chan struct{} }

func (g *signal) wait() <-chan struct{} {
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
	return g.ch
}

func (g *signal) broadcast() {
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
}

// errRemoteClose stops frame processing after the peer closed the session.
var errRemoteClose = errors.New("closed by peer")

// bufferFullError reports a legacy-dialect frame that does not fit the
// receive buffers yet; it is retried once the application has read.
type bufferFullError struct{ reason string }

func (e *bufferFullError) Error() string { return e.reason }

// wsSessionConfig describes an established WebSocket connection.
type wsSessionConfig struct {
	conn     *websocket.Conn
	dialect  qmuxDialect
	server   bool
	protocol string
	req      *ConnectRequest
	remote   net.Addr
	limits   wsLimits
	// onDone runs once both goroutines of the session have ended.
	onDone func()
}

// wsSession multiplexes QUIC-style streams over one WebSocket, speaking
// either dialect of @moq/qmux. A reader goroutine decodes incoming frames; a
// writer goroutine sends, in order: the transport parameters, control frames,
// credit updates, then stream data round-robin across streams, one STREAM
// frame of at most maxStreamPayload bytes per message. Stream writers hand
// their buffer to the writer goroutine and wait until it is framed, so a slow
// socket blocks them instead of queueing data.
type wsSession struct {
	conn   *websocket.Conn
	d      qmuxDialect
	server bool
	proto  string
	req    *ConnectRequest
	remote net.Addr
	limits wsLimits
	onDone func()

	ctx        context.Context // ends with the session; cause = closeErr
	cancel     context.CancelCauseFunc
	sockCtx    context.Context // socket operations; cancelling it drops the connection
	sockCancel context.CancelFunc

	wake         chan struct{} // writer has work (capacity 1)
	readerDone   chan struct{}
	closeWritten chan struct{} // the close frame was written (or could not be)
	done         chan struct{} // both goroutines have ended

	bytesSent atomic.Uint64
	bytesRecv atomic.Uint64

	mu         sync.Mutex
	closeErr   error
	closeFrame []byte
	wsStatus   websocket.StatusCode
	wsReason   string
	killTimer  *time.Timer

	streams map[uint64]*wsStream

	// Streams we open, per direction.
	nextLocal        [2]uint64
	peerMaxStreams   [2]uint64 // how many the peer lets us open
	streamsBlockedAt [2]uint64 // limit+1 for which STREAMS_BLOCKED was sent
	openSig          [2]signal

	// Streams the peer opens, per direction.
	nextPeer  [2]uint64
	peerLimit [2]uint64 // index limit we enforce (and advertised, qmux-00)
	peerDone  [2]uint64 // peer streams finished and accepted
	acceptQ   [2][]*wsStream
	acceptSig [2]signal

	// Connection-level flow control (qmux-00).
	paramsIn      bool
	peerParams    transportParams
	sendMax, sent uint64
	dataBlockedAt uint64 // limit+1 for which DATA_BLOCKED was sent
	recvMax       uint64 // advertised
	recvd         uint64 // stream bytes received
	consumed      uint64 // stream bytes read or discarded
	buffered      int    // stream bytes waiting to be read
	drainSig      signal // buffered data was read or discarded

	// Outgoing frames.
	wbuf              []byte // stream frames are built here; writer goroutine only
	paramsOut         bool
	ctrl              [][]byte
	maxDataPending    bool
	maxStreamsPending [2]bool
	msdQ              []*wsStream // streams owed a MAX_STREAM_DATA
	ready             []*wsStream // streams with data or a FIN to send
}

var _ Session = (*wsSession)(nil)

func newWSSession(cfg wsSessionConfig) *wsSession {
	s := &wsSession{
		conn:         cfg.conn,
		d:            cfg.dialect,
		server:       cfg.server,
		proto:        cfg.protocol,
		req:          cfg.req,
		remote:       cfg.remote,
		limits:       cfg.limits,
		onDone:       cfg.onDone,
		wake:         make(chan struct{}, 1),
		readerDone:   make(chan struct{}),
		closeWritten: make(chan struct{}),
		done:         make(chan struct{}),
		streams:      make(map[uint64]*wsStream),
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.sockCtx, s.sockCancel = context.WithCancel(context.Background())
	if s.d == dialectLegacy {
		s.peerMaxStreams = [2]uint64{math.MaxUint64, math.MaxUint64}
		s.peerLimit = [2]uint64{s.limits.legacyMaxStreams, s.limits.legacyMaxStreams}
	} else {
		s.peerLimit = [2]uint64{s.limits.params.MaxStreamsBidi, s.limits.params.MaxStreamsUni}
		s.recvMax = s.limits.params.MaxData
	}
	s.conn.SetReadLimit(wsReadLimit)
	go s.readLoop()
	go s.writeLoop()
	return s
}

// ---- Session interface ----

func (s *wsSession) OpenStream(ctx context.Context) (Stream, error) {
	st, err := s.open(ctx, dirBidi)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s *wsSession) OpenUniStream(ctx context.Context) (SendStream, error) {
	st, err := s.open(ctx, dirUni)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s *wsSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.accept(ctx, dirBidi)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s *wsSession) AcceptUniStream(ctx context.Context) (ReceiveStream, error) {
	st, err := s.accept(ctx, dirUni)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// CloseWithError sends APPLICATION_CLOSE with code and reason and closes the
// socket. It returns once the close frame is written, or after
// wsCloseTimeout if the socket is stuck.
func (s *wsSession) CloseWithError(code uint64, reason string) error {
	s.mu.Lock()
	if s.closeErr != nil {
		s.mu.Unlock()
		return nil
	}
	s.closeLocked(&SessionError{Code: code, Reason: reason},
		appendClose(nil, s.d, true, code, reason), websocket.StatusNormalClosure)
	s.mu.Unlock()
	<-s.closeWritten
	return nil
}

func (s *wsSession) Context() context.Context { return s.ctx }

func (s *wsSession) Protocol() string { return s.proto }

func (s *wsSession) Kind() string { return KindWebSocket }

// Stats counts WebSocket message payload bytes; TCP offers no RTT or
// bandwidth estimate here, so those stay zero.
func (s *wsSession) Stats() Stats {
	return Stats{BytesSent: s.bytesSent.Load(), BytesReceived: s.bytesRecv.Load()}
}

func (s *wsSession) RemoteAddr() net.Addr { return s.remote }

func (s *wsSession) Request() *ConnectRequest { return s.req }

// ---- opening and accepting ----

func (s *wsSession) open(ctx context.Context, dir int) (*wsStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closeErr != nil {
			return nil, s.closeErr
		}
		if s.nextLocal[dir] < s.peerMaxStreams[dir] {
			break
		}
		if s.paramsIn && s.streamsBlockedAt[dir] != s.peerMaxStreams[dir]+1 {
			s.streamsBlockedAt[dir] = s.peerMaxStreams[dir] + 1
			s.queueCtrlLocked(appendValueFrame(nil, uint64(ftStreamsBlockedBidi+dir), s.peerMaxStreams[dir]))
		}
		ch := s.openSig[dir].wait()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.ctx.Done():
		case <-ctx.Done():
			s.mu.Lock()
			return nil, ctx.Err()
		}
		s.mu.Lock()
	}
	id := s.nextLocal[dir]<<2 | uint64(dir)<<1
	if s.server {
		id |= 1
	}
	s.nextLocal[dir]++
	return s.newStreamLocked(id, true), nil
}

func (s *wsSession) accept(ctx context.Context, dir int) (*wsStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closeErr != nil {
			return nil, s.closeErr
		}
		if q := s.acceptQ[dir]; len(q) > 0 {
			st := q[0]
			q[0] = nil
			s.acceptQ[dir] = q[1:]
			st.accepted = true
			if st.removed {
				s.peerStreamDoneLocked(dir)
			}
			return st, nil
		}
		ch := s.acceptSig[dir].wait()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.ctx.Done():
		case <-ctx.Done():
			s.mu.Lock()
			return nil, ctx.Err()
		}
		s.mu.Lock()
	}
}

func (s *wsSession) newStreamLocked(id uint64, local bool) *wsStream {
	uni := dirOf(id) == dirUni
	st := &wsStream{s: s, id: id, local: local, canSend: !uni || local, canRecv: !uni || !local}
	if st.canSend {
		st.sendCtx, st.sendCancel = context.WithCancelCause(context.Background())
		switch {
		case uni:
			st.sendMax = s.peerParams.MaxStreamDataUni
		case local:
			st.sendMax = s.peerParams.MaxStreamDataBidiRemote
		default:
			st.sendMax = s.peerParams.MaxStreamDataBidiLocal
		}
	}
	if st.canRecv {
		switch {
		case uni:
			st.recvWin = s.limits.params.MaxStreamDataUni
		case local:
			st.recvWin = s.limits.params.MaxStreamDataBidiLocal
		default:
			st.recvWin = s.limits.params.MaxStreamDataBidiRemote
		}
		st.recvMax = st.recvWin
	}
	s.streams[id] = st
	return st
}

// streamForFrameLocked finds the stream a frame refers to; recv tells
// whether the frame concerns our receive side (STREAM, RESET_STREAM) or our
// send side (STOP_SENDING, MAX_STREAM_DATA). A frame for a new peer stream
// opens it and every lower-numbered one of its kind, as in QUIC. A nil
// stream without error means the stream has already ended.
func (s *wsSession) streamForFrameLocked(id uint64, recv bool) (*wsStream, error) {
	local := (id&1 != 0) == s.server
	dir := dirOf(id)
	if dir == dirUni && local == recv {
		return nil, violation(errCodeStreamState, "frame for the wrong side of unidirectional stream %d", id)
	}
	idx := id >> 2
	if local {
		if idx >= s.nextLocal[dir] {
			return nil, violation(errCodeStreamState, "frame for stream %d, which was never opened", id)
		}
		return s.streams[id], nil
	}
	if idx < s.nextPeer[dir] {
		return s.streams[id], nil
	}
	if idx >= s.peerLimit[dir] {
		return nil, violation(errCodeStreamLimit, "stream %d exceeds the limit of %d streams", id, s.peerLimit[dir])
	}
	for i := s.nextPeer[dir]; i <= idx; i++ {
		st := s.newStreamLocked(i<<2|id&3, false)
		s.acceptQ[dir] = append(s.acceptQ[dir], st)
	}
	s.nextPeer[dir] = idx + 1
	s.acceptSig[dir].broadcast()
	return s.streams[id], nil
}

// maybeRemoveLocked forgets a stream once both of its sides have ended.
// A peer stream frees its slot of the stream limit once it is also accepted.
func (s *wsSession) maybeRemoveLocked(st *wsStream) {
	if st.removed {
		return
	}
	sendDone := !st.canSend || st.finSent || st.sendErr != nil
	recvDone := !st.canRecv || st.recvErr != nil || (st.fin && st.buffered == 0)
	if !sendDone || !recvDone {
		return
	}
	st.removed = true
	delete(s.streams, st.id)
	if !st.local && st.accepted {
		s.peerStreamDoneLocked(dirOf(st.id))
	}
}

// peerStreamDoneLocked raises the peer's stream limit by one finished
// stream; in qmux-00 the new limit is advertised once half the initial
// allowance has been freed.
func (s *wsSession) peerStreamDoneLocked(dir int) {
	s.peerDone[dir]++
	if s.d == dialectLegacy {
		s.peerLimit[dir] = s.limits.legacyMaxStreams + s.peerDone[dir]
		return
	}
	initial := s.limits.params.MaxStreamsBidi
	if dir == dirUni {
		initial = s.limits.params.MaxStreamsUni
	}
	target := initial + s.peerDone[dir]
	if target > s.peerLimit[dir] && target-s.peerLimit[dir] >= max(initial/2, 1) {
		s.peerLimit[dir] = target
		s.maxStreamsPending[dir] = true
		s.wakeWriter()
	}
}

// ---- flow control ----

// creditConnLocked records n stream bytes read or discarded and raises
// the connection window once half of it is free again.
func (s *wsSession) creditConnLocked(n int) {
	s.consumed += uint64(n)
	if s.d != dialectQMux00 {
		return
	}
	w := s.limits.params.MaxData
	if target := s.consumed + w; target > s.recvMax && target-s.recvMax >= w/2 {
		s.recvMax = target
		s.maxDataPending = true
		s.wakeWriter()
	}
}

// creditStreamLocked raises a stream's window once half of it has been read.
func (s *wsSession) creditStreamLocked(st *wsStream) {
	if s.d != dialectQMux00 || st.fin || st.recvErr != nil {
		return
	}
	w := st.recvWin
	if target := st.readOff + w; target > st.recvMax && target-st.recvMax >= w/2 {
		st.recvMax = target
		if !st.msdQueued {
			st.msdQueued = true
			s.msdQ = append(s.msdQ, st)
		}
		s.wakeWriter()
	}
}

// discardLocked drops a stream's unread data, crediting it to the connection.
func (s *wsSession) discardLocked(st *wsStream) {
	n := st.buffered
	clear(st.bufs)
	st.bufs = nil
	st.buffered = 0
	st.readOff += uint64(n)
	s.buffered -= n
	s.drainSig.broadcast()
	s.creditConnLocked(n)
}

// ---- incoming frames ----

func (s *wsSession) readLoop() {
	defer close(s.readerDone)
	// Messages are decoded in place; only buffered stream data is copied.
	scratch := make([]byte, wsReadLimit+1)
	for {
		typ, msg, err := s.readMessage(scratch)
		if err != nil {
			s.mu.Lock()
			s.closeLocked(wsConnLost(err), nil, 0)
			s.mu.Unlock()
			return
		}
		s.bytesRecv.Add(uint64(len(msg)))
		if typ != websocket.MessageBinary {
			continue
		}
		s.mu.Lock()
		if s.closeErr != nil {
			// Closed locally: drain until the close handshake ends.
			s.mu.Unlock()
			continue
		}
		err = decodeMessage(s.d, msg, s.handleFrameLocked)
		if bf, ok := errors.AsType[*bufferFullError](err); ok {
			err = s.retryWhenDrainedLocked(msg, bf)
		}
		if s.closeErr != nil && !errors.Is(err, errRemoteClose) {
			s.mu.Unlock()
			continue
		}
		if errors.Is(err, errRemoteClose) {
			s.mu.Unlock()
			return
		}
		if err != nil {
			v := asViolation(err)
			s.closeLocked(v, appendClose(nil, s.d, false, v.Code, v.Reason), websocket.StatusProtocolError)
		}
		s.mu.Unlock()
	}
}

// retryWhenDrainedLocked applies backpressure for a legacy message that
// does not fit the receive buffers: it stops reading the socket and retries
// the message whenever the application reads, for up to legacyStall.
func (s *wsSession) retryWhenDrainedLocked(msg []byte, bf *bufferFullError) error {
	deadline := time.Now().Add(s.limits.legacyStall)
	for {
		if time.Now().After(deadline) {
			return violation(errCodeFlowControl, "%s for %v", bf.reason, s.limits.legacyStall)
		}
		ch := s.drainSig.wait()
		s.mu.Unlock()
		waitSignal(ch, deadline, s.ctx.Done())
		s.mu.Lock()
		if s.closeErr != nil {
			return nil
		}
		err := decodeMessage(s.d, msg, s.handleFrameLocked)
		var again *bufferFullError
		if !errors.As(err, &again) {
			return err
		}
	}
}

// readMessage reads one whole message into buf.
func (s *wsSession) readMessage(buf []byte) (websocket.MessageType, []byte, error) {
	typ, r, err := s.conn.Reader(s.sockCtx)
	if err != nil {
		return 0, nil, err
	}
	n := 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		switch {
		case err == io.EOF:
			return typ, buf[:n], nil
		case err != nil:
			return 0, nil, err
		case n == len(buf):
			// The connection's read limit normally fails first.
			return 0, nil, fmt.Errorf("message larger than %d bytes", wsReadLimit)
		}
	}
}

func (s *wsSession) handleFrameLocked(f *qmuxFrame) error {
	if s.d == dialectQMux00 && !s.paramsIn && f.kind != fkTransportParams {
		return violation(errCodeProtocolViolation, "first frame is not QX_TRANSPORT_PARAMETERS")
	}
	switch f.kind {
	case fkTransportParams:
		if !s.paramsIn {
			s.paramsIn = true
			s.peerParams = f.params
			s.sendMax = f.params.MaxData
			s.peerMaxStreams = [2]uint64{f.params.MaxStreamsBidi, f.params.MaxStreamsUni}
			s.openSig[dirBidi].broadcast()
			s.openSig[dirUni].broadcast()
		}
	case fkStream:
		return s.onStreamLocked(f)
	case fkResetStream:
		st, err := s.streamForFrameLocked(f.id, true)
		if st == nil || err != nil {
			return err
		}
		if st.recvErr != nil || st.fin {
			return nil // already ended; all data is here after a FIN
		}
		st.recvErr = &StreamError{Code: f.code, Remote: true}
		s.discardLocked(st)
		st.readSig.broadcast()
		s.maybeRemoveLocked(st)
	case fkStopSending:
		st, err := s.streamForFrameLocked(f.id, false)
		if st == nil || err != nil {
			return err
		}
		// The peer will not read: reset with its code, as QUIC requires.
		st.resetLocked(&StreamError{Code: f.code, Remote: true})
	case fkClose:
		var err error = &SessionError{Code: f.code, Reason: f.reason, Remote: true}
		if !f.appClose {
			err = &qmuxError{Code: f.code, Reason: f.reason, Remote: true}
		}
		s.closeLocked(err, nil, websocket.StatusNormalClosure)
		return errRemoteClose
	case fkMaxData:
		if f.value > s.sendMax {
			s.sendMax = f.value
			for _, st := range s.streams {
				if len(st.pending) > 0 {
					s.markReadyLocked(st)
				}
			}
		}
	case fkMaxStreamData:
		st, err := s.streamForFrameLocked(f.id, false)
		if st == nil || err != nil {
			return err
		}
		if f.value > st.sendMax {
			st.sendMax = f.value
			if len(st.pending) > 0 {
				s.markReadyLocked(st)
			}
		}
	case fkMaxStreams:
		dir := dirBidi
		if f.uni {
			dir = dirUni
		}
		if f.value > s.peerMaxStreams[dir] {
			s.peerMaxStreams[dir] = f.value
			s.openSig[dir].broadcast()
		}
	case fkDataBlocked, fkStreamDataBlocked, fkStreamsBlocked, fkIgnored:
		// Informational.
	}
	return nil
}

func (s *wsSession) onStreamLocked(f *qmuxFrame) error {
	n := len(f.data)
	if n > maxStreamPayload {
		return violation(errCodeProtocolViolation, "STREAM frame of %d bytes exceeds %d", n, maxStreamPayload)
	}
	st, err := s.streamForFrameLocked(f.id, true)
	if err != nil {
		return err
	}
	if s.d == dialectQMux00 && s.recvd+uint64(n) > s.recvMax {
		return violation(errCodeFlowControl, "connection data limit of %d bytes exceeded", s.recvMax)
	}
	s.recvd += uint64(n)
	if st == nil {
		s.creditConnLocked(n) // stream already ended: discard
		return nil
	}
	if f.hasOffset && f.offset != st.recvd {
		return violation(errCodeProtocolViolation, "stream %d: data at offset %d, expected %d", f.id, f.offset, st.recvd)
	}
	if st.fin && n > 0 {
		return violation(errCodeFinalSize, "stream %d: data after FIN", f.id)
	}
	if s.d == dialectQMux00 && st.recvd+uint64(n) > st.recvMax {
		return violation(errCodeFlowControl, "stream %d: data limit of %d bytes exceeded", f.id, st.recvMax)
	}
	if s.d == dialectLegacy && st.recvErr == nil && n > 0 {
		// Checked before any state changes: the frame may be retried.
		if st.buffered+n > s.limits.legacyStreamBuffer {
			return &bufferFullError{fmt.Sprintf("stream %d: more than %d unread bytes", f.id, s.limits.legacyStreamBuffer)}
		}
		if s.buffered+n > s.limits.legacySessionBuffer {
			return &bufferFullError{fmt.Sprintf("more than %d unread bytes", s.limits.legacySessionBuffer)}
		}
	}
	st.recvd += uint64(n)
	switch {
	case st.recvErr != nil:
		st.readOff += uint64(n)
		s.creditConnLocked(n)
	case n > 0:
		st.appendRecv(f.data)
		st.buffered += n
		s.buffered += n
	}
	if f.fin {
		st.fin = true
	}
	st.readSig.broadcast()
	s.maybeRemoveLocked(st)
	return nil
}

// ---- outgoing frames ----

func (s *wsSession) wakeWriter() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *wsSession) queueCtrlLocked(f []byte) {
	s.ctrl = append(s.ctrl, f)
	s.wakeWriter()
}

func (s *wsSession) markReadyLocked(st *wsStream) {
	if !st.inReady {
		st.inReady = true
		s.ready = append(s.ready, st)
	}
	s.wakeWriter()
}

func (s *wsSession) writeLoop() {
	defer func() {
		close(s.done)
		if s.onDone != nil {
			s.onDone()
		}
	}()
	for {
		s.mu.Lock()
		var f []byte
		for s.closeErr == nil {
			if f = s.nextFrameLocked(); f != nil {
				break
			}
			s.mu.Unlock()
			select {
			case <-s.wake:
			case <-s.ctx.Done():
			}
			s.mu.Lock()
		}
		if s.closeErr != nil {
			frame, status, reason := s.closeFrame, s.wsStatus, s.wsReason
			s.mu.Unlock()
			s.shutdown(frame, status, reason)
			return
		}
		s.mu.Unlock()
		if err := s.conn.Write(s.sockCtx, websocket.MessageBinary, f); err != nil {
			s.mu.Lock()
			s.closeLocked(wsConnLost(err), nil, 0)
			s.mu.Unlock()
			continue
		}
		s.bytesSent.Add(uint64(len(f)))
	}
}

// shutdown sends the close frame, if any, and closes the socket.
func (s *wsSession) shutdown(frame []byte, status websocket.StatusCode, reason string) {
	if frame != nil {
		if err := s.conn.Write(s.sockCtx, websocket.MessageBinary, frame); err == nil {
			s.bytesSent.Add(uint64(len(frame)))
		}
	}
	close(s.closeWritten)
	if status == 0 {
		status = websocket.StatusNormalClosure
	}
	// The close handshake needs the reader goroutine to see the peer's
	// close frame; cancelling sockCtx (after wsCloseTimeout at the latest)
	// drops the connection if the peer does not answer.
	_ = s.conn.Close(status, reason)
	s.sockCancel()
	<-s.readerDone
	s.mu.Lock()
	s.killTimer.Stop()
	s.mu.Unlock()
}

// nextFrameLocked builds the next message to send, or returns nil.
func (s *wsSession) nextFrameLocked() []byte {
	if s.d == dialectQMux00 && !s.paramsOut {
		s.paramsOut = true
		return appendTransportParams(nil, s.limits.params)
	}
	if f := s.popCtrlLocked(); f != nil {
		return f
	}
	if s.maxDataPending {
		s.maxDataPending = false
		return appendValueFrame(nil, ftMaxData, s.recvMax)
	}
	for dir := range 2 {
		if s.maxStreamsPending[dir] {
			s.maxStreamsPending[dir] = false
			return appendValueFrame(nil, uint64(ftMaxStreamsBidi+dir), s.peerLimit[dir])
		}
	}
	for len(s.msdQ) > 0 {
		st := s.msdQ[0]
		s.msdQ[0] = nil
		s.msdQ = s.msdQ[1:]
		st.msdQueued = false
		if st.recvErr == nil && !st.fin {
			return appendStreamValueFrame(nil, ftMaxStreamData, st.id, st.recvMax)
		}
	}
	for len(s.ready) > 0 {
		st := s.ready[0]
		s.ready[0] = nil
		s.ready = s.ready[1:]
		st.inReady = false
		f, again := s.streamFrameLocked(st)
		if again {
			st.inReady = true
			s.ready = append(s.ready, st)
		}
		if f != nil {
			return f
		}
	}
	// Streams blocked by flow control may have queued *_BLOCKED frames.
	return s.popCtrlLocked()
}

func (s *wsSession) popCtrlLocked() []byte {
	if len(s.ctrl) == 0 {
		return nil
	}
	f := s.ctrl[0]
	s.ctrl[0] = nil
	s.ctrl = s.ctrl[1:]
	if len(s.ctrl) == 0 {
		s.ctrl = nil
	}
	return f
}

// streamFrameLocked frames the next chunk of a stream's pending write, or
// its FIN once the data is out. again reports more work for the stream.
func (s *wsSession) streamFrameLocked(st *wsStream) (f []byte, again bool) {
	if st.sendErr != nil || st.finSent {
		return nil, false
	}
	if len(st.pending) > 0 {
		n := min(len(st.pending), maxStreamPayload)
		if s.d == dialectQMux00 {
			streamCredit, connCredit := st.sendMax-st.sent, s.sendMax-s.sent
			n = int(min(uint64(n), streamCredit, connCredit))
			if n == 0 {
				// Parked until MAX_STREAM_DATA or MAX_DATA re-queues it.
				if streamCredit == 0 && st.blockedAt != st.sendMax+1 {
					st.blockedAt = st.sendMax + 1
					s.ctrl = append(s.ctrl, appendStreamValueFrame(nil, ftStreamDataBlocked, st.id, st.sendMax))
				}
				if connCredit == 0 && s.dataBlockedAt != s.sendMax+1 {
					s.dataBlockedAt = s.sendMax + 1
					s.ctrl = append(s.ctrl, appendValueFrame(nil, ftDataBlocked, s.sendMax))
				}
				return nil, false
			}
		}
		f = appendStreamFrame(s.wbuf[:0], s.d, st.id, st.pending[:n], false)
		s.wbuf = f
		st.pending = st.pending[n:]
		st.sent += uint64(n)
		s.sent += uint64(n)
		if len(st.pending) == 0 {
			st.pending = nil
			st.sendSig.broadcast()
		}
		return f, len(st.pending) > 0 || st.finReq
	}
	if st.finReq {
		st.finSent = true
		s.maybeRemoveLocked(st)
		s.wbuf = appendStreamFrame(s.wbuf[:0], s.d, st.id, nil, true)
		return s.wbuf, false
	}
	return nil, false
}

// ---- ending ----

// closeLocked ends the session once: err becomes the cause reported
// everywhere, frame (if any) is sent before the socket closes with status.
func (s *wsSession) closeLocked(err error, frame []byte, status websocket.StatusCode) {
	if s.closeErr != nil {
		return
	}
	s.closeErr = err
	s.closeFrame = frame
	s.wsStatus = status
	// @moq/qmux reports the WebSocket close reason to the application
	// (its closed promise), not the one of the close frame, so a local
	// close carries the reason there too.
	if frame != nil {
		switch e := err.(type) {
		case *SessionError:
			s.wsReason = truncateUTF8(e.Reason, maxWSCloseReason)
		case *qmuxError:
			s.wsReason = truncateUTF8(e.Reason, maxWSCloseReason)
		}
	}
	s.cancel(err)
	for _, st := range s.streams {
		if st.canSend {
			st.sendCancel(err)
		}
		st.sendSig.broadcast()
		st.readSig.broadcast()
	}
	for dir := range 2 {
		s.openSig[dir].broadcast()
		s.acceptSig[dir].broadcast()
	}
	s.killTimer = time.AfterFunc(wsCloseTimeout, s.sockCancel)
	s.wakeWriter()
}

// wsConnLost describes a socket that failed or closed without a session close.
func wsConnLost(err error) error {
	if ce, ok := errors.AsType[websocket.CloseError](err); ok {
		return fmt.Errorf("transport: websocket closed by peer without a session close (status %d %q): %w", int(ce.Code), ce.Reason, net.ErrClosed)
	}
	return fmt.Errorf("transport: websocket connection lost: %w", err)
}

// ---- streams ----

// wsStream is one stream of a wsSession. Bidirectional streams use both
// halves; unidirectional ones only the half their direction allows.
type wsStream struct {
	s       *wsSession
	id      uint64
	local   bool
	canSend bool
	canRecv bool

	sendCtx    context.Context
	sendCancel context.CancelCauseFunc

	// Guarded by s.mu.

	// Send side.
	pending   []byte // the caller's buffer of the Write in progress, not yet framed
	finReq    bool   // Close was called
	finSent   bool
	sendErr   error  // *StreamError once reset locally or stopped by the peer
	sent      uint64 // bytes framed
	sendMax   uint64 // peer's limit for this stream (qmux-00)
	blockedAt uint64 // limit+1 for which STREAM_DATA_BLOCKED was sent
	inReady   bool
	sendSig   signal

	// Receive side.
	bufs      [][]byte
	buffered  int
	recvd     uint64 // bytes received
	readOff   uint64 // bytes read or discarded
	recvMax   uint64 // our advertised limit (qmux-00)
	recvWin   uint64
	fin       bool
	recvErr   error // *StreamError once reset by the peer or cancelled locally
	msdQueued bool
	readSig   signal
	deadline  time.Time

	removed  bool
	accepted bool
}

var (
	_ Stream        = (*wsStream)(nil)
	_ SendStream    = (*wsStream)(nil)
	_ ReceiveStream = (*wsStream)(nil)
)

var (
	errWriteOnClosed = errors.New("transport: write on a closed stream")
	errNotSendable   = errors.New("transport: stream cannot send")
	errNotReadable   = errors.New("transport: stream cannot receive")
)

// Write hands p to the writer goroutine and returns once all of it has been
// framed, the stream is reset or stopped, or the session ends.
func (st *wsStream) Write(p []byte) (int, error) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := st.writeErrLocked(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	st.pending = p
	s.markReadyLocked(st)
	for len(st.pending) > 0 {
		if err := st.writeErrLocked(); err != nil {
			n := len(p) - len(st.pending)
			st.pending = nil
			return n, err
		}
		ch := st.sendSig.wait()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.ctx.Done():
		}
		s.mu.Lock()
	}
	return len(p), nil
}

func (st *wsStream) writeErrLocked() error {
	switch {
	case !st.canSend:
		return errNotSendable
	case st.s.closeErr != nil:
		return st.s.closeErr
	case st.sendErr != nil:
		return st.sendErr
	case st.finReq:
		return errWriteOnClosed
	}
	return nil
}

// Close queues the FIN after the data written so far.
func (st *wsStream) Close() error {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !st.canSend:
		return errNotSendable
	case s.closeErr != nil:
		return s.closeErr
	case st.sendErr != nil || st.finReq:
		return nil
	}
	st.finReq = true
	st.sendCancel(context.Canceled)
	s.markReadyLocked(st)
	return nil
}

// CancelWrite abandons the send side with RESET_STREAM, unless the FIN has
// already been sent.
func (st *wsStream) CancelWrite(code uint64) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.canSend || s.closeErr != nil {
		return
	}
	st.resetLocked(&StreamError{Code: code})
}

// resetLocked ends the send side with err and queues RESET_STREAM with its
// code. Unframed data is dropped; frames already built precede the reset.
func (st *wsStream) resetLocked(err *StreamError) {
	s := st.s
	if st.finSent || st.sendErr != nil {
		return
	}
	st.sendErr = err
	st.pending = nil
	s.queueCtrlLocked(appendResetStream(nil, s.d, st.id, err.Code, st.sent))
	st.sendCancel(err)
	st.sendSig.broadcast()
	s.maybeRemoveLocked(st)
}

// SetPriority is a no-op: all streams share the socket round-robin.
func (st *wsStream) SetPriority(int8) {}

// Context is done when the send side ends; see SendStream.Context.
func (st *wsStream) Context() context.Context {
	if st.sendCtx == nil {
		return st.s.ctx
	}
	return st.sendCtx
}

// Read returns buffered data, io.EOF after the FIN, or the reset or
// session error.
func (st *wsStream) Read(p []byte) (int, error) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.canRecv {
		return 0, errNotReadable
	}
	for {
		switch {
		case st.recvErr != nil:
			return 0, st.recvErr
		case s.closeErr != nil:
			return 0, s.closeErr
		case st.buffered > 0:
			return st.readLocked(p), nil
		case st.fin:
			return 0, io.EOF
		case len(p) == 0:
			return 0, nil
		}
		deadline := st.deadline
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		ch := st.readSig.wait()
		s.mu.Unlock()
		waitSignal(ch, deadline, s.ctx.Done())
		s.mu.Lock()
	}
}

// recvChunkMax bounds the chunks small STREAM payloads are gathered in.
const recvChunkMax = 4 << 10

// appendRecv buffers a copy of data at the end of the stream's unread
// bytes. Small payloads are gathered into chunks that double up to
// recvChunkMax, so the memory a stream holds stays close to the bytes it
// buffers (what the limits count): a peer sending one-byte frames would
// otherwise cost an allocation and a slice header per byte.
func (st *wsStream) appendRecv(data []byte) {
	last := len(st.bufs) - 1
	if last >= 0 && cap(st.bufs[last])-len(st.bufs[last]) >= len(data) {
		st.bufs[last] = append(st.bufs[last], data...)
		return
	}
	size := 64
	if last >= 0 {
		size = min(2*cap(st.bufs[last]), recvChunkMax)
	}
	c := make([]byte, len(data), max(len(data), size))
	copy(c, data)
	st.bufs = append(st.bufs, c)
}

func (st *wsStream) readLocked(p []byte) int {
	s := st.s
	n := 0
	for n < len(p) && len(st.bufs) > 0 {
		c := copy(p[n:], st.bufs[0])
		n += c
		if c == len(st.bufs[0]) {
			st.bufs[0] = nil
			st.bufs = st.bufs[1:]
		} else {
			st.bufs[0] = st.bufs[0][c:]
		}
	}
	if len(st.bufs) == 0 {
		st.bufs = nil
	}
	st.buffered -= n
	st.readOff += uint64(n)
	s.buffered -= n
	s.drainSig.broadcast()
	s.creditConnLocked(n)
	s.creditStreamLocked(st)
	s.maybeRemoveLocked(st)
	return n
}

func waitSignal(ch <-chan struct{}, deadline time.Time, done <-chan struct{}) {
	if deadline.IsZero() {
		select {
		case <-ch:
		case <-done:
		}
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
	case <-done:
	case <-t.C:
	}
}

// CancelRead discards unread data and, unless the FIN already arrived,
// sends STOP_SENDING. Later Reads fail with a local *StreamError.
func (st *wsStream) CancelRead(code uint64) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.canRecv || s.closeErr != nil || st.recvErr != nil {
		return
	}
	st.recvErr = &StreamError{Code: code}
	s.discardLocked(st)
	if !st.fin {
		s.queueCtrlLocked(appendStopSending(nil, s.d, st.id, code))
	}
	st.readSig.broadcast()
	s.maybeRemoveLocked(st)
}

func (st *wsStream) SetReadDeadline(t time.Time) error {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st.deadline = t
	st.readSig.broadcast()
	return nil
}

package transport

import (
	"context"
	"errors"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
)

// closeLinger bounds how long the QUIC connection of a locally closed
// WebTransport session stays open. The WT_CLOSE_SESSION capsule is only
// queued on the CONNECT stream when CloseWithError returns; closing the QUIC
// connection at once would usually drop it, and the peer would see a bare
// connection close instead of the session's code and reason. The peer closes
// the connection itself when it reads the capsule, which ends the wait early.
const closeLinger = time.Second

// HTTP/3 error-code space used by WebTransport for application codes
// (draft-ietf-webtrans-http3): code n travels as first + n + n/0x1e.
const (
	wtFirstErrorCode = 0x52e4a40fa8db
	wtLastErrorCode  = 0x52e5ac983162
)

// wtSession adapts a WebTransport session. Each session owns its QUIC
// connection: the listener admits one session per connection (webtransport-go
// refuses a second one without WebTransport flow control) and the dialer
// creates one connection per session, so the connection is closed when the
// session ends.
type wtSession struct {
	sess *webtransport.Session
	conn *quic.Conn
	req  *ConnectRequest

	closedLocally atomic.Bool
}

var _ Session = (*wtSession)(nil)

func newWTSession(sess *webtransport.Session, conn *quic.Conn, req *ConnectRequest) *wtSession {
	s := &wtSession{sess: sess, conn: conn, req: req}
	context.AfterFunc(sess.Context(), s.closeConn)
	return s
}

// closeConn closes the QUIC connection once the session has ended; see
// closeLinger for why a locally closed session waits for the peer first.
func (s *wtSession) closeConn() {
	if s.closedLocally.Load() {
		t := time.NewTimer(closeLinger)
		select {
		case <-s.conn.Context().Done():
		case <-t.C:
		}
		t.Stop()
	}
	_ = s.conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
}

func (s *wtSession) OpenStream(ctx context.Context) (Stream, error) {
	str, err := s.sess.OpenStreamSync(ctx)
	if err != nil {
		return nil, wtError(err)
	}
	return &wtStream{str: str}, nil
}

func (s *wtSession) OpenUniStream(ctx context.Context) (SendStream, error) {
	str, err := s.sess.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, wtError(err)
	}
	return &wtSendStream{str: str}, nil
}

func (s *wtSession) AcceptStream(ctx context.Context) (Stream, error) {
	str, err := s.sess.AcceptStream(ctx)
	if err != nil {
		return nil, wtError(err)
	}
	return &wtStream{str: str}, nil
}

func (s *wtSession) AcceptUniStream(ctx context.Context) (ReceiveStream, error) {
	str, err := s.sess.AcceptUniStream(ctx)
	if err != nil {
		return nil, wtError(err)
	}
	return &wtReceiveStream{str: str}, nil
}

// CloseWithError sends WT_CLOSE_SESSION. WebTransport session codes are 32
// bits wide; larger codes are clamped to math.MaxUint32.
func (s *wtSession) CloseWithError(code uint64, reason string) error {
	s.closedLocally.Store(true)
	return s.sess.CloseWithError(webtransport.SessionErrorCode(clamp32(code)), reason)
}

func (s *wtSession) Context() context.Context { return s.sess.Context() }

func (s *wtSession) Protocol() string { return s.sess.SessionState().ApplicationProtocol }

func (s *wtSession) Kind() string { return KindWebTransport }

func (s *wtSession) Stats() Stats { return connStats(s.conn) }

func (s *wtSession) RemoteAddr() net.Addr { return s.sess.RemoteAddr() }

func (s *wtSession) Request() *ConnectRequest { return s.req }

func clamp32(code uint64) uint32 {
	if code > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(code)
}

// wtError maps webtransport-go's errors (which already carry WebTransport
// codes) to this package's types; anything else is returned unchanged.
func wtError(err error) error {
	if err == nil {
		return nil
	}
	if se, ok := errors.AsType[*webtransport.StreamError](err); ok {
		return &StreamError{Code: uint64(se.ErrorCode), Remote: se.Remote}
	}
	if se, ok := errors.AsType[*webtransport.SessionError](err); ok {
		return &SessionError{Code: uint64(se.ErrorCode), Reason: se.Message, Remote: se.Remote}
	}
	return err
}

// wtSendCause maps the cause of a WebTransport send stream's context. That
// context belongs to the underlying QUIC stream, so its cause carries raw
// QUIC errors with codes in the HTTP/3 space, which webtransport-go does not
// translate there.
func wtSendCause(err error) error {
	if errors.Is(err, quic.ErrStreamClosed) {
		return context.Canceled
	}
	if se, ok := errors.AsType[*quic.StreamError](err); ok {
		// Both codes are sent by webtransport-go when the stream's session
		// is gone (closed, or already unknown when the stream arrived).
		if se.ErrorCode == webtransport.WTSessionGoneErrorCode || se.ErrorCode == webtransport.WTBufferedStreamRejectedErrorCode {
			return errSessionGone
		}
		if code, ok := httpToWTCode(uint64(se.ErrorCode)); ok {
			return &StreamError{Code: code, Remote: se.Remote}
		}
		return &StreamError{Code: uint64(se.ErrorCode), Remote: se.Remote}
	}
	return wtError(err)
}

// httpToWTCode inverts the WebTransport mapping of application codes into the
// HTTP/3 error space, skipping the reserved GREASE code points.
func httpToWTCode(h uint64) (uint64, bool) {
	if h < wtFirstErrorCode || h > wtLastErrorCode || (h-0x21)%0x1f == 0 {
		return 0, false
	}
	shifted := h - wtFirstErrorCode
	return shifted - shifted/0x1f, true
}

// wtSendStream adapts a WebTransport unidirectional send stream.
type wtSendStream struct {
	str *webtransport.SendStream

	ctxOnce sync.Once
	ctx     context.Context
}

func (s *wtSendStream) Write(p []byte) (int, error) {
	n, err := s.str.Write(p)
	return n, wtError(err)
}

func (s *wtSendStream) Close() error { return wtError(s.str.Close()) }

// CancelWrite clamps codes to 32 bits, the WebTransport stream code width.
// It also expires the write deadline: webtransport-go v0.13.0 parks a
// Write that saw the peer's WT_SESSION_GONE until the session closes,
// which CancelWrite alone does not end (a forwarder's writer parked so
// held the session's shutdown, and a relay's Close, for ever).
func (s *wtSendStream) CancelWrite(code uint64) {
	s.str.CancelWrite(webtransport.StreamErrorCode(clamp32(code)))
	_ = s.str.SetWriteDeadline(time.Now())
}

// SetPriority is a no-op: webtransport-go keeps the QUIC stream private and
// offers no priority setter.
func (s *wtSendStream) SetPriority(int8) {}

func (s *wtSendStream) Context() context.Context {
	s.ctxOnce.Do(func() { s.ctx = translatedContext(s.str.Context(), wtSendCause) })
	return s.ctx
}

// wtReceiveStream adapts a WebTransport unidirectional receive stream.
type wtReceiveStream struct {
	str *webtransport.ReceiveStream
}

func (s *wtReceiveStream) Read(p []byte) (int, error) {
	n, err := s.str.Read(p)
	return n, wtError(err)
}

// CancelRead clamps codes to 32 bits, the WebTransport stream code width.
// It also expires the read deadline: webtransport-go v0.13.0 parks a Read
// that saw the peer's WT_SESSION_GONE until the session closes, which
// CancelRead alone does not end.
func (s *wtReceiveStream) CancelRead(code uint64) {
	s.str.CancelRead(webtransport.StreamErrorCode(clamp32(code)))
	_ = s.str.SetReadDeadline(time.Now())
}

func (s *wtReceiveStream) SetReadDeadline(t time.Time) error {
	return wtError(s.str.SetReadDeadline(t))
}

// wtStream adapts a WebTransport bidirectional stream.
type wtStream struct {
	str *webtransport.Stream

	ctxOnce sync.Once
	ctx     context.Context
}

func (s *wtStream) Write(p []byte) (int, error) {
	n, err := s.str.Write(p)
	return n, wtError(err)
}

func (s *wtStream) Read(p []byte) (int, error) {
	n, err := s.str.Read(p)
	return n, wtError(err)
}

func (s *wtStream) Close() error { return wtError(s.str.Close()) }

// CancelWrite clamps codes to 32 bits and expires the write deadline; see
// wtSendStream.CancelWrite.
func (s *wtStream) CancelWrite(code uint64) {
	s.str.CancelWrite(webtransport.StreamErrorCode(clamp32(code)))
	_ = s.str.SetWriteDeadline(time.Now())
}

// CancelRead clamps codes to 32 bits and expires the read deadline; see
// wtReceiveStream.CancelRead.
func (s *wtStream) CancelRead(code uint64) {
	s.str.CancelRead(webtransport.StreamErrorCode(clamp32(code)))
	_ = s.str.SetReadDeadline(time.Now())
}

// SetPriority is a no-op; see wtSendStream.SetPriority.
func (s *wtStream) SetPriority(int8) {}

func (s *wtStream) SetReadDeadline(t time.Time) error {
	return wtError(s.str.SetReadDeadline(t))
}

func (s *wtStream) Context() context.Context {
	s.ctxOnce.Do(func() { s.ctx = translatedContext(s.str.Context(), wtSendCause) })
	return s.ctx
}

var (
	_ Stream        = (*wtStream)(nil)
	_ SendStream    = (*wtSendStream)(nil)
	_ ReceiveStream = (*wtReceiveStream)(nil)
)

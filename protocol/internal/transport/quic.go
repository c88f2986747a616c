package transport

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// quicSession adapts a raw QUIC connection whose ALPN is a MOQ protocol.
type quicSession struct {
	conn *quic.Conn
	req  *ConnectRequest

	ctxOnce sync.Once
	ctx     context.Context
}

var _ Session = (*quicSession)(nil)

func newQUICSession(conn *quic.Conn, req *ConnectRequest) *quicSession {
	return &quicSession{conn: conn, req: req}
}

func (s *quicSession) OpenStream(ctx context.Context) (Stream, error) {
	str, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, quicError(err)
	}
	return &quicStream{str: str}, nil
}

func (s *quicSession) OpenUniStream(ctx context.Context) (SendStream, error) {
	str, err := s.conn.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, quicError(err)
	}
	return (*quicSendStream)(str), nil
}

func (s *quicSession) AcceptStream(ctx context.Context) (Stream, error) {
	str, err := s.conn.AcceptStream(ctx)
	if err != nil {
		return nil, quicError(err)
	}
	return &quicStream{str: str}, nil
}

func (s *quicSession) AcceptUniStream(ctx context.Context) (ReceiveStream, error) {
	str, err := s.conn.AcceptUniStream(ctx)
	if err != nil {
		return nil, quicError(err)
	}
	return (*quicReceiveStream)(str), nil
}

func (s *quicSession) CloseWithError(code uint64, reason string) error {
	return s.conn.CloseWithError(quic.ApplicationErrorCode(code), reason)
}

// Context translates the connection's close cause once, lazily, so that
// sessions nobody watches cost nothing extra.
func (s *quicSession) Context() context.Context {
	s.ctxOnce.Do(func() { s.ctx = translatedContext(s.conn.Context(), quicError) })
	return s.ctx
}

func (s *quicSession) Protocol() string {
	return s.conn.ConnectionState().TLS.NegotiatedProtocol
}

func (s *quicSession) Kind() string { return KindQUIC }

func (s *quicSession) Stats() Stats { return connStats(s.conn) }

func (s *quicSession) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

func (s *quicSession) Request() *ConnectRequest { return s.req }

// connStats converts quic-go's statistics. The bitrate estimate is what the
// congestion window allows per smoothed RTT, the best rate signal quic-go
// exposes (it has no bandwidth estimator of its own).
func connStats(conn *quic.Conn) Stats {
	cs := conn.ConnectionStats()
	st := Stats{
		SmoothedRTT:   cs.SmoothedRTT,
		MinRTT:        cs.MinRTT,
		BytesSent:     cs.BytesSent,
		BytesReceived: cs.BytesReceived,
	}
	if cs.SmoothedRTT > 0 && cs.CongestionWindow > 0 {
		st.EstimatedBitrate = uint64(float64(cs.CongestionWindow) * 8 / cs.SmoothedRTT.Seconds())
	}
	return st
}

// quicError maps quic-go's stream and connection errors to this package's
// types; anything else (timeouts, context errors, idle timeouts) is returned
// unchanged.
func quicError(err error) error {
	if err == nil {
		return nil
	}
	if se, ok := errors.AsType[*quic.StreamError](err); ok {
		return &StreamError{Code: uint64(se.ErrorCode), Remote: se.Remote}
	}
	if ae, ok := errors.AsType[*quic.ApplicationError](err); ok {
		return &SessionError{Code: uint64(ae.ErrorCode), Reason: ae.ErrorMessage, Remote: ae.Remote}
	}
	return err
}

// quicSendCause maps the cause of a quic-go send stream context. quic-go uses
// ErrStreamClosed after a clean Close; that is reported as context.Canceled
// to match the documented SendStream.Context contract.
func quicSendCause(err error) error {
	if errors.Is(err, quic.ErrStreamClosed) {
		return context.Canceled
	}
	return quicError(err)
}

// quicSendStream adapts a quic-go unidirectional send stream. It is the
// quic-go stream itself under another method set, so adapting one (a
// relay does it for every group and subscriber) allocates nothing.
type quicSendStream quic.SendStream

func (s *quicSendStream) str() *quic.SendStream { return (*quic.SendStream)(s) }

func (s *quicSendStream) Write(p []byte) (int, error) {
	n, err := s.str().Write(p)
	return n, quicError(err)
}

func (s *quicSendStream) Close() error { return quicError(s.str().Close()) }

func (s *quicSendStream) CancelWrite(code uint64) {
	s.str().CancelWrite(quic.StreamErrorCode(code))
}

// SetPriority uses non-incremental scheduling so that, within one urgency,
// an older stream (e.g. an older group) is sent to completion first.
func (s *quicSendStream) SetPriority(urgency int8) { s.str().SetPriority(urgency, false) }

// Context returns a new translating context on every call; callers that
// need it keep it.
func (s *quicSendStream) Context() context.Context {
	return translatedContext(s.str().Context(), quicSendCause)
}

// quicReceiveStream adapts a quic-go unidirectional receive stream, like
// quicSendStream without an allocation.
type quicReceiveStream quic.ReceiveStream

func (s *quicReceiveStream) str() *quic.ReceiveStream { return (*quic.ReceiveStream)(s) }

func (s *quicReceiveStream) Read(p []byte) (int, error) {
	n, err := s.str().Read(p)
	return n, quicError(err)
}

func (s *quicReceiveStream) CancelRead(code uint64) {
	s.str().CancelRead(quic.StreamErrorCode(code))
}

func (s *quicReceiveStream) SetReadDeadline(t time.Time) error {
	return s.str().SetReadDeadline(t)
}

// quicStream adapts a quic-go bidirectional stream.
type quicStream struct {
	str *quic.Stream

	ctxOnce sync.Once
	ctx     context.Context
}

func (s *quicStream) Write(p []byte) (int, error) {
	n, err := s.str.Write(p)
	return n, quicError(err)
}

func (s *quicStream) Read(p []byte) (int, error) {
	n, err := s.str.Read(p)
	return n, quicError(err)
}

func (s *quicStream) Close() error { return quicError(s.str.Close()) }

func (s *quicStream) CancelWrite(code uint64) {
	s.str.CancelWrite(quic.StreamErrorCode(code))
}

func (s *quicStream) CancelRead(code uint64) {
	s.str.CancelRead(quic.StreamErrorCode(code))
}

// SetPriority: see quicSendStream.SetPriority.
func (s *quicStream) SetPriority(urgency int8) { s.str.SetPriority(urgency, false) }

func (s *quicStream) SetReadDeadline(t time.Time) error { return s.str.SetReadDeadline(t) }

func (s *quicStream) Context() context.Context {
	s.ctxOnce.Do(func() { s.ctx = translatedContext(s.str.Context(), quicSendCause) })
	return s.ctx
}

var (
	_ Stream        = (*quicStream)(nil)
	_ SendStream    = (*quicSendStream)(nil)
	_ ReceiveStream = (*quicReceiveStream)(nil)
)

// Package transport owns the connection layer underneath moqbridge's MOQ Lite
// sessions: one small, transport-neutral Session/Stream interface and its
// adapters for raw QUIC (quic-go) and WebTransport over HTTP/3
// (webtransport-go), the WebSocket fallback (QUIC-style streams multiplexed
// over one WebSocket, as @moq/qmux speaks it), a Listener that serves raw QUIC
// and WebTransport from a single UDP port by routing on the TLS ALPN and,
// optionally, WebSocket and the certificate fingerprint on the TCP port of the
// same number, client dialers for every kind, and the TLS certificate helpers
// (self-signed development certificates, SHA-256 fingerprints, pinned client
// configurations).
//
// Session code is written only against the interfaces and error types of this
// package, so it never imports quic-go, webtransport-go or the WebSocket
// library.
package transport

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Session kinds reported by Session.Kind.
const (
	// KindQUIC is a raw QUIC connection whose ALPN names the MOQ protocol.
	KindQUIC = "quic"
	// KindWebTransport is a WebTransport session over HTTP/3.
	KindWebTransport = "webtransport"
	// KindWebSocket is the WebSocket fallback (QMux over WebSocket).
	KindWebSocket = "websocket"
)

// Session is one established connection: a raw QUIC connection, a
// WebTransport session or a WebSocket fallback session. All methods are safe
// for concurrent use.
type Session interface {
	// OpenStream opens a bidirectional stream. It blocks while the peer's
	// stream limit is reached, until ctx is done or the session ends.
	OpenStream(ctx context.Context) (Stream, error)
	// OpenUniStream opens a unidirectional send stream, blocking like OpenStream.
	OpenUniStream(ctx context.Context) (SendStream, error)
	// AcceptStream waits for the next bidirectional stream opened by the peer.
	AcceptStream(ctx context.Context) (Stream, error)
	// AcceptUniStream waits for the next unidirectional stream opened by the peer.
	AcceptUniStream(ctx context.Context) (ReceiveStream, error)
	// CloseWithError ends the session with an application error code and a
	// reason the peer receives as *SessionError.
	CloseWithError(code uint64, reason string) error
	// Context is cancelled when the session ends, for any reason.
	Context() context.Context
	// Protocol is the negotiated ALPN (raw QUIC), WT-Protocol (WebTransport)
	// or application protocol of the WebSocket subprotocol ("qmux-00.X"):
	// "moq-lite-04", "moq-lite-03", "moql", or "" when none was selected.
	Protocol() string
	// Kind is KindQUIC, KindWebTransport or KindWebSocket.
	Kind() string
	// Stats reports path and congestion statistics of the underlying connection.
	Stats() Stats
	// RemoteAddr is the peer's address.
	RemoteAddr() net.Addr
	// Request describes what the client asked for. For raw QUIC, which has no
	// URL, it is moqt://<SNI> with an empty path.
	Request() *ConnectRequest
}

// Stats are connection statistics used for metrics and adaptive bitrate.
type Stats struct {
	// SmoothedRTT is the RFC 9002 smoothed round-trip time.
	SmoothedRTT time.Duration
	// MinRTT is the smallest round-trip time observed.
	MinRTT time.Duration
	// EstimatedBitrate is the sending rate the congestion controller currently
	// allows, in bits per second (congestion window / smoothed RTT); 0 if unknown.
	EstimatedBitrate uint64
	// BytesSent counts bytes sent on the connection, retransmissions included.
	BytesSent uint64
	// BytesReceived counts bytes received on the connection.
	BytesReceived uint64
}

// ConnectRequest describes the client's request that created a session.
type ConnectRequest struct {
	// URL holds the scheme, host, path and query the client asked for.
	URL *url.URL
	// Header holds the request headers (empty for raw QUIC).
	Header http.Header
	// Origin is the Origin header sent by browsers, "" otherwise.
	Origin string
}

// SendStream is the sending half of a stream.
type SendStream interface {
	io.Writer
	// Close ends the stream cleanly (FIN) after the written data.
	Close() error
	// CancelWrite abandons the stream with an error code (RESET_STREAM).
	CancelWrite(code uint64)
	// SetPriority sets the send urgency, 0 (most urgent) to 7 (least). It is
	// applied on raw QUIC and ignored on WebTransport, whose library does not
	// expose stream priorities, and on WebSocket.
	SetPriority(urgency int8)
	// Context is done when the send side ends: after Close or CancelWrite,
	// when the peer stops reading (STOP_SENDING), or when the session ends.
	// Its cause is a *StreamError for resets and stops, context.Canceled
	// after Close, and otherwise an error describing the session's end.
	Context() context.Context
}

// ReceiveStream is the receiving half of a stream. Read returns io.EOF after
// the peer's FIN.
type ReceiveStream interface {
	io.Reader
	// CancelRead asks the peer to stop sending (STOP_SENDING) with an error code.
	CancelRead(code uint64)
	// SetReadDeadline makes pending and future Reads fail with a timeout
	// error (net.Error with Timeout() true) after t; zero disables it.
	SetReadDeadline(t time.Time) error
}

// Stream is a bidirectional stream.
type Stream interface {
	SendStream
	ReceiveStream
}

// SessionError reports that a session was closed with an application error
// code, by the peer (Remote) or locally.
type SessionError struct {
	Code   uint64
	Reason string
	Remote bool
}

// Error describes the close, including who closed and the reason.
func (e *SessionError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by peer"
	}
	if e.Reason == "" {
		return fmt.Sprintf("session closed %s with code %d", who, e.Code)
	}
	return fmt.Sprintf("session closed %s with code %d: %s", who, e.Code, e.Reason)
}

// StreamError reports that a stream was reset (RESET_STREAM) or stopped
// (STOP_SENDING) with an application error code, by the peer (Remote) or
// locally.
type StreamError struct {
	Code   uint64
	Remote bool
}

// Error describes the cancellation, including who cancelled.
func (e *StreamError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by peer"
	}
	return fmt.Sprintf("stream cancelled %s with code %d", who, e.Code)
}

// HTTPError reports that a server refused a WebTransport CONNECT or a
// WebSocket upgrade with an HTTP status, for example 401 when the token was
// rejected.
type HTTPError struct {
	Status int
}

// Error names the refused status.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("webtransport: server refused the session with HTTP status %d %s", e.Status, http.StatusText(e.Status))
}

// errSessionGone is the cause of a WebTransport stream's Context when the
// stream ended because its session ended; the session's own error is not
// reachable from the stream at that point.
var errSessionGone = fmt.Errorf("webtransport session closed: %w", net.ErrClosed)

// translatedContext returns a context that ends when inner ends, with inner's
// cause passed through translate, so that callers inspecting context.Cause
// see this package's error types instead of library-specific ones. No
// goroutine is started until inner ends.
func translatedContext(inner context.Context, translate func(error) error) context.Context {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(inner))
	if inner.Err() != nil {
		cancel(translate(context.Cause(inner)))
		return ctx
	}
	context.AfterFunc(inner, func() { cancel(translate(context.Cause(inner))) })
	return ctx
}

package protocol

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/internal/backoff"
	"github.com/moqbridge/moqbridge/internal/redact"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// Reconnect is how a Client redials after its session ends: the first
// attempt waits Min, each further one twice as long up to Max, and every
// wait is spread by ±Jitter of itself so that the clients of a restarted
// relay do not return in one burst. The waits start again from Min after a
// session that lasted at least Max.
type Reconnect struct {
	// Min is the first wait (default 250 ms), Max the longest (default
	// 10 s).
	Min, Max time.Duration
	// Jitter is the spread of each wait as a fraction of it, 0 to 1
	// (default 0.5; a negative value turns it off).
	Jitter float64
	// GiveUpAfter stops reconnecting once the client has been without a
	// session this long (0: never).
	GiveUpAfter time.Duration
}

// DefaultReconnect is the policy of a Client without WithReconnect.
var DefaultReconnect = Reconnect{Min: 250 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.5}

func (r Reconnect) withDefaults() Reconnect {
	d := DefaultReconnect
	backoff.Defaults(&r.Min, &r.Max, &r.Jitter, d.Min, d.Max, d.Jitter)
	return r
}

// wait is the wait before attempt n (from 0), jittered.
func (r Reconnect) wait(n int) time.Duration { return backoff.Wait(r.Min, r.Max, r.Jitter, n) }

// WithReconnect sets how Connect redials (zero fields take
// DefaultReconnect). Dial ignores it: it makes one session.
func WithReconnect(r Reconnect) DialOption { return func(o *dialOptions) { o.reconnect = r } }

// reconnectDialTime bounds one redial attempt.
const reconnectDialTime = 10 * time.Second

// ErrGaveUp reports that a Client stopped reconnecting after
// Reconnect.GiveUpAfter.
var ErrGaveUp = errors.New("moq: gave up reconnecting")

// Client keeps a session to one server: when the session ends for any
// reason but Close, it dials again with the Reconnect policy, so a relay
// that restarts or a network that drops for a while costs the application
// nothing but the gap. Every session it makes serves the same publish
// moq.Origin (WithPublish), so the application's broadcasts are announced again
// and continue where they are, and mirrors the peer's announcements into
// the same consume moq.Origin (WithConsume), where they reappear as the peer
// announces them again. Its methods are safe for concurrent use.
type Client struct {
	url  string
	opts []DialOption
	rc   Reconnect
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	sess    *Session
	changed chan struct{}
	err     error
}

// Connect dials rawURL as Dial does, within ctx, and returns a Client that
// keeps a session to it until Close. The first dial's error is returned as
// it is: an address, certificate or token that is wrong now will not be
// right on the next attempt. Later dials that fail are retried; errors
// that no retry can cure (a certificate that is not trusted, a refused
// token, a server that does not speak MOQ Lite) end the Client, and Err
// says why.
func Connect(ctx context.Context, rawURL string, opts ...DialOption) (*Client, error) {
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	sess, err := Dial(ctx, rawURL, opts...)
	if err != nil {
		return nil, err
	}
	c := &Client{
		url:     rawURL,
		opts:    opts,
		rc:      o.reconnect.withDefaults(),
		log:     redact.TokenLogger(loggerOr(o.log)),
		done:    make(chan struct{}),
		sess:    sess,
		changed: make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run(sess)
	return c, nil
}

// Session returns the current session, nil while the client reconnects or
// after it stopped, and a channel closed when that changes.
func (c *Client) Session() (*Session, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess, c.changed
}

// URL is the URL the client dials.
func (c *Client) URL() string { return c.url }

// Done returns a channel closed when the client has stopped: after Close,
// or when it gave up reconnecting.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err reports why the client stopped reconnecting: nil while it runs and
// after Close, else ErrGaveUp or the error no retry can cure.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the current session and stops reconnecting; it returns once
// the client has stopped.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return nil
}

func (c *Client) setSession(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess = s
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) stop(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	c.setSession(nil)
}

// run watches each session and replaces it when it ends.
func (c *Client) run(sess *Session) {
	defer close(c.done)
	for {
		started := time.Now()
		select {
		case <-c.ctx.Done():
			_ = sess.Close()
			c.stop(nil)
			return
		case <-sess.Done():
		}
		_ = sess.Wait()
		c.setSession(nil)
		lost := time.Now()
		c.log.Warn("moq connection lost, reconnecting", "url", c.url, "reason", EndReason(sess.Err()))
		attempt := 0
		if lost.Sub(started) < c.rc.Max {
			// A session that ended soon after it began does not reset
			// the waits: a server that accepts and drops at once is not
			// hammered.
			attempt = 1
		}
		var err error
		sess, err = c.redial(lost, attempt)
		if sess == nil {
			c.stop(err)
			return
		}
		c.setSession(sess)
		c.log.Info("moq reconnected", "url", c.url, "after", time.Since(lost).Round(time.Millisecond), "version", sess.Version().String())
	}
}

// redial dials until a session is made, the client is closed (nil, nil),
// it gives up, or an error no retry cures.
func (c *Client) redial(lost time.Time, attempt int) (*Session, error) {
	for ; ; attempt++ {
		wait := c.rc.wait(attempt)
		if c.rc.GiveUpAfter > 0 {
			left := time.Until(lost.Add(c.rc.GiveUpAfter))
			if left <= 0 {
				c.log.Error("moq gave up reconnecting", "url", c.url, "after", c.rc.GiveUpAfter)
				return nil, fmt.Errorf("%w after %s", ErrGaveUp, c.rc.GiveUpAfter)
			}
			wait = min(wait, left)
		}
		timer := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			timer.Stop()
			return nil, nil
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, reconnectDialTime)
		sess, err := Dial(ctx, c.url, c.opts...)
		cancel()
		if err == nil {
			return sess, nil
		}
		if c.ctx.Err() != nil {
			return nil, nil
		}
		if Permanent(err) {
			c.log.Error("moq cannot reconnect", "url", c.url, "err", err)
			return nil, err
		}
		c.log.Warn("moq reconnect failed", "url", c.url, "attempt", attempt+1, "err", err)
	}
}

// Permanent reports whether a dial error is one that retrying cannot cure:
// an untrusted certificate, a refused token (HTTP 401 or 403), a missing
// endpoint (404), a malformed URL or no common protocol version.
func Permanent(err error) bool {
	var (
		se *SessionError
		hs *transport.HTTPError
	)
	switch {
	case IsCertificateError(err):
		return true
	case errors.As(err, &hs):
		return hs.Status == http.StatusUnauthorized || hs.Status == http.StatusForbidden || hs.Status == http.StatusNotFound
	case errors.As(err, &se) && se.Remote:
		return ErrorCode(se.Code) == wire.CodeUnauthorized || ErrorCode(se.Code) == wire.CodeVersion
	}
	return strings.Contains(err.Error(), "unsupported scheme")
}

// IsCertificateError reports whether a dial failed because the server's
// certificate is not trusted: WebPKI verification failed, or it does not
// match the pinned fingerprint (WithFingerprint, the http:// form).
func IsCertificateError(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "failed to verify certificate") || strings.Contains(s, "does not match pinned")
}

// serverShutdownReason is the close reason of sessions a Server ends when
// it stops.
const serverShutdownReason = "server shutting down"

// EndReason says in a few words why a client's session with a relay ended,
// for log lines: "the relay shut down", "the relay stopped answering", or
// the error itself.
func EndReason(err error) string {
	if err == nil {
		return "closed"
	}
	var se *SessionError
	if errors.As(err, &se) && se.Remote && se.Reason == serverShutdownReason {
		return "the relay shut down"
	}
	s := err.Error()
	switch {
	case strings.Contains(s, serverShutdownReason):
		return "the relay shut down"
	case strings.Contains(s, "timeout: no recent network activity"), strings.Contains(s, "idle timeout"):
		return "the relay stopped answering (idle timeout)"
	}
	return s
}

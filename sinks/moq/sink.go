// Package moq is the MOQ remote sink of moqbridge: it pushes a broadcast of
// the local Origin to a remote MOQ Lite relay (moql:// raw QUIC, https://
// WebTransport, ws:// and wss:// WebSocket, http:// development relays), for
// scale-out: the local relay ingests, remote relays fan out.
//
// # What it owns
//
// Sink publishes one local broadcast at a remote path (Config.Path, a
// template over the local path, "{path}" by default) through a
// protocol.Client that serves it from a private Origin holding just that
// broadcast. The broadcast is forwarded at the level of the data model:
// tracks, groups and frames go out as they are in the local Origin (the
// catalog and the hang frames untouched), and only the tracks the relay
// subscribes to are read.
//
// # A slow or vanished relay
//
// Reading the local broadcast never blocks its writer: a forwarder is one
// more reader of the model, which skips to newer groups when it cannot keep
// up rather than holding memory or pacing the source. A relay that is too
// slow has whole groups reset per the session's rules (see package
// protocol: Forwarding and overload), counted in Counters().DroppedGroups.
// When the relay goes away or restarts, the client reconnects with
// Config.Backoff and announces the broadcast again; the relay's
// subscribers resume at the latest group. Counters().Reconnects counts the
// reconnections and Connected says whether a session is up.
//
// Errors no retry cures (a malformed URL, an untrusted certificate, a
// refused token, a relay that does not accept the path) are sdk.Permanent.
//
// The package does not own the relay side (package protocol) nor the
// subscribing to remote broadcasts (sources/moq).
package moq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/internal/redact"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// Config configures a Sink.
type Config struct {
	// URL is the remote relay: moql://HOST:PORT, https://HOST:PORT/PATH,
	// ws(s)://…, or http://HOST:PORT/ for a development relay. A token
	// goes into its jwt query parameter.
	URL string
	// Path is the remote path, a template where {path} is the local one
	// (default "{path}": the same path).
	Path string
	// Dial are the connection's options: protocol.WithFingerprint,
	// WithRootCAs, WithVersions, … Reconnection follows Backoff.
	Dial []protocol.DialOption
	// Backoff is how the first connection is retried and how the relay is
	// reconnected (zero fields take sdk.DefaultBackoff).
	Backoff sdk.Backoff
	// Origin is where Run finds the broadcast its sdk.BroadcastReader was
	// made from (at the reader's Path), to forward it unchanged. Forward
	// does not need it.
	Origin *moq.Origin
	// Logger receives the sink's logs (nil: slog.Default()).
	Logger *slog.Logger
}

// Counters are what a Sink counts across its connections.
type Counters struct {
	// Reconnects counts the sessions made after the first one.
	Reconnects uint64
	// DroppedGroups counts the groups reset because the relay did not
	// take them fast enough.
	DroppedGroups uint64
	// Connected reports whether a session to the relay is up now.
	Connected bool
}

// Sink pushes a broadcast to a remote relay. It is an sdk.Sink; Forward
// does the same with a moq broadcast. It pushes one broadcast at a time
// (make one Sink per broadcast); Counters may be read at any time and add
// up over the sink's runs.
type Sink struct {
	cfg Config
	log *slog.Logger

	reconnects atomic.Uint64
	dropped    atomic.Uint64 // of the sessions that ended
	connected  atomic.Bool
	mu         sync.Mutex
	sess       *protocol.Session // the current session, for its drop count
}

// New checks cfg and returns its Sink; a malformed URL or template is a
// permanent error.
func New(cfg Config) (*Sink, error) {
	if err := checkURL(cfg.URL); err != nil {
		return nil, err
	}
	if cfg.Path == "" {
		cfg.Path = "{path}"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Sink{cfg: cfg, log: log.With("url", redact.Token(cfg.URL))}, nil
}

// checkURL refuses a relay URL protocol.Dial cannot use (permanent).
func checkURL(raw string) error {
	if err := protocol.CheckURL(raw); err != nil {
		return sdk.Permanent(redact.TokenError(err))
	}
	return nil
}

// RemotePath is where the broadcast at the local path is pushed.
func (s *Sink) RemotePath(local string) (string, error) {
	p := moq.CleanPath(strings.ReplaceAll(s.cfg.Path, "{path}", moq.CleanPath(local)))
	if err := moq.ValidatePath(p); err != nil || p == "" {
		if err == nil {
			err = moq.ErrInvalidPath
		}
		return "", sdk.Permanent(fmt.Errorf("moq sink: remote path for %q: %w", local, err))
	}
	return p, nil
}

// Counters returns what the sink counted so far.
func (s *Sink) Counters() Counters {
	s.mu.Lock()
	dropped := s.dropped.Load()
	if s.sess != nil {
		dropped += s.sess.Stats().GroupsDropped
	}
	s.mu.Unlock()
	return Counters{Reconnects: s.reconnects.Load(), DroppedGroups: dropped, Connected: s.connected.Load()}
}

// Run is the sdk.Sink: it forwards the broadcast r was made from, found in
// Config.Origin at r.Path(), unchanged (see Forward).
func (s *Sink) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	if s.cfg.Origin == nil {
		return sdk.Permanent(errors.New("moq sink: Config.Origin is not set: Run finds the broadcast to push there"))
	}
	b, err := s.cfg.Origin.Consume(r.Path())
	if err != nil {
		if errors.Is(err, moq.ErrNotFound) {
			return nil // it ended meanwhile
		}
		return fmt.Errorf("moq sink: find %q: %w", r.Path(), err)
	}
	return s.Forward(ctx, b, r.Path())
}

// Forward pushes the broadcast b, found at the local path, to the relay at
// RemotePath(path) until b ends or ctx ends (nil), reconnecting whenever
// the relay goes away. It fails when the relay cannot be reached or
// reconnected (permanent when no retry cures it: see the package doc).
func (s *Sink) Forward(ctx context.Context, b *moq.BroadcastReader, path string) error {
	remote, err := s.RemotePath(path)
	if err != nil {
		return err
	}
	log := s.log.With("path", path, "remote", remote)
	// The client serves a private Origin holding only this broadcast.
	push := moq.NewOrigin()
	defer push.Close()
	if err := push.Publish(remote, b); err != nil {
		if errors.Is(err, moq.ErrClosed) {
			return nil // the broadcast ended already
		}
		return fmt.Errorf("moq sink: %w", err)
	}
	client, err := s.connect(ctx, log, push)
	if client == nil {
		return err
	}
	defer client.Close()
	var sess *protocol.Session
	defer s.setSession(nil)
	first := true
	for {
		next, changed := client.Session()
		if next != sess {
			sess = next
			s.setSession(sess)
			if sess != nil {
				if !first {
					s.reconnects.Add(1)
				}
				first = false
				if err := sess.WaitWanted(ctx, remote); err != nil {
					if errors.Is(err, protocol.ErrNotWanted) {
						return sdk.Permanent(redact.TokenError(fmt.Errorf("moq sink: the relay at %s does not accept a broadcast at %q: %w", s.cfg.URL, remote, err)))
					}
					if ctx.Err() != nil {
						return nil
					}
					continue // the session ended meanwhile
				}
				log.Info("moq sink: pushing", "version", sess.Version().String(), "transport", sess.Transport())
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-b.Done():
			log.Info("moq sink: the broadcast ended")
			return nil
		case <-client.Done():
			return stopped(s.cfg.URL, client)
		case <-changed:
		}
	}
}

// setSession records the current session, and whether there is one; the
// groups the one before dropped are kept in the total.
func (s *Sink) setSession(sess *protocol.Session) {
	s.mu.Lock()
	if s.sess != nil {
		s.dropped.Add(s.sess.Stats().GroupsDropped)
	}
	s.sess = sess
	s.mu.Unlock()
	s.connected.Store(sess != nil)
}

// connect dials the relay until a session is made, retrying transient
// failures with the backoff. It returns a nil client and nil error when
// ctx ended first.
func (s *Sink) connect(ctx context.Context, log *slog.Logger, push *moq.Origin) (*protocol.Client, error) {
	b := s.cfg.Backoff.WithDefaults()
	opts := append(append([]protocol.DialOption(nil), s.cfg.Dial...), protocol.WithPublish(push),
		protocol.WithReconnect(protocol.Reconnect{Min: b.Min, Max: b.Max, Jitter: b.Jitter, GiveUpAfter: b.GiveUpAfter}),
		protocol.WithLogger(log))
	c, err := protocol.ConnectRetry(ctx, s.cfg.URL, func(err error, wait time.Duration) {
		log.Warn("moq sink: relay unreachable, retrying", "in", wait.Round(time.Millisecond), "err", redact.TokenError(err))
	}, opts...)
	switch {
	case err == nil:
		return c, nil
	case ctx.Err() != nil:
		return nil, nil
	case protocol.Permanent(err):
		return nil, sdk.Permanent(redact.TokenError(fmt.Errorf("moq sink: connect to %s: %w", s.cfg.URL, err)))
	}
	return nil, redact.TokenError(fmt.Errorf("moq sink: connect to %s: %w", s.cfg.URL, err))
}

// stopped explains why the client stopped reconnecting; permanent when no
// retry cures it.
func stopped(rawURL string, c *protocol.Client) error {
	err := c.Err()
	switch {
	case err == nil:
		return redact.TokenError(fmt.Errorf("moq sink: the connection to %s ended", rawURL))
	case errors.Is(err, protocol.ErrGaveUp):
		return redact.TokenError(fmt.Errorf("moq sink: lost the relay at %s: %w", rawURL, err))
	}
	return sdk.Permanent(redact.TokenError(fmt.Errorf("moq sink: lost the relay at %s and cannot reconnect: %w", rawURL, err)))
}

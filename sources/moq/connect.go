package moq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/moqbridge/moqbridge/internal/redact"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// CheckURL refuses a relay URL protocol.Dial cannot use, saying what it
// accepts (protocol.CheckURL). The error is permanent.
func CheckURL(raw string) error {
	if err := protocol.CheckURL(raw); err != nil {
		return sdk.Permanent(redact.TokenError(err))
	}
	return nil
}

// reconnectPolicy is b as the protocol Client's Reconnect.
func reconnectPolicy(b sdk.Backoff) protocol.Reconnect {
	b = b.WithDefaults()
	return protocol.Reconnect{Min: b.Min, Max: b.Max, Jitter: b.Jitter, GiveUpAfter: b.GiveUpAfter}
}

// relay is a connection kept to a remote relay: a protocol.Client that
// mirrors the relay's announcements under a prefix into consume.
type relay struct {
	url     string
	client  *protocol.Client
	consume *moq.Origin
}

// connect dials the relay at rawURL until a session is made, retrying
// transient failures with b: the returned relay then keeps the connection,
// reconnecting with b too. It fails with ctx's error when ctx ends, a
// permanent error for what no retry cures, and a transient one after
// b.GiveUpAfter.
func connect(ctx context.Context, rawURL, interest string, dial []protocol.DialOption, b sdk.Backoff, log *slog.Logger) (*relay, error) {
	if err := CheckURL(rawURL); err != nil {
		return nil, err
	}
	consume := moq.NewOrigin()
	opts := append(append([]protocol.DialOption(nil), dial...),
		protocol.WithConsume(consume), protocol.WithAnnounceInterest(interest),
		protocol.WithReconnect(reconnectPolicy(b)), protocol.WithLogger(log))
	c, err := protocol.ConnectRetry(ctx, rawURL, func(err error, wait time.Duration) {
		log.Warn("moq source: relay unreachable, retrying", "in", wait.Round(time.Millisecond), "err", redact.TokenError(err))
	}, opts...)
	switch {
	case err == nil:
		return &relay{url: rawURL, client: c, consume: consume}, nil
	case ctx.Err() != nil:
		consume.Close()
		return nil, ctx.Err()
	case protocol.Permanent(err):
		consume.Close()
		return nil, sdk.Permanent(redact.TokenError(fmt.Errorf("moq source: connect to %s: %w", rawURL, err)))
	}
	consume.Close()
	return nil, redact.TokenError(fmt.Errorf("moq source: connect to %s: %w", rawURL, err))
}

// close ends the connection; the broadcasts mirrored into consume end.
func (r *relay) close() {
	_ = r.client.Close()
	r.consume.Close()
}

// stopped explains why the client stopped reconnecting; the error is
// permanent when no retry cures it.
func (r *relay) stopped() error {
	err := r.client.Err()
	switch {
	case err == nil:
		return redact.TokenError(fmt.Errorf("moq source: the connection to %s ended", r.url))
	case errors.Is(err, protocol.ErrGaveUp):
		return redact.TokenError(fmt.Errorf("moq source: lost the relay at %s: %w", r.url, err))
	}
	return sdk.Permanent(redact.TokenError(fmt.Errorf("moq source: lost the relay at %s and cannot reconnect: %w", r.url, err)))
}

// sessionLive reports whether the client has a session that has not
// ended: a remote broadcast ending then was ended by the relay, not lost
// with the connection.
func (r *relay) sessionLive() bool {
	s, _ := r.client.Session()
	return s != nil && s.Err() == nil
}

// waitBroadcast returns the remote broadcast at path once the relay
// announces it, or nil when ctx ends or the client stops.
func (r *relay) waitBroadcast(ctx context.Context, path string) *moq.BroadcastReader {
	ctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-r.client.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	defer func() {
		cancel()
		<-watched
	}()
	b, err := sdk.WaitBroadcast(ctx, r.consume, path, 0)
	if err != nil {
		return nil
	}
	return b
}

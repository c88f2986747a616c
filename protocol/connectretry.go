package protocol

import (
	"context"
	"fmt"
	"net/url"
	"time"
)

// CheckURL refuses a relay URL Dial cannot use, saying what it accepts:
// moql:// or moqt:// (raw QUIC), https:// (WebTransport), ws:// or wss://
// (WebSocket), or http:// (a development relay whose certificate
// fingerprint is fetched first), each with a host.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err == nil && u.Host != "" {
		switch u.Scheme {
		case "moql", "moqt", "https", "http", "ws", "wss":
			return nil
		}
	}
	hostPort := "localhost:4443"
	if v, err := url.Parse("moql://" + raw); err == nil && v.Port() != "" && v.Path == "" {
		hostPort = v.Host
	}
	return fmt.Errorf("%q is not a relay URL: use moql://HOST:PORT (QUIC), https://HOST:PORT/ (WebTransport), ws:// or wss:// (WebSocket), "+
		"e.g. moql://%s, or http://%s/ for a development relay (moqbridge serve)", raw, hostPort, hostPort)
}

// ConnectRetry is Connect for a client that may start before its relay is
// up (an adapter in a long-running pipeline): the first dial is retried
// as well, with the Client's Reconnect policy (WithReconnect, or
// DefaultReconnect), each attempt bounded like a redial. It returns the
// first Client made; at once, an error no retry cures (Permanent); the
// last dial error wrapped with ErrGaveUp once Reconnect.GiveUpAfter has
// passed; or ctx's error when ctx ends. retrying, if set, is told of each
// failed attempt and how long it waits before the next.
func ConnectRetry(ctx context.Context, rawURL string, retrying func(err error, wait time.Duration), opts ...DialOption) (*Client, error) {
	if err := CheckURL(rawURL); err != nil {
		return nil, err
	}
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	policy := o.reconnect.withDefaults()
	began := time.Now()
	for attempt := 0; ; attempt++ {
		dialCtx, cancel := context.WithTimeout(ctx, reconnectDialTime)
		c, err := Connect(dialCtx, rawURL, opts...)
		cancel()
		switch {
		case err == nil:
			return c, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case Permanent(err):
			return nil, err
		case policy.GiveUpAfter > 0 && time.Since(began) >= policy.GiveUpAfter:
			return nil, fmt.Errorf("%w after %s: %w", ErrGaveUp, policy.GiveUpAfter, err)
		}
		wait := policy.wait(attempt)
		if retrying != nil {
			retrying(err, wait)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

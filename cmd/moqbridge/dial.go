package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/protocol"
)

// maxDialTime bounds how long a client command waits for the relay.
const maxDialTime = 10 * time.Second

// checkURL refuses a relay URL that Dial cannot use, saying what it
// accepts.
func checkURL(raw string) error { return protocol.CheckURL(raw) }

// connectRelay connects to the relay at raw within maxDialTime (or limit,
// when it is positive and shorter), explaining the usual failures, and
// returns a client that keeps the connection (protocol.Connect).
func connectRelay(ctx context.Context, raw string, limit time.Duration, opts []protocol.DialOption) (*protocol.Client, error) {
	if err := checkURL(raw); err != nil {
		return nil, err
	}
	bound := maxDialTime
	if limit > 0 && limit < bound {
		bound = limit
	}
	dialCtx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	c, err := protocol.Connect(dialCtx, raw, opts...)
	if err == nil {
		return c, nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, ctx.Err()
	}
	if errors.Is(dialCtx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("could not reach the relay at %s within %s: is it running, and is the address right?", raw, bound)
	}
	return nil, explainDialError(raw, err)
}

// explainDialError says what to do about a certificate the client does
// not trust; other errors pass unchanged.
func explainDialError(raw string, err error) error {
	if protocol.IsCertificateError(err) {
		u, _ := url.Parse(raw)
		return fmt.Errorf("the relay's certificate is not trusted (%s): pass --fingerprint HEX with the SHA-256 that \"moqbridge serve\" prints, "+
			"or use http://%s/ against a development relay", certReason(err), u.Host)
	}
	return err
}

// lostRelay explains why a client stopped: it gave up reconnecting, or the
// relay came back with something no retry cures (a new certificate, a
// refused token).
func lostRelay(raw string, c *protocol.Client) error {
	err := c.Err()
	if errors.Is(err, protocol.ErrGaveUp) {
		return fmt.Errorf("lost the relay at %s and %s (--give-up)", raw, strings.TrimPrefix(err.Error(), "moq: "))
	}
	if protocol.IsCertificateError(err) {
		return fmt.Errorf("lost the relay at %s, and it came back with a certificate that is not trusted (%s): a relay without --cert makes a new one at every start; "+
			"give it --cert and --key, or use its http:// development URL, which fetches the fingerprint again", raw, certReason(err))
	}
	return fmt.Errorf("lost the relay at %s and cannot reconnect: %w", raw, err)
}

// certReason is the x509 part of a certificate error.
func certReason(err error) string {
	s := err.Error()
	if i := strings.Index(s, "x509: "); i >= 0 {
		return s[i:]
	}
	if i := strings.Index(s, "server certificate SHA-256"); i >= 0 {
		return s[i:]
	}
	return s
}

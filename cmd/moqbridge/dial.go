package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err == nil {
		switch u.Scheme {
		case "moql", "moqt", "https", "http", "ws", "wss":
			if u.Host != "" {
				return nil
			}
		}
	}
	hostPort := "localhost:4443"
	if v, err := url.Parse("moql://" + raw); err == nil && v.Port() != "" && v.Path == "" {
		hostPort = v.Host
	}
	return fmt.Errorf("%q is not a relay URL: use moql://HOST:PORT (QUIC), https://HOST:PORT/ (WebTransport), ws:// or wss:// (WebSocket), "+
		"e.g. moql://%s, or http://%s/ for a development relay (moqbridge serve)", raw, hostPort, hostPort)
}

// dialRelay connects to the relay at raw within maxDialTime (or limit,
// when it is positive and shorter) and explains the usual failures.
func dialRelay(ctx context.Context, raw string, limit time.Duration, opts []protocol.DialOption) (*protocol.Session, error) {
	if err := checkURL(raw); err != nil {
		return nil, err
	}
	bound := maxDialTime
	if limit > 0 && limit < bound {
		bound = limit
	}
	dialCtx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	sess, err := protocol.Dial(dialCtx, raw, opts...)
	if err == nil {
		return sess, nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, ctx.Err()
	}
	if isCertError(err) {
		u, _ := url.Parse(raw)
		return nil, fmt.Errorf("the relay's certificate is not trusted (%s): pass --fingerprint HEX with the SHA-256 that \"moqbridge serve\" prints, "+
			"or use http://%s/ against a development relay", certReason(err), u.Host)
	}
	if errors.Is(dialCtx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("could not reach the relay at %s within %s: is it running, and is the address right?", raw, bound)
	}
	return nil, err
}

// isCertError reports whether err is a failed certificate verification.
func isCertError(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return true
	}
	return strings.Contains(err.Error(), "failed to verify certificate")
}

// certReason is the x509 part of a certificate error.
func certReason(err error) string {
	s := err.Error()
	if i := strings.Index(s, "x509: "); i >= 0 {
		return s[i:]
	}
	return s
}

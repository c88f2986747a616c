package protocol

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/url"

	"github.com/quic-go/quic-go"

	"github.com/moqbridge/moqbridge/internal/redact"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
)

// DialOption configures Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	tls         *tls.Config
	roots       *x509.CertPool
	fingerprint *[32]byte
	insecure    bool
	versions    []Version
	publish     *moq.Origin
	consume     *moq.Origin
	limits      Limits
	cache       moq.CacheConfig
	cacheSet    bool
	liveness    Liveness
	log         *slog.Logger
	reconnect   Reconnect
	interest    []string
}

// WithTLSConfig uses conf (cloned) for the TLS handshake.
func WithTLSConfig(conf *tls.Config) DialOption { return func(o *dialOptions) { o.tls = conf } }

// WithRootCAs trusts the certificate authorities in pool instead of the
// system roots.
func WithRootCAs(pool *x509.CertPool) DialOption { return func(o *dialOptions) { o.roots = pool } }

// WithFingerprint accepts exactly the server leaf certificate whose SHA-256
// is fp, as browsers do with serverCertificateHashes.
func WithFingerprint(fp [32]byte) DialOption { return func(o *dialOptions) { o.fingerprint = &fp } }

// WithInsecure skips certificate verification entirely: for development only.
func WithInsecure() DialOption { return func(o *dialOptions) { o.insecure = true } }

// WithVersions restricts the versions offered, in preference order.
func WithVersions(v ...Version) DialOption { return func(o *dialOptions) { o.versions = v } }

// WithPublish serves the peer's announce and subscribe requests from origin.
func WithPublish(origin *moq.Origin) DialOption { return func(o *dialOptions) { o.publish = origin } }

// WithConsume mirrors the peer's announced broadcasts into origin.
func WithConsume(origin *moq.Origin) DialOption { return func(o *dialOptions) { o.consume = origin } }

// WithAnnounceInterest asks the peer only for the announcements under the
// given prefixes (default: every path), for a client that follows one
// broadcast or one part of a relay. Announcements outside them are refused.
func WithAnnounceInterest(prefixes ...string) DialOption {
	return func(o *dialOptions) { o.interest = append([]string{}, prefixes...) }
}

// WithLimits sets the session limits (zero fields take DefaultLimits).
func WithLimits(l Limits) DialOption { return func(o *dialOptions) { o.limits = l } }

// WithCache bounds what the session keeps per track of the peer's
// broadcasts. Without it a dialled session is a consumer: it keeps a group
// only while one of its readers may still take it (moq.CacheConfig.Consumer).
// A session whose broadcasts are served on to others (a relay in front of
// this one) passes a relay's cache, such as moq.CacheConfig{}, so that readers
// joining later find the latest group.
func WithCache(c moq.CacheConfig) DialOption {
	return func(o *dialOptions) { o.cache, o.cacheSet = c, true }
}

// WithLiveness sets how fast a silent server is noticed (zero fields take
// DefaultLiveness: a 1 s keep-alive and a 5 s idle timeout).
func WithLiveness(l Liveness) DialOption { return func(o *dialOptions) { o.liveness = l } }

// WithLogger sets the session's logger.
func WithLogger(l *slog.Logger) DialOption { return func(o *dialOptions) { o.log = l } }

// Dial connects to a MOQ Lite server. The URL scheme picks the transport:
// https:// is WebTransport over HTTP/3 (the URL path is the session root on
// the server); moql:// and moqt:// are raw QUIC (default port 443); ws://
// and wss:// are the WebSocket fallback; http:// is development mode, as in
// the reference client: the certificate's SHA-256 is fetched over plain
// HTTP from /certificate.sha256 on the same host and port, then WebTransport
// connects to https:// with that certificate pinned.
func Dial(ctx context.Context, rawURL string, opts ...DialOption) (*Session, error) {
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.versions) == 0 {
		o.versions = AllVersions
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("moq dial: %w", err)
	}
	tlsConf := o.clientTLS()
	cfg := transport.DialConfig{
		TLSConfig:  tlsConf,
		Protocols:  protocolsFor(o.versions),
		QUICConfig: quicConfig(o.limits.withDefaults(), o.liveness),
		Liveness:   o.liveness.withDefaults().transport(),
	}
	var conn transport.Session
	switch u.Scheme {
	case "https":
		conn, err = transport.DialWebTransport(ctx, rawURL, cfg)
	case "ws", "wss":
		conn, err = transport.DialWebSocket(ctx, rawURL, cfg)
	case "http":
		var fp [32]byte
		fp, err = transport.FetchFingerprint(ctx, rawURL)
		if err == nil {
			cfg.TLSConfig = transport.PinnedTLSConfig(fp)
			secure := *u
			secure.Scheme = "https"
			conn, err = transport.DialWebTransport(ctx, secure.String(), cfg)
		}
	case "moql", "moqt":
		host := u.Hostname()
		port := u.Port()
		if port == "" {
			port = "443"
		}
		conn, err = transport.DialQUIC(ctx, net.JoinHostPort(host, port), host, cfg)
	default:
		return nil, fmt.Errorf("moq dial %s: unsupported scheme %q (use https, http, moql, moqt, ws or wss)", rawURL, u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("moq dial %s: %w", rawURL, err)
	}
	sess, err := startSession(ctx, conn, sessionConfig{
		publish:        o.publish,
		consume:        o.consume,
		perm:           Permissions{Publish: o.interest},
		limits:         o.limits,
		cache:          o.clientCache(),
		log:            redact.TokenLogger(loggerOr(o.log)),
		legacyVersions: legacyOf(o.versions),
	})
	if err != nil {
		return nil, fmt.Errorf("moq dial %s: %w", rawURL, err)
	}
	return sess, nil
}

func (o *dialOptions) clientTLS() *tls.Config {
	var c *tls.Config
	switch {
	case o.fingerprint != nil:
		c = transport.PinnedTLSConfig(*o.fingerprint)
	case o.tls != nil:
		c = o.tls.Clone()
	default:
		c = &tls.Config{}
	}
	if o.roots != nil {
		c.RootCAs = o.roots
	}
	if o.insecure {
		c.InsecureSkipVerify = true
	}
	return c
}

// quicConfig sets the QUIC limits that matter to MOQ: every group is its own
// stream, so the stream limits are high; the idle timeout and keep-alive
// are lv's (see DefaultLiveness for why they are shorter than the
// reference stack's).
func quicConfig(l Limits, lv Liveness) *quic.Config {
	lv = lv.withDefaults()
	return &quic.Config{
		MaxIncomingStreams:               int64(l.MaxStreams),
		MaxIncomingUniStreams:            int64(l.MaxStreams),
		MaxIdleTimeout:                   lv.IdleTimeout,
		KeepAlivePeriod:                  lv.KeepAlive,
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
	}
}

// clientCache is the cache of the session's tracks: WithCache's, or a
// consumer's.
func (o *dialOptions) clientCache() moq.CacheConfig {
	if o.cacheSet {
		return o.cache
	}
	return moq.CacheConfig{Consumer: true}
}

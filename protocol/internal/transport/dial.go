package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
)

// DialConfig configures DialQUIC, DialWebTransport and DialWebSocket.
type DialConfig struct {
	// TLSConfig carries roots, InsecureSkipVerify or VerifyPeerCertificate
	// (see PinnedTLSConfig); nil uses the system roots. NextProtos is set by
	// the dialer.
	TLSConfig *tls.Config
	// Protocols are the ALPNs (raw QUIC) or WebTransport/WebSocket
	// application protocols to offer, in preference order.
	Protocols []string
	// Header holds extra WebTransport or WebSocket request headers.
	Header http.Header
	// QUICConfig optionally overrides QUIC settings, as in ListenConfig.
	QUICConfig *quic.Config
	// Liveness bounds how long a silent server keeps the session, as in
	// ListenConfig.
	Liveness Liveness

	// wsLimits overrides the WebSocket receive limits (tests).
	wsLimits *wsLimits
}

// DialQUIC opens a raw QUIC session to addr ("host:port"). serverName is the
// TLS SNI (and the host of Request().URL); empty uses the host of addr.
// Protocol() reports the negotiated ALPN.
func DialQUIC(ctx context.Context, addr string, serverName string, cfg DialConfig) (Session, error) {
	if len(cfg.Protocols) == 0 {
		return nil, errors.New("transport: DialQUIC needs at least one ALPN in DialConfig.Protocols")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %q: %w", addr, err)
	}
	if serverName == "" {
		serverName = host
	}
	tlsConf := clientTLSConfig(cfg.TLSConfig, cfg.Protocols)
	tlsConf.ServerName = serverName
	conn, err := dialQUIC(ctx, addr, tlsConf, cfg.QUICConfig, cfg.Liveness)
	if err != nil {
		return nil, err
	}
	return newQUICSession(conn, &ConnectRequest{
		URL:    &url.URL{Scheme: "moqt", Host: serverName},
		Header: http.Header{},
	}), nil
}

// DialWebTransport opens a WebTransport session to an https:// URL. Protocol()
// reports the WT-Protocol the server selected, or "" when it selected none.
// A refused CONNECT yields an error wrapping *HTTPError.
func DialWebTransport(ctx context.Context, rawURL string, cfg DialConfig) (Session, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("transport: parse %q: %w", rawURL, err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("transport: WebTransport URL %q must use https", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	tlsConf := clientTLSConfig(cfg.TLSConfig, []string{http3.NextProtoH3})
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = u.Hostname()
	}
	// The QUIC connection is dialed here rather than by webtransport-go so
	// that Stats can read it; the session closes it when it ends.
	conn, err := dialQUIC(ctx, addr, tlsConf, cfg.QUICConfig, cfg.Liveness)
	if err != nil {
		return nil, err
	}
	wt := &webtransport.Transport{ApplicationProtocols: slices.Clone(cfg.Protocols)}
	// Transport.Close only aborts session establishment that is still
	// waiting; established sessions are unaffected.
	defer wt.Close()
	cc, err := wt.NewClientConn(conn)
	if err != nil {
		_ = conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
		return nil, fmt.Errorf("transport: webtransport %s: %w", rawURL, err)
	}
	hdr := cfg.Header.Clone()
	rsp, sess, err := cc.Dial(ctx, rawURL, hdr)
	if err != nil {
		_ = conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
		if rsp != nil && (rsp.StatusCode < 200 || rsp.StatusCode >= 300) {
			return nil, fmt.Errorf("transport: webtransport %s: %w", rawURL, &HTTPError{Status: rsp.StatusCode})
		}
		return nil, fmt.Errorf("transport: webtransport %s: %w", rawURL, wtError(err))
	}
	if hdr == nil {
		hdr = http.Header{}
	}
	return newWTSession(sess, conn, &ConnectRequest{
		URL:    u,
		Header: hdr,
		Origin: hdr.Get("Origin"),
	}), nil
}

// dialQUIC resolves addr before handing it to quic.DialAddr, because
// quic.DialAddr opens its socket first and does not close it when resolution
// fails. quic.DialAddr uses a single-use transport whose socket is closed
// together with the connection, so closing the session releases it.
func dialQUIC(ctx context.Context, addr string, tlsConf *tls.Config, override *quic.Config, lv Liveness) (*quic.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %q: %w", addr, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err == nil && len(ips) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		return nil, fmt.Errorf("transport: resolve %s: %w", host, err)
	}
	resolved := net.JoinHostPort(ips[0].Unmap().String(), port)
	conn, err := quic.DialAddr(ctx, resolved, tlsConf, quicConfig(override, lv))
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	return conn, nil
}

// clientTLSConfig clones base (or starts empty) and sets the ALPN list.
func clientTLSConfig(base *tls.Config, protos []string) *tls.Config {
	var c *tls.Config
	if base == nil {
		c = &tls.Config{}
	} else {
		c = base.Clone()
	}
	c.NextProtos = slices.Clone(protos)
	if c.MinVersion < tls.VersionTLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	return c
}

// Package testrelay runs a MOQ Lite relay on a loopback port for tests that
// need to stop it and start it again on the same port and certificate (a
// relay restart, as a remote peer sees it). It is test support only; it
// owns nothing else.
package testrelay

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
)

// Relay is a relay on a loopback port; every Start serves a fresh Origin.
type Relay struct {
	t    testing.TB
	cfg  protocol.ServerConfig
	srv  *protocol.Server
	done chan error
	fp   [32]byte
}

// Start runs a relay on a free loopback port (with the TCP side, for
// the http:// and ws:// URLs) and stops it when the test ends.
func Start(t testing.TB) *Relay {
	t.Helper()
	r := &Relay{t: t, cfg: protocol.ServerConfig{Addr: "127.0.0.1:0", TCP: protocol.TCPHTTP}}
	r.Restart()
	r.cfg.Addr = r.srv.Addr().String()
	r.cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{r.srv.Certificate()}, MinVersion: tls.VersionTLS13}
	r.fp = r.srv.Fingerprint()
	t.Cleanup(r.Stop)
	return r
}

// Restart starts the relay again after Stop, on the same port and
// certificate, with a new Origin.
func (r *Relay) Restart() {
	r.t.Helper()
	r.cfg.Origin = moq.NewOrigin()
	var err error
	// A port just released may take a moment to bind again.
	for range 50 {
		if r.srv, err = protocol.NewServer(r.cfg); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("testrelay: %v", err)
	}
	r.done = make(chan error, 1)
	srv, done := r.srv, r.done
	go func() { done <- srv.Serve(context.Background()) }()
}

// Stop closes the relay and its Origin; calling it again does nothing.
func (r *Relay) Stop() {
	if r.srv == nil {
		return
	}
	_ = r.srv.Close()
	<-r.done
	r.srv.Origin().Close()
	r.srv = nil
}

// Origin is what the running relay serves.
func (r *Relay) Origin() *moq.Origin { return r.srv.Origin() }

// Addr is the relay's host:port.
func (r *Relay) Addr() string { return r.cfg.Addr }

// URL is the relay's raw QUIC URL.
func (r *Relay) URL() string { return "moql://" + r.cfg.Addr }

// URLFor is the relay's URL on a transport: quic, webtransport or
// websocket.
func (r *Relay) URLFor(transport string) string {
	switch transport {
	case "webtransport":
		return "https://" + r.cfg.Addr + "/"
	case "websocket":
		return "ws://" + r.cfg.Addr + "/"
	}
	return r.URL()
}

// Dial are the options that trust the relay's certificate.
func (r *Relay) Dial() []protocol.DialOption {
	return []protocol.DialOption{protocol.WithFingerprint(r.fp)}
}

// Fingerprint is the SHA-256 of the relay's certificate in hex.
func (r *Relay) Fingerprint() string { return hex.EncodeToString(r.fp[:]) }

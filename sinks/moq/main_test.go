package moq

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testRelay is a relay on a loopback port that a test can stop and start
// again on the same port and certificate, each time with a fresh Origin.
type testRelay struct {
	t    testing.TB
	cfg  protocol.ServerConfig
	srv  *protocol.Server
	done chan error
	fp   [32]byte
}

func startRelay(t testing.TB) *testRelay {
	t.Helper()
	r := &testRelay{t: t, cfg: protocol.ServerConfig{Addr: "127.0.0.1:0", TCP: protocol.TCPHTTP}}
	r.start()
	r.cfg.Addr = r.srv.Addr().String()
	r.cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{r.srv.Certificate()}, MinVersion: tls.VersionTLS13}
	r.fp = r.srv.Fingerprint()
	t.Cleanup(r.stop)
	return r
}

func (r *testRelay) start() {
	r.t.Helper()
	r.cfg.Origin = moq.NewOrigin()
	var err error
	// The port was just released: binding it again may take a moment.
	for range 50 {
		if r.srv, err = protocol.NewServer(r.cfg); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("NewServer: %v", err)
	}
	r.done = make(chan error, 1)
	srv, done := r.srv, r.done
	go func() { done <- srv.Serve(context.Background()) }()
}

func (r *testRelay) stop() {
	if r.srv == nil {
		return
	}
	_ = r.srv.Close()
	<-r.done
	r.srv.Origin().Close()
	r.srv = nil
}

func (r *testRelay) origin() *moq.Origin { return r.srv.Origin() }

func (r *testRelay) url() string { return "moql://" + r.cfg.Addr }

// urlFor is the relay's URL on a transport: quic, webtransport or
// websocket.
func (r *testRelay) urlFor(transport string) string {
	switch transport {
	case "webtransport":
		return "https://" + r.cfg.Addr + "/"
	case "websocket":
		return "ws://" + r.cfg.Addr + "/"
	}
	return r.url()
}

// dial are the options that trust the relay's certificate.
func (r *testRelay) dial() []protocol.DialOption {
	return []protocol.DialOption{protocol.WithFingerprint(r.fp)}
}

// fastBackoff keeps the tests short.
var fastBackoff = sdk.Backoff{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond}

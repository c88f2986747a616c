package rtmp

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer is a Server on a loopback port publishing into its own
// Origin, run until the test ends.
type testServer struct {
	*Server
	origin *moq.Origin
	pub    *sdk.Publisher
	log    *testkit.LogBuffer
	url    string
}

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	lb := &testkit.LogBuffer{}
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = lb.Logger()
	s := NewServer(cfg)
	s.panicked = func(v any) { t.Errorf("panic serving a connection: %v", v) }
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	origin := moq.NewOrigin()
	p := sdk.NewPublisher(origin, sdk.PublisherOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, p) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of its context ending")
		}
		p.Close()
		origin.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", lb.String())
		}
	})
	return &testServer{Server: s, origin: origin, pub: p, log: lb, url: "rtmp://" + s.Addr().(*net.TCPAddr).String()}
}

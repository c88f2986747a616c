package rtmp

import (
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// freePort returns a TCP port free on loopback.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newSink returns a Sink for url that retries quickly and logs to lb.
func newSink(t testing.TB, url string, lb *testkit.LogBuffer, cfg Config) *Sink {
	t.Helper()
	cfg.URL = url
	cfg.Logger = lb.Logger()
	if cfg.Backoff.Min == 0 {
		cfg.Backoff = sdk.Backoff{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sink log:\n%s", lb.String())
		}
	})
	return s
}

package rtmp

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/fmp4"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clip is a test clip of sources/fmp4/testdata.
func clip(name string) string { return filepath.Join("..", "..", "sources", "fmp4", "testdata", name) }

// publishFile publishes an MP4 file, looped in real time, at path in a
// new Origin until the test ends.
func publishFile(t testing.TB, file, path string) *moq.Origin {
	t.Helper()
	origin := moq.NewOrigin()
	src, err := fmp4.Open(file, fmp4.Options{Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sdk.Publish(ctx, origin, path, src, sdk.PublishOptions{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("publish %s: %v", file, err)
		}
		origin.Close()
	})
	return origin
}

// runSink runs sink on the broadcast at path until stop is called, which
// waits for Run and returns its error.
func runSink(t testing.TB, origin *moq.Origin, path string, sink *Sink) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sdk.Consume(ctx, origin, path, sink, sdk.ConsumeOptions{Wait: 10 * time.Second}) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				err = fmt.Errorf("Run did not return within 15 s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
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

package rtmp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/fmp4"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// needFFmpeg skips the test when ffmpeg or ffprobe is missing, and fails it
// instead when MOQBRIDGE_INTEROP=require.
func needFFmpeg(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("MOQBRIDGE_INTEROP") == "require" {
				t.Fatalf("%s not found and MOQBRIDGE_INTEROP=require", tool)
			}
			t.Skipf("%s not found; set MOQBRIDGE_INTEROP=require to make this a failure", tool)
		}
	}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitLog waits until the log has a line containing all of parts.
func (l *logBuffer) waitLog(t testing.TB, ctx context.Context, parts ...string) string {
	t.Helper()
	for {
		for line := range strings.SplitSeq(l.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return line
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no log line with %q", parts)
		case <-time.After(20 * time.Millisecond):
		}
	}
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
func newSink(t testing.TB, url string, lb *logBuffer, cfg Config) *Sink {
	t.Helper()
	cfg.URL = url
	cfg.Logger = lb.logger()
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

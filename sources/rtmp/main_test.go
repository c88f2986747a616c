package rtmp

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
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

// waitLog waits until the log has a line containing all of parts.
func (l *logBuffer) waitLog(t testing.TB, d time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for line := range strings.SplitSeq(l.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return line
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line with %q within %v; log:\n%s", parts, d, l.String())
	return ""
}

// testServer is a Server on a loopback port publishing into its own
// Origin, run until the test ends.
type testServer struct {
	*Server
	origin *moq.Origin
	pub    *sdk.Publisher
	log    *logBuffer
	url    string
}

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	lb := &logBuffer{}
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
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

// Package testkit holds helpers shared by the tests of several packages:
// a log buffer to wait on, the checks for external tools such as ffmpeg
// (which honour MOQBRIDGE_INTEROP=require), a context bounded by the test,
// and the checks of an fMP4 file with ffprobe. Only _test.go files import
// it; non-test code must not.
package testkit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Context returns a context that ends after d or when the test ends,
// whichever comes first.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// LogBuffer collects log text written from any goroutine, for assertions
// and for printing when a test fails (t.Log must not be called after the
// test ends). The zero value is ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Logger returns a debug-level slog.Logger writing text lines into l.
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// WaitLog waits up to d for a line containing all of parts and returns
// it; otherwise it fails the test with the log.
func (l *LogBuffer) WaitLog(t testing.TB, d time.Duration, parts ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if line, ok := l.wait(ctx, parts); ok {
		return line
	}
	t.Fatalf("no log line with %q within %v; log:\n%s", parts, d, l.String())
	return ""
}

// WaitLogContext is WaitLog for tests whose waits share one deadline: it
// waits until ctx ends.
func (l *LogBuffer) WaitLogContext(t testing.TB, ctx context.Context, parts ...string) string {
	t.Helper()
	if line, ok := l.wait(ctx, parts); ok {
		return line
	}
	t.Fatalf("no log line with %q (%v); log:\n%s", parts, context.Cause(ctx), l.String())
	return ""
}

// wait polls the log every 20 ms for a line containing all of parts until
// ctx ends.
func (l *LogBuffer) wait(ctx context.Context, parts []string) (string, bool) {
	for {
		for line := range strings.SplitSeq(l.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return line, true
			}
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// InteropRequired reports whether MOQBRIDGE_INTEROP=require, which CI sets
// so that a missing external tool or peer fails the tests that need it
// instead of skipping them.
func InteropRequired() bool {
	return os.Getenv("MOQBRIDGE_INTEROP") == "require"
}

// Unavailable ends the test because something it needs (a tool, an npm
// package, an encoder) is missing: it skips it, or fails it when
// MOQBRIDGE_INTEROP=require. The message says what is missing.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InteropRequired() {
		t.Fatalf("%s (MOQBRIDGE_INTEROP=require)", msg)
	}
	t.Skipf("%s; set MOQBRIDGE_INTEROP=require to make this a failure", msg)
}

// NeedTools skips the test when one of the tools is not in PATH, or fails
// it when MOQBRIDGE_INTEROP=require.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, "%s not found: %v", tool, err)
		}
	}
}

// NeedFFmpeg is NeedTools for ffmpeg and ffprobe.
func NeedFFmpeg(t testing.TB) {
	t.Helper()
	NeedTools(t, "ffmpeg", "ffprobe")
}

// CheckWith reports whether a test should run its optional checks that
// use the tools: when they are all in PATH, or when
// MOQBRIDGE_INTEROP=require, where running the checks without them fails
// the test rather than passing over them.
func CheckWith(tools ...string) bool {
	if InteropRequired() {
		return true
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return false
		}
	}
	return true
}

// MustHaveTools fails the test when one of the tools is not in PATH,
// whatever MOQBRIDGE_INTEROP says: for tests that are never skipped
// because the tools come with the test environment (.ci/run installs
// them).
func MustHaveTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
}

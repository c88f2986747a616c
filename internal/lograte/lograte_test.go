package lograte

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLimiter: one line per interval; what was held back is counted on the
// next line.
func TestLimiter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var r Limiter
	for range 5 {
		r.Log(log, slog.LevelWarn, "refused", "n", 1)
	}
	if got := strings.Count(buf.String(), "refused"); got != 1 {
		t.Fatalf("%d lines for 5 calls within the interval, want 1:\n%s", got, buf.String())
	}
	r.mu.Lock()
	r.last = r.last.Add(-2 * Interval)
	r.mu.Unlock()
	r.Log(log, slog.LevelWarn, "refused", "n", 1)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "suppressed=4") || strings.Contains(lines[0], "suppressed") {
		t.Fatalf("lines after the interval:\n%s\nwant a second line with suppressed=4", buf.String())
	}
}

// Package lograte writes log lines at a bounded rate, for events a peer
// can cause as often as it likes (refused connections, rejected streams):
// one line per interval, with a count of the ones held back.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Interval is the shortest time between two lines of one Limiter.
const Interval = time.Second

// Limiter writes at most one line per Interval; the lines it holds back
// are counted and reported as "suppressed" on the next line it writes.
// The zero value is ready to use and safe for concurrent use.
type Limiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Log writes msg with args at level unless a line was written less than
// Interval ago.
func (r *Limiter) Log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	if log == nil {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if !r.last.IsZero() && now.Sub(r.last) < Interval {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.suppressed = 0
	r.last = now
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(context.Background(), level, msg, args...)
}

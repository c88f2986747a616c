package sdk

import (
	"time"

	"github.com/moqbridge/moqbridge/internal/backoff"
)

// Backoff is how a source or sink retries after a transient failure (a
// server gone, a connection lost): the first retry waits Min, each further
// one twice as long up to Max, every wait spread by ±Jitter of itself so
// that the clients of a restarted server do not return in one burst.
// Adapters start again from Min after a connection that worked for a
// while.
type Backoff struct {
	// Min is the first wait (default 500 ms), Max the longest (default
	// 10 s).
	Min, Max time.Duration
	// Jitter is the spread of each wait as a fraction of it, 0 to 1
	// (default 0.5; negative turns it off).
	Jitter float64
	// GiveUpAfter stops retrying once the adapter has been failing this
	// long (0: never).
	GiveUpAfter time.Duration
}

// DefaultBackoff is what zero Backoff fields take.
var DefaultBackoff = Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.5}

// WithDefaults returns b with zero fields set from DefaultBackoff, Max at
// least Min and Jitter within 0 to 1.
func (b Backoff) WithDefaults() Backoff {
	d := DefaultBackoff
	backoff.Defaults(&b.Min, &b.Max, &b.Jitter, d.Min, d.Max, d.Jitter)
	return b
}

// Wait returns the wait before retry n (from 0), jittered; b should have
// its defaults (WithDefaults).
func (b Backoff) Wait(n int) time.Duration { return backoff.Wait(b.Min, b.Max, b.Jitter, n) }

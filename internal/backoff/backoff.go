// Package backoff holds the arithmetic of moqbridge's retry policies
// (protocol.Reconnect for MOQ clients, sdk.Backoff for sources and sinks):
// exponential waits with jitter, so that the clients of a restarted server
// do not all return at once.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Defaults sets *minWait, *maxWait and *jitter from the defaults where they
// are zero, keeps *maxWait at least *minWait and *jitter at most 1. A
// negative jitter turns it off and stays negative (-1), so that applying
// the defaults twice does not turn it back on.
func Defaults(minWait, maxWait *time.Duration, jitter *float64, defMin, defMax time.Duration, defJitter float64) {
	if *minWait <= 0 {
		*minWait = defMin
	}
	if *maxWait <= 0 {
		*maxWait = defMax
	}
	*maxWait = max(*maxWait, *minWait)
	switch {
	case *jitter == 0:
		*jitter = defJitter
	case *jitter < 0:
		*jitter = -1
	case *jitter > 1:
		*jitter = 1
	}
}

// Wait returns the wait before retry n (from 0): minWait doubled n times,
// at most maxWait, spread by ±jitter of itself.
func Wait(minWait, maxWait time.Duration, jitter float64, n int) time.Duration {
	d := minWait
	for i := 0; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	if jitter > 0 {
		d = time.Duration(float64(d) * (1 + jitter*(2*rand.Float64()-1)))
	}
	return d
}

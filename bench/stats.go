package bench

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// counters are what the publisher and the subscribers of one run count.
// They only grow; results are differences of two snapshots.
type counters struct {
	publishedFrames, publishedBytes atomic.Uint64
	frames, bytes                   atomic.Uint64 // delivered, summed over subscribers
	groups, incomplete              atomic.Uint64 // group streams ended by FIN / by a reset
	corrupt                         atomic.Uint64 // frames that failed the byte check
	joined                          atomic.Int64  // subscribers that received a frame

	lat latencies
}

type counterSnapshot struct {
	at                              time.Time
	cpu                             time.Duration // of the load generator: this process (and the gomoqt peers child)
	machine                         time.Duration // of every process
	rssPeak                         uint64        // of the process holding the subscribers, since the previous snapshot
	publishedFrames, publishedBytes uint64
	frames, bytes                   uint64
	groups, incomplete, corrupt     uint64
}

func (c *counters) snapshot() counterSnapshot {
	return counterSnapshot{
		at:              time.Now(),
		cpu:             processCPU(),
		machine:         MachineBusy(),
		rssPeak:         residentPeak(true),
		publishedFrames: c.publishedFrames.Load(),
		publishedBytes:  c.publishedBytes.Load(),
		frames:          c.frames.Load(),
		bytes:           c.bytes.Load(),
		groups:          c.groups.Load(),
		incomplete:      c.incomplete.Load(),
		corrupt:         c.corrupt.Load(),
	}
}

func (c *counters) published(n int) {
	c.publishedFrames.Add(1)
	c.publishedBytes.Add(uint64(n))
}

// received checks and counts one delivered frame.
func (c *counters) received(l Load, p []byte, seq uint64, idx int) {
	now := time.Now()
	sent, ok := l.check(p, seq, idx)
	if !ok {
		c.corrupt.Add(1)
		return
	}
	c.frames.Add(1)
	c.bytes.Add(uint64(len(p)))
	c.lat.record(now.Sub(sent))
}

// groupEnded counts a group stream that ended with FIN (complete) or not.
func (c *counters) groupEnded(complete bool) {
	if complete {
		c.groups.Add(1)
	} else {
		c.incomplete.Add(1)
	}
}

// latencies collects publish→receive latencies while recording is on, so
// only frames received inside the measurement window count.
type latencies struct {
	mu        sync.Mutex
	recording bool
	samples   []time.Duration
}

func (l *latencies) record(d time.Duration) {
	l.mu.Lock()
	if l.recording {
		l.samples = append(l.samples, d)
	}
	l.mu.Unlock()
}

func (l *latencies) start() {
	l.mu.Lock()
	l.recording = true
	l.samples = l.samples[:0]
	l.mu.Unlock()
}

// stop ends recording and returns the samples, sorted.
func (l *latencies) stop() []time.Duration {
	l.mu.Lock()
	l.recording = false
	s := slices.Clone(l.samples)
	l.mu.Unlock()
	slices.Sort(s)
	return s
}

// percentile returns the q-quantile (0 ≤ q ≤ 1) of sorted samples by the
// nearest-rank method, 0 without samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

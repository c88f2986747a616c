package protocol

import (
	"sync"
	"time"
)

// pace measures how fast a peer takes the data of one subscription: the
// bytes it accepted per second of the time during which at least one write
// or stream open was waiting on it. Time in which nothing waited on the
// peer (every group waiting for its publisher) does not count, so a peer is
// judged only on what was actually offered to it; and the first sample is
// not used, because it covers a connection's cold start (congestion window
// and flow-control windows still growing). It also tells when the peer has
// taken nothing for a while although something waited on it.
//
// Writes call begin and end around every stream write and open; the
// methods are safe for concurrent use.
type pace struct {
	mu       sync.Mutex
	active   int           // writes and opens waiting on the peer now
	last     time.Time     // the last begin or end while active
	progress time.Time     // the last completed write or open, or when waiting began
	busy     time.Duration // time with active > 0 in the current sample
	bytes    int64         // bytes written in the current sample
	samples  int
	rate     float64 // bytes per second; 0 until measured
}

// paceSample is how much busy time one rate sample covers.
const paceSample = 100 * time.Millisecond

// begin records that a write or open starts waiting on the peer.
func (p *pace) begin(now time.Time) {
	p.mu.Lock()
	if p.active == 0 {
		p.progress = now
	} else {
		p.busy += now.Sub(p.last)
	}
	p.last = now
	p.active++
	p.mu.Unlock()
}

// end records that a write of n bytes (0 for an open) completed.
func (p *pace) end(now time.Time, n int) {
	p.mu.Lock()
	p.busy += now.Sub(p.last)
	p.last = now
	p.active--
	p.progress = now
	p.bytes += int64(n)
	if p.busy >= paceSample {
		p.samples++
		if p.samples > 1 {
			sample := float64(p.bytes) / p.busy.Seconds()
			if p.rate == 0 {
				p.rate = sample
			} else {
				p.rate = (p.rate + sample) / 2
			}
		}
		p.busy, p.bytes = 0, 0
	}
	p.mu.Unlock()
}

// state returns the measured rate (0: not known yet) and whether the peer
// is stalled: something has waited on it for longer than lag without any
// write or open completing.
func (p *pace) state(now time.Time, lag time.Duration) (rate float64, stalled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate, p.active > 0 && now.Sub(p.progress) > lag
}

// rateWindow turns a growing byte count into a rate averaged over at least
// span: it keeps up to len(marks) samples of the count, at least span/8
// apart, and measures from the oldest one still needed.
type rateWindow struct {
	span  time.Duration
	marks [9]rateMark // ring; marks[start] is the oldest
	start int
	n     int
}

type rateMark struct {
	at    time.Time
	total int64
}

// rate records total, the count at now, and returns the count's growth
// per second since the oldest mark, over no less than span (so a count
// that has not been watched for a whole span is not extrapolated from a
// burst).
func (w *rateWindow) rate(now time.Time, total int64) float64 {
	if w.n == 0 {
		w.push(rateMark{at: now})
	}
	// Marks older than span are needed only while the next one is too.
	for w.n > 1 && now.Sub(w.marks[(w.start+1)%len(w.marks)].at) >= w.span {
		w.start = (w.start + 1) % len(w.marks)
		w.n--
	}
	oldest := w.marks[w.start]
	newest := w.marks[(w.start+w.n-1)%len(w.marks)]
	if now.Sub(newest.at) >= w.span/8 {
		if w.n == len(w.marks) {
			w.start = (w.start + 1) % len(w.marks)
			w.n--
		}
		w.push(rateMark{at: now, total: total})
	}
	return float64(total-oldest.total) / max(now.Sub(oldest.at), w.span).Seconds()
}

func (w *rateWindow) push(m rateMark) {
	w.marks[(w.start+w.n)%len(w.marks)] = m
	w.n++
}

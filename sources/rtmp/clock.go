package rtmp

import "time"

// rtmpPeriod is the span of RTMP's 32-bit millisecond timestamps, after
// which they wrap to 0.
const rtmpPeriod = (1 << 32) * time.Millisecond

// Limits of the timestamp steps a clock takes as they come; a larger step
// is a discontinuity (an encoder restarted, OBS reconnected its output)
// and the clock is rebased instead of following it.
const (
	maxForwardStep  = 10 * time.Second
	maxBackwardStep = time.Second
)

// Default and bounds of the step a clock puts between the last time it
// gave and the first one after a discontinuity.
const (
	defaultStep = 10 * time.Millisecond
	maxStep     = 100 * time.Millisecond
)

// clock maps the RTMP decode timestamps of one connection, shared by its
// tracks, onto the broadcast clock: the first one becomes 0; steps are
// taken modulo 2^32 ms, so a wrap is crossed seamlessly; a step forward of
// more than maxForwardStep or backward of more than maxBackwardStep (the
// tracks of a connection interleave with small backward steps) is a jump,
// and the clock resumes just after the latest time it gave. Each track
// keeps its own decode times monotonic (track).
type clock struct {
	started bool
	lastRaw time.Duration // the last RTMP timestamp seen
	last    time.Duration // what it mapped to (negative before the first)
	max     time.Duration // the latest time given
	step    time.Duration // the last ordinary forward step
	jumps   int
}

// dts maps an RTMP decode timestamp (in [0, 2^32 ms)) onto the broadcast
// clock. The result is never negative.
func (c *clock) dts(raw time.Duration) time.Duration {
	if !c.started {
		c.started, c.lastRaw, c.step = true, raw, defaultStep
		return 0
	}
	d := (raw - c.lastRaw) % rtmpPeriod
	switch {
	case d > rtmpPeriod/2:
		d -= rtmpPeriod
	case d < -rtmpPeriod/2:
		d += rtmpPeriod
	}
	c.lastRaw = raw
	if d > maxForwardStep || d < -maxBackwardStep {
		c.jumps++
		c.last = c.max + c.step
	} else {
		c.last += d
		if d > 0 {
			c.step = min(d, maxStep)
		}
	}
	out := max(c.last, 0) // before the first timestamp: an interleaved track
	c.max = max(c.max, out)
	return out
}

// trackClock keeps one track's decode times from going backwards on the
// connection's clock and applies the composition offset.
type trackClock struct {
	c       *clock
	started bool
	lastDTS time.Duration
}

// times maps an access unit's RTMP PTS and DTS onto the broadcast clock:
// a DTS never before the track's previous one, and a PTS that keeps the
// composition offset (PTS − DTS) and is never negative.
func (t *trackClock) times(pts, dts time.Duration) (time.Duration, time.Duration) {
	d := t.c.dts(dts)
	if t.started && d < t.lastDTS {
		d = t.lastDTS
	}
	t.started, t.lastDTS = true, d
	p := d + (pts - dts)
	if p < 0 {
		p = 0
	}
	return p, d
}

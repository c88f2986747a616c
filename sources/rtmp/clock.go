package rtmp

import (
	"math"
	"time"
)

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
	resumed time.Duration // >0: the next timestamp continues this long after the latest (resume)
}

// resume makes the next timestamp, the first of a publisher that returned
// to the broadcast, a discontinuity placed one step (the last ordinary
// one) after the latest time given: the broadcast's media goes on without
// a hole, whatever the new publisher's timestamps (an encoder restarted
// at 0, or OBS's own clock with the time it was away). A hole would not
// help the players: @moq/watch plays audio without gaps, so after one it
// would put the audio behind the video by the time the publisher was away.
// Viewers are that much further behind live instead, until their player
// catches up.
func (c *clock) resume() {
	if c.started {
		c.resumed = max(c.step, time.Millisecond)
	}
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
	if c.resumed > 0 {
		c.jumps++
		c.last = c.max + c.resumed
		c.resumed = 0
	} else if d > maxForwardStep || d < -maxBackwardStep {
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

// snapTolerance is how far from its frame-rate grid a video timestamp may
// be and still be taken for a rounded grid time: RTMP timestamps are whole
// milliseconds (each rounded by up to 0.5 ms, and the first one, which the
// clock maps to 0, too).
const snapTolerance = 1500 * time.Microsecond

// trackClock keeps one track's decode times from going backwards on the
// connection's clock and applies the composition offset. For video with a
// known constant frame rate, and for AAC (1024-sample frames), it snaps
// timestamps that are within
// snapTolerance of the frame grid (anchored at the track's first decode
// time, and again after each jump of the clock) to the grid: a 30 fps
// stream's 0, 33, 67, 100 ms become exact multiples of 1/30 s again, so
// that recordings have regular durations and players that round to the
// frame rate see distinct times. Times off the grid (variable frame rate)
// are kept.
type trackClock struct {
	c       *clock
	fps     float64 // 0: no snapping
	started bool
	lastDTS time.Duration
	anchor  time.Duration
	jumps   int // the clock's jumps when anchored
}

// times maps an access unit's RTMP PTS and DTS onto the broadcast clock:
// a DTS never before the track's previous one, and a PTS that keeps the
// composition offset (PTS − DTS) and is never negative.
func (t *trackClock) times(pts, dts time.Duration) (time.Duration, time.Duration) {
	d := t.c.dts(dts)
	p := d + (pts - dts)
	if t.fps > 0 {
		if !t.started || t.jumps != t.c.jumps {
			t.anchor, t.jumps = d, t.c.jumps
		}
		d, p = t.snap(d), t.snap(p)
	}
	if t.started && d < t.lastDTS { // held at the previous one, the offset kept
		p += t.lastDTS - d
		d = t.lastDTS
	}
	t.started, t.lastDTS = true, d
	if p < 0 {
		p = 0
	}
	return p, d
}

// continueFrom takes over the state of the track clock of an earlier
// connection whose track this one continues, so that decode times stay
// monotonic across them (it anchors its grid afresh).
func (t *trackClock) continueFrom(prev *trackClock) {
	t.started, t.lastDTS, t.anchor, t.jumps = prev.started, prev.lastDTS, prev.anchor, prev.jumps
}

// snap returns x on the frame grid if it is within snapTolerance of it.
func (t *trackClock) snap(x time.Duration) time.Duration {
	n := math.Round((x - t.anchor).Seconds() * t.fps)
	g := t.anchor + time.Duration(math.Round(n/t.fps*1e9))
	if g-x <= snapTolerance && x-g <= snapTolerance {
		return g
	}
	return x
}

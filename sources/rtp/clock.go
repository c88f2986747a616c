package rtp

import (
	"time"
)

// startOffset is the broadcast time of the session's first packet or
// sender report. Streams whose sender reports place them slightly before
// that moment (the audio of a sender that started it a little earlier
// than the video) stay at positive times.
const startOffset = time.Second

// maxTimestampJump is the largest step between consecutive RTP
// timestamps of a stream taken as it comes; a larger one is a sender that
// restarted its clock, and the stream is placed again by arrival time.
const maxTimestampJump = 10 * time.Second

// timeline is the broadcast clock shared by the streams of a session. It
// starts at the arrival of the first packet or sender report (at
// startOffset); once a sender report came, it also maps the sender's NTP
// clock onto it, so that streams with unrelated RTP timestamp bases line
// up.
type timeline struct {
	epoch  time.Time // zero before anything arrived
	ntpSet bool
	ntpRef time.Duration // a sender NTP time (since 1900)…
	ntpAt  time.Duration // …and its broadcast time
}

// arrival returns the broadcast time of an arrival time.
func (tl *timeline) arrival(at time.Time) time.Duration {
	if tl.epoch.IsZero() {
		tl.epoch = at
	}
	return startOffset + at.Sub(tl.epoch)
}

// fromNTP returns the broadcast time of a sender NTP time; ntpSet must be.
func (tl *timeline) fromNTP(ntp time.Duration) time.Duration {
	return tl.ntpAt + (ntp - tl.ntpRef)
}

// ntpDuration converts a 64-bit NTP timestamp (seconds since 1900 in 32.32
// fixed point) to a duration since 1900.
func ntpDuration(ntp uint64) time.Duration {
	sec, frac := ntp>>32, ntp&0xffffffff
	return time.Duration(sec)*time.Second + time.Duration((frac*uint64(time.Second))>>32)
}

// senderReport is the NTP and RTP time of one instant, from an RTCP SR.
type senderReport struct {
	ssrc uint32
	ntp  time.Duration
	rtp  uint32
}

// streamClock maps the RTP timestamps of one stream (one SSRC of a media)
// onto the broadcast clock: it unwraps them from 32 bits and places them
// linearly from an anchor, set by the stream's first packet (at its
// arrival) and again by its first sender report (by the sender's NTP
// clock). Later reports are not followed: the drift between a sender's
// RTP and NTP clocks is small against a broadcast's duration, and
// following it would make timestamps step.
type streamClock struct {
	tl   *timeline
	rate int64 // ticks per second

	started   bool
	lastExt   int64 // the latest unwrapped timestamp
	anchorExt int64
	anchorAt  time.Duration
	synced    bool // anchored by a sender report
	pending   *senderReport
	jumps     uint64
}

// restart forgets the stream (a new SSRC or sequence); a sender report
// already received for ssrc is kept.
func (c *streamClock) restart(ssrc uint32) {
	pending := c.pending
	if pending != nil && pending.ssrc != ssrc {
		pending = nil
	}
	*c = streamClock{tl: c.tl, rate: c.rate, pending: pending, jumps: c.jumps}
}

// ticks converts clock ticks to a duration without overflowing.
func (c *streamClock) ticks(n int64) time.Duration {
	return time.Duration(n/c.rate)*time.Second + time.Duration(n%c.rate)*time.Second/time.Duration(c.rate)
}

// unwrap extends a 32-bit timestamp near the latest one.
func (c *streamClock) unwrap(ts uint32) int64 {
	return c.lastExt + int64(int32(ts-uint32(c.lastExt)))
}

// at returns the broadcast time of a packet's RTP timestamp; arrived is
// when the packet came (it places the stream's first packet).
func (c *streamClock) at(ts uint32, arrived time.Time) time.Duration {
	if !c.started {
		c.started, c.lastExt = true, int64(ts)
		c.anchor(c.lastExt, arrived)
		return c.anchorAt + c.ticks(c.lastExt-c.anchorExt)
	}
	ext := c.unwrap(ts)
	if d := c.ticks(ext - c.lastExt); d > maxTimestampJump || d < -maxTimestampJump {
		c.jumps++
		c.lastExt = ext
		c.synced = false
		c.anchor(ext, arrived)
		return c.anchorAt + c.ticks(ext-c.anchorExt)
	}
	c.lastExt = max(c.lastExt, ext) // B-frames step back
	return c.anchorAt + c.ticks(ext-c.anchorExt)
}

// anchor places ext: by the pending sender report if there is one, the
// timeline maps NTP and the report agrees with the arrival time within
// maxTimestampJump (a report of an earlier sequence, or a bogus one, does
// not), else at its arrival time.
func (c *streamClock) anchor(ext int64, arrived time.Time) {
	byArrival := c.tl.arrival(arrived)
	if sr := c.pending; sr != nil && c.tl.ntpSet {
		c.pending = nil
		srExt := ext + int64(int32(sr.rtp-uint32(ext)))
		srAt := c.tl.fromNTP(sr.ntp)
		if d := srAt + c.ticks(ext-srExt) - byArrival; d <= maxTimestampJump && d >= -maxTimestampJump {
			c.anchorExt, c.anchorAt, c.synced = srExt, srAt, true
			return
		}
	}
	c.anchorExt, c.anchorAt = ext, byArrival
}

// report takes a sender report of the stream's current SSRC (or of the
// one it will have: it is kept until its packets come). The first report
// of a session maps the sender's NTP clock onto the timeline where the
// stream already is, so nothing moves; the first report of every other
// stream moves the stream onto that mapping. It returns how far the
// stream moved.
func (c *streamClock) report(sr senderReport, arrived time.Time) time.Duration {
	if c.synced {
		c.pending = &sr // for a restart or a jump of the stream
		return 0
	}
	if !c.tl.ntpSet {
		c.tl.ntpSet, c.tl.ntpRef = true, sr.ntp
		if c.started {
			c.tl.ntpAt = c.anchorAt + c.ticks(c.unwrap(sr.rtp)-c.anchorExt)
			c.synced = true
			return 0
		}
		c.tl.ntpAt = c.tl.arrival(arrived)
		c.pending = &sr
		return 0
	}
	if !c.started {
		c.pending = &sr
		return 0
	}
	before := c.anchorAt + c.ticks(c.lastExt-c.anchorExt)
	c.pending = &sr
	c.anchor(c.lastExt, arrived)
	if !c.synced { // the report disagrees with the arrival times: kept as they were
		c.anchorExt, c.anchorAt = c.lastExt, before
	}
	return c.anchorAt + c.ticks(c.lastExt-c.anchorExt) - before
}

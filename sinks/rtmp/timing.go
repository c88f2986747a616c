package rtmp

import (
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/moqbridge/moqbridge/sdk"
)

// clock maps the broadcast's timestamps onto the millisecond timestamps
// of one RTMP connection: the decode time of the connection's first frame
// (a video keyframe) becomes 0. Every track's decode times increase
// strictly, by at least a millisecond, as FLV demuxers and MP4 muxers
// require; presentation times are never before decode times.
type clock struct {
	started bool
	origin  time.Duration
	last    []time.Duration // per track: the last decode time sent
	sent    []bool
	dts     []dtsExtractor // per track: decode times of H.264/H.265 frames without any
}

func newClock(tracks []*outTrack) *clock {
	c := &clock{last: make([]time.Duration, len(tracks)), sent: make([]bool, len(tracks)), dts: make([]dtsExtractor, len(tracks))}
	c.restart(tracks)
	return c
}

// restart starts the decode time extractors again, at a keyframe that
// follows dropped frames: they follow the frames' order, which a gap
// breaks.
func (c *clock) restart(tracks []*outTrack) {
	for i, o := range tracks {
		switch o.codec {
		case codecH264:
			var d h264.DTSExtractor
			d.Initialize()
			c.dts[i] = &d
		case codecH265:
			var d h265.DTSExtractor
			d.Initialize()
			c.dts[i] = &d
		}
	}
}

// dtsExtractor is mediacommon's H.264 or H.265 DTSExtractor: it derives
// decode times from the picture order counts of the slices, in 90 kHz
// ticks.
type dtsExtractor interface {
	Extract(au [][]byte, pts int64) (int64, error)
}

// decodeTime returns the frame's decode time: its DTS when it has one
// (cmaf tracks), else for H.264 and H.265 the extractor's (legacy tracks
// carry presentation times only, and B-frames make them go back), else
// its PTS. nalus are the frame's NAL units; a keyframe's are preceded by
// the track's parameter sets so that the extractor has them.
func (c *clock) decodeTime(i int, o *outTrack, f *sdk.Frame, nalus [][]byte) time.Duration {
	if f.HasDTS {
		return f.DTS
	}
	d := c.dts[i]
	if d == nil {
		return f.PTS
	}
	au := nalus
	if f.Keyframe {
		au = append(o.ps.ConfigSets(), nalus...)
	}
	ticks, err := extract(d, au, f.PTS)
	if err != nil {
		// A stream the extractor does not follow: presentation order,
		// kept increasing by times.
		return f.PTS
	}
	return time.Duration(ticks) * time.Second / 90000
}

// extract runs the extractor, turning a panic on bad input into an error.
func extract(d dtsExtractor, au [][]byte, pts time.Duration) (ticks int64, err error) {
	defer func() {
		if recover() != nil {
			err = fmt.Errorf("DTS extraction failed")
		}
	}()
	return d.Extract(au, int64(pts*90000/time.Second))
}

// times returns the frame's timestamps on the connection's clock, in
// whole milliseconds, or ok false for a frame from before the
// connection's start (audio that came with, or just after, the first
// keyframe's GOP but is older than it).
func (c *clock) times(i int, pts, dts time.Duration) (p, d time.Duration, ok bool) {
	if !c.started {
		c.started, c.origin = true, dts
	}
	d = (dts - c.origin).Round(time.Millisecond)
	p = (pts - c.origin).Round(time.Millisecond)
	if d < 0 {
		if !c.sent[i] && p < 0 {
			return 0, 0, false
		}
		d = 0
	}
	if c.sent[i] && d <= c.last[i] {
		d = c.last[i] + time.Millisecond
	}
	p = max(p, d)
	c.last[i], c.sent[i] = d, true
	return p, d, true
}

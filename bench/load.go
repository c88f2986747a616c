package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"
)

// Load describes what the publisher sends: one track of groups of
// FramesPerGroup frames, the first of each group KeyframeSize bytes and the
// others FrameSize bytes, at FPS frames per second, or as fast as the
// publisher's connection takes them when FPS is 0.
type Load struct {
	Name           string
	FrameSize      int
	KeyframeSize   int
	FramesPerGroup int
	FPS            int
}

// Media is a live video rendition: 30 fps, 2-second groups, a 96 kB
// keyframe and 24 kB frames, about 6 Mbit/s.
var Media = Load{Name: "media", FrameSize: 24_000, KeyframeSize: 96_000, FramesPerGroup: 60, FPS: 30}

// Max saturates the path: 64 KiB frames in groups of 60, sent as fast as
// the publisher's connection accepts them. The relay cannot deliver this to
// every subscriber and is expected to drop old groups rather than queue.
var Max = Load{Name: "max", FrameSize: 64 << 10, KeyframeSize: 64 << 10, FramesPerGroup: 60}

// frameSize is the payload size of frame idx of a group.
func (l Load) frameSize(idx int) int {
	if idx == 0 {
		return l.KeyframeSize
	}
	return l.FrameSize
}

// BitsPerSecond is the paced load's offered rate per subscriber (0 for an
// unpaced load).
func (l Load) BitsPerSecond() float64 {
	if l.FPS == 0 {
		return 0
	}
	perGroup := l.KeyframeSize + (l.FramesPerGroup-1)*l.FrameSize
	return float64(perGroup) * 8 * float64(l.FPS) / float64(l.FramesPerGroup)
}

// Frame layout: the send time in Unix nanoseconds, the group sequence and
// the frame index (big endian), then a fill that depends on both, so a
// frame that is truncated, misrouted or corrupted on the way is detected.
const (
	frameHeaderSize = 8 + 8 + 4
	fillPeriod      = 251 // prime, so fills of neighbouring frames differ
	maxFrameSize    = 1 << 20
)

// fill is the pattern frames are cut from; copying from it costs a
// memmove, not a loop per byte.
var fill = func() []byte {
	p := make([]byte, maxFrameSize+fillPeriod)
	for i := range p {
		p[i] = byte(i % fillPeriod)
	}
	return p
}()

func fillShift(seq uint64, idx int) int {
	return int((seq*61 + uint64(idx)) % fillPeriod)
}

// stamp writes frame idx of group seq into p (whose length is the frame
// size) with send time now.
func stamp(p []byte, seq uint64, idx int, now time.Time) {
	binary.BigEndian.PutUint64(p[0:8], uint64(now.UnixNano()))
	binary.BigEndian.PutUint64(p[8:16], seq)
	binary.BigEndian.PutUint32(p[16:20], uint32(idx))
	shift := fillShift(seq, idx)
	copy(p[frameHeaderSize:], fill[shift+frameHeaderSize:shift+len(p)])
}

// check verifies that p is frame idx of group seq, byte for byte, and
// returns its send time.
func (l Load) check(p []byte, seq uint64, idx int) (sent time.Time, ok bool) {
	if idx >= l.FramesPerGroup || len(p) != l.frameSize(idx) || len(p) < frameHeaderSize {
		return time.Time{}, false
	}
	if binary.BigEndian.Uint64(p[8:16]) != seq || binary.BigEndian.Uint32(p[16:20]) != uint32(idx) {
		return time.Time{}, false
	}
	shift := fillShift(seq, idx)
	if !bytes.Equal(p[frameHeaderSize:], fill[shift+frameHeaderSize:shift+len(p)]) {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(p[0:8]))), true
}

// pacer releases frames at the load's frame rate. It keeps the schedule
// rather than the interval: a publisher delayed by the scheduler catches
// up, so the offered rate over the window is exact.
type pacer struct {
	interval time.Duration
	next     time.Time
	timer    *time.Timer
}

func newPacer(l Load) *pacer {
	p := &pacer{next: time.Now()}
	if l.FPS > 0 {
		p.interval = time.Second / time.Duration(l.FPS)
	}
	return p
}

// wait blocks until the next frame is due; false means ctx ended.
func (p *pacer) wait(ctx context.Context) bool {
	if p.interval == 0 {
		return ctx.Err() == nil
	}
	if d := time.Until(p.next); d > 0 {
		if p.timer == nil {
			p.timer = time.NewTimer(d)
		} else {
			p.timer.Reset(d)
		}
		select {
		case <-p.timer.C:
		case <-ctx.Done():
			return false
		}
	}
	p.next = p.next.Add(p.interval)
	return ctx.Err() == nil
}

func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}

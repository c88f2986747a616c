package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"
)

// Load, its frame layout and its pacing are those of the harness
// (bench/load.go): the same frames, stamped and checked the same way.
type Load struct {
	FrameSize      int
	KeyframeSize   int
	FramesPerGroup int
	FPS            int
}

func (l Load) frameSize(idx int) int {
	if idx == 0 {
		return l.KeyframeSize
	}
	return l.FrameSize
}

const (
	frameHeaderSize = 8 + 8 + 4
	fillPeriod      = 251
	maxFrameSize    = 1 << 20
)

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

// stamp writes frame idx of group seq into p with send time now.
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

// pacer releases frames at the load's frame rate, keeping the schedule.
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

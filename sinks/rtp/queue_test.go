package rtp

import (
	"context"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

// qitem is a queued video frame at media time ms (milliseconds) of n
// bytes.
func qitem(ms int, key bool, n int) item {
	t := time.Duration(ms) * time.Millisecond
	return item{t: t, key: key, f: sdk.Frame{PTS: t, Keyframe: key, Payload: make([]byte, n)}}
}

func popAll(t *testing.T, q *queue) []item {
	t.Helper()
	var out []item
	for {
		it, ok, err := q.pop(context.Background(), closedTimer())
		if err != nil || !ok {
			return out
		}
		out = append(out, it)
	}
}

// closedTimer fires at once: pop returns instead of waiting.
func closedTimer() <-chan time.Time {
	c := make(chan time.Time, 1)
	c <- time.Time{}
	return c
}

// TestQueue: frames before the first keyframe are not queued; a queue
// more than maxDelay behind its newest frame skips to its latest
// keyframe; a full queue drops its oldest GOP; every drop is counted in
// frames and GOPs, and the frame that follows a drop is marked.
func TestQueue(t *testing.T) {
	q := newQueue(1000, time.Minute, 500*time.Millisecond)
	q.push(qitem(0, false, 10)) // before the first keyframe
	for ms := 40; ms <= 400; ms += 40 {
		q.push(qitem(ms, ms%200 == 40, 10))
	}
	got := popAll(t, q)
	if len(got) != 10 || got[0].t != 40*time.Millisecond || got[0].resync {
		t.Fatalf("popped %d frames, the first at %s", len(got), got[0].t)
	}
	if f, g, b := q.counters(); f != 0 || g != 0 || b != 1 {
		t.Errorf("counters %d %d %d, want one frame before the start", f, g, b)
	}

	// Behind: 1.2 s queued at once, keyframes every 200 ms.
	for ms := 440; ms <= 1600; ms += 40 {
		q.push(qitem(ms, ms%200 == 40, 10))
	}
	got = popAll(t, q)
	if got[0].t != 1440*time.Millisecond || !got[0].resync || !got[0].key || len(got) != 5 {
		t.Errorf("after the backlog: %d frames from %s (resync %v)", len(got), got[0].t, got[0].resync)
	}
	if f, g, _ := q.counters(); f != 25 || g != 5 {
		t.Errorf("dropped %d frames, %d GOPs; want 25 and 5", f, g)
	}

	// Full: 1000 bytes hold four keyframes of 300 bytes but not five.
	q = newQueue(1000, time.Minute, time.Hour)
	for i := range 5 {
		q.push(qitem(i*100, true, 300))
	}
	got = popAll(t, q)
	if len(got) != 3 || got[0].t != 200*time.Millisecond || !got[0].resync {
		t.Errorf("full queue: %d frames from %s", len(got), got[0].t)
	}
	if f, g, _ := q.counters(); f != 2 || g != 2 {
		t.Errorf("full queue dropped %d frames, %d GOPs", f, g)
	}

	// Full without a later keyframe: everything goes, and frames up to
	// the next keyframe are dropped as they come.
	q = newQueue(1000, time.Minute, time.Hour)
	q.push(qitem(0, true, 600))
	q.push(qitem(40, false, 600))
	q.push(qitem(80, false, 10))
	q.push(qitem(120, true, 10))
	got = popAll(t, q)
	if len(got) != 1 || got[0].t != 120*time.Millisecond || !got[0].resync {
		t.Errorf("after a full queue without a keyframe: %d frames from %s", len(got), got[0].t)
	}
	if f, g, _ := q.counters(); f != 3 || g != 1 {
		t.Errorf("dropped %d frames, %d GOPs; want 3 and 1", f, g)
	}

	q.close()
	if _, _, err := q.pop(context.Background(), nil); err != errQueueClosed {
		t.Errorf("pop after close: %v", err)
	}
}

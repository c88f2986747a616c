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

	// Behind: 1.2 s queued at once, keyframes every 200 ms. The first
	// pop notes the lag; once it lasted behindFor, the queue skips.
	clock := time.Unix(0, 0)
	q.now = func() time.Time { return clock }
	for ms := 440; ms <= 1600; ms += 40 {
		q.push(qitem(ms, ms%200 == 40, 10))
	}
	first, _, _ := q.pop(context.Background(), closedTimer())
	if first.t != 440*time.Millisecond || first.resync {
		t.Fatalf("the first frame behind: %s (resync %v), want 440ms: the lag has not lasted", first.t, first.resync)
	}
	clock = clock.Add(behindFor)
	got = popAll(t, q)
	if got[0].t != 1440*time.Millisecond || !got[0].resync || !got[0].key || len(got) != 5 {
		t.Errorf("after the backlog: %d frames from %s (resync %v)", len(got), got[0].t, got[0].resync)
	}
	if f, g, _ := q.counters(); f != 24 || g != 5 {
		t.Errorf("dropped %d frames, %d GOPs; want 24 and 5", f, g)
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

// TestQueueBursts: a source that delivers a GOP at a time puts the writer
// a GOP behind at every delivery, and the writer, in real time, catches
// up before the next: nothing is skipped, even when a delivery comes
// while the end of the previous GOP is still queued.
func TestQueueBursts(t *testing.T) {
	q := newQueue(1<<20, time.Minute, 500*time.Millisecond)
	clock := time.Unix(0, 0)
	q.now = func() time.Time { return clock }
	pop := func() {
		t.Helper()
		if _, ok, err := q.pop(context.Background(), closedTimer()); !ok || err != nil {
			t.Fatalf("pop %v %v", ok, err)
		}
		clock = clock.Add(40 * time.Millisecond)
	}
	// One tick per frame interval (40 ms): GOP k (two seconds of frames
	// at once, a keyframe first) comes at tick 50k-2, two frames before
	// the writer is done with GOP k-1; the writer takes a frame a tick.
	for tick := range 500 {
		if gop := (tick + 2) / 50; (tick+2)%50 == 0 || tick == 0 {
			for ms := gop * 2000; ms < (gop+1)*2000; ms += 40 {
				q.push(qitem(ms, ms%2000 == 0, 10))
			}
		}
		pop()
	}
	for q.len() > 0 {
		pop()
	}
	if f, g, _ := q.counters(); f != 0 || g != 0 {
		t.Errorf("dropped %d frames, %d GOPs of a bursty source that is live", f, g)
	}
}

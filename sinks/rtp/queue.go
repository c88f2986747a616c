package rtp

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

// errQueueClosed is returned by queue.pop once the broadcast ended and
// everything queued was taken.
var errQueueClosed = errors.New("rtp: queue closed")

// item is one frame of one of the sink's tracks (an index into them).
type item struct {
	track int
	f     sdk.Frame
	t     time.Duration // when it is due on the media clock: its decode time
	key   bool          // a point the streams can start at: a video keyframe, or any frame without video
	// resync: frames before it were dropped; the schedule starts again here.
	resync bool
}

// behindFor is how long the writer must stay more than maxDelay behind
// the newest frame queued before the queue skips (see queue).
const behindFor = 3 * time.Second

// queue holds the frames between the broadcast's reader (push, which never
// blocks) and the writer (pop). It keeps the writer near live:
//
//   - pop skips to the latest startable frame queued (a video keyframe)
//     when the frame it would hand out has been more than maxDelay of
//     media behind the newest frame queued for behindFor: the sink is
//     behind (a backlog came in one burst, or the writer was held up), so
//     the backlog is dropped rather than sent. The lag must last: a
//     source that delivers a GOP at a time (fragmented MP4, one fragment
//     per GOP) puts the writer a GOP behind at every fragment, and the
//     writer, sending in real time, catches up before the next one; a
//     skip there would cut the end of every GOP;
//   - push drops the oldest GOP when the queue holds more than maxBytes or
//     maxSpan of media, so that memory stays bounded whatever comes.
//
// Before the first startable frame, and after a drop that left no
// startable frame, frames are dropped up to the next one, so the writer
// always starts, and resumes, at a keyframe.
type queue struct {
	maxBytes  int
	maxSpan   time.Duration
	maxDelay  time.Duration
	behindFor time.Duration
	now       func() time.Time // the clock behindFor is measured on

	mu      sync.Mutex
	items   []item
	head    int
	bytes   int
	newest  time.Duration // the latest due time pushed
	waitKey bool          // drop until the next startable frame
	started bool          // a startable frame came
	closed  bool
	wake    chan struct{} // capacity one: something was pushed or closed
	// behindSince is when the head was first found more than maxDelay
	// behind the newest frame since it was last within; zero while it is
	// within.
	behindSince time.Time

	// Counters, under mu.
	droppedFrames, droppedGOPs uint64
	beforeStart                uint64 // frames before the first startable one
}

func newQueue(maxBytes int, maxSpan, maxDelay time.Duration) *queue {
	return &queue{maxBytes: maxBytes, maxSpan: maxSpan, maxDelay: maxDelay, behindFor: behindFor, now: time.Now,
		waitKey: true, wake: make(chan struct{}, 1)}
}

func (q *queue) len() int { return len(q.items) - q.head }

// push adds a frame; it never blocks.
func (q *queue) push(it item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.waitKey {
		if !it.key {
			if q.started {
				q.droppedFrames++
			} else {
				q.beforeStart++
			}
			return
		}
		q.waitKey = false
		it.resync = q.started
		q.started = true
	}
	if q.len() == 0 || it.t > q.newest {
		q.newest = it.t
	}
	if q.head > 0 && q.head >= len(q.items)/2 {
		// Move what is left to the front, so that a queue that never
		// empties reuses its array instead of growing it.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, it)
	q.bytes += len(it.f.Payload)
	for q.len() > 1 && (q.bytes > q.maxBytes || q.newest-q.items[q.head].t > q.maxSpan) {
		q.dropOldestGOP()
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// dropOldestGOP drops the frames from the head up to the next startable
// frame; when there is none, all of them, and what follows up to the next
// startable frame that comes.
func (q *queue) dropOldestGOP() {
	next := -1
	for i := q.head + 1; i < len(q.items); i++ {
		if q.items[i].key {
			next = i
			break
		}
	}
	if next < 0 {
		q.dropTo(len(q.items))
		q.waitKey = true
		return
	}
	q.dropTo(next)
	q.items[q.head].resync = true
}

// dropTo drops the items from the head up to index end (excluded),
// counting the frames and the GOPs (whole or partial) they were part of.
func (q *queue) dropTo(end int) {
	if end <= q.head {
		return
	}
	gops := uint64(0)
	if !q.items[q.head].key {
		gops++ // the rest of a GOP begun before
	}
	for i := q.head; i < end; i++ {
		if q.items[i].key {
			gops++
		}
		q.bytes -= len(q.items[i].f.Payload)
		q.items[i] = item{}
	}
	q.droppedFrames += uint64(end - q.head)
	q.droppedGOPs += gops
	q.head = end
}

// close ends the queue: pop returns what is left, then errQueueClosed.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop takes the next frame to send, waiting for one until ctx ends or
// wake fires (then ok is false). When the sink is behind by more than
// maxDelay it first skips to the latest startable frame queued (see
// queue).
func (q *queue) pop(ctx context.Context, wake <-chan time.Time) (it item, ok bool, err error) {
	for {
		q.mu.Lock()
		if q.len() > 0 {
			q.catchUp()
			it := q.items[q.head]
			q.items[q.head] = item{}
			q.head++
			q.bytes -= len(it.f.Payload)
			q.mu.Unlock()
			return it, true, nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return item{}, false, errQueueClosed
		}
		select {
		case <-q.wake:
		case <-wake:
			return item{}, false, nil
		case <-ctx.Done():
			return item{}, false, ctx.Err()
		}
	}
}

// catchUp skips to the latest startable frame when the head has been
// more than maxDelay behind the newest frame for behindFor.
func (q *queue) catchUp() {
	if q.newest-q.items[q.head].t <= q.maxDelay {
		q.behindSince = time.Time{}
		return
	}
	now := q.now()
	if q.behindSince.IsZero() {
		q.behindSince = now
	}
	if now.Sub(q.behindSince) >= q.behindFor {
		q.skipToLatestKey()
		q.behindSince = time.Time{}
	}
}

// skipToLatestKey drops the frames before the latest startable frame
// queued, if there is one after the head.
func (q *queue) skipToLatestKey() {
	for i := len(q.items) - 1; i > q.head; i-- {
		if q.items[i].key {
			q.dropTo(i)
			q.items[q.head].resync = true
			return
		}
	}
}

// counters returns the frames and GOPs dropped to stay near live, and the
// frames discarded before the first startable one.
func (q *queue) counters() (frames, gops, beforeStart uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.droppedFrames, q.droppedGOPs, q.beforeStart
}

package rtmp

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

// errQueueClosed is returned by queue.pop once the broadcast ended and
// everything queued was taken.
var errQueueClosed = errors.New("rtmp: queue closed")

// item is one frame of one of the sink's tracks (an index into its
// tracks).
type item struct {
	track int
	f     sdk.Frame
	key   bool // a point a connection can start at: a video keyframe, or any audio frame without video
	gap   bool // frames before it were dropped: it resumes the stream
}

// queue holds the frames between the broadcast's reader (push, which never
// blocks) and the connection's writer (pop). It is bounded in bytes and in
// media time, and it keeps what it holds startable:
//
//   - While a connection is up (live), frames are appended. When the
//     queue is full (the server takes less than the broadcast brings),
//     the frame is dropped and so is everything after it up to the next
//     keyframe, so whole GOPs are dropped and the server receives a
//     stream that goes on at a keyframe.
//   - While there is no connection, and while a new one has not taken its
//     first frame, the queue holds the current GOP only: a keyframe
//     empties it and starts it again, so a connection starts at the
//     latest keyframe.
//
// Frames the writer has taken are its own; the payloads are shared with
// the broadcast's other readers and never modified.
type queue struct {
	maxBytes int
	maxSpan  time.Duration

	mu       sync.Mutex
	items    []item
	head     int
	bytes    int
	live     bool // a connection takes frames
	started  bool // and it took its first one
	dropping bool // a GOP is being dropped: wait for the next keyframe
	closed   bool
	wake     chan struct{} // capacity one: something was pushed or closed
	done     chan struct{} // closed by close

	// Counters, under mu.
	droppedFrames uint64 // frames dropped for a slow server
	droppedGOPs   uint64
	offline       uint64 // frames discarded while no connection was up
}

func newQueue(maxBytes int, maxSpan time.Duration) *queue {
	return &queue{maxBytes: maxBytes, maxSpan: maxSpan, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push adds a frame. It reports whether the frame started a dropped GOP
// (for the caller's log).
func (q *queue) push(it item) (droppedGOP bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	if !q.live || !q.started {
		switch {
		case it.key:
			q.discard(&q.offline)
		case q.len() == 0:
			q.offline++
			return false
		case !q.fits(it):
			q.discard(&q.offline)
			q.offline++
			return false
		}
		q.append(it)
		return false
	}
	if q.dropping {
		if !it.key || !q.fits(it) {
			if it.key {
				q.droppedGOPs++
			}
			q.droppedFrames++
			return false
		}
		q.dropping = false
		it.gap = true
	} else if !q.fits(it) {
		q.dropping = true
		q.droppedGOPs++
		q.droppedFrames++
		return true
	}
	q.append(it)
	return false
}

// fits reports whether it can be appended within the bounds.
func (q *queue) fits(it item) bool {
	if q.len() == 0 {
		return true
	}
	if q.bytes+len(it.f.Payload) > q.maxBytes {
		return false
	}
	return it.f.DecodeTime()-q.items[q.head].f.DecodeTime() <= q.maxSpan
}

func (q *queue) len() int { return len(q.items) - q.head }

func (q *queue) append(it item) {
	if q.head > 0 && q.head >= len(q.items)/2 {
		// Move what is left to the front, so that a queue that never
		// empties reuses its array instead of growing it.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, it)
	q.bytes += len(it.f.Payload)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// discard empties the queue, adding what it held to *count.
func (q *queue) discard(count *uint64) {
	*count += uint64(q.len())
	clear(q.items)
	q.items, q.head, q.bytes = q.items[:0], 0, 0
}

// setLive says whether a connection takes frames. Going offline empties
// the queue (its frames need a connection that has the ones before), so
// that it next holds a GOP from its keyframe.
func (q *queue) setLive(live bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.live == live {
		return
	}
	q.live, q.started, q.dropping = live, false, false
	if !live {
		q.discard(&q.offline)
	}
}

// close ends the queue: pop returns what is left, then errQueueClosed.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		close(q.done)
	}
	q.closed = true
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop takes the oldest frame, waiting for one.
func (q *queue) pop(ctx context.Context) (item, error) {
	for {
		q.mu.Lock()
		if q.len() > 0 {
			it := q.items[q.head]
			q.items[q.head] = item{}
			q.head++
			q.bytes -= len(it.f.Payload)
			q.started = q.live
			q.mu.Unlock()
			return it, nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return item{}, errQueueClosed
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return item{}, ctx.Err()
		}
	}
}

// counters returns the frames and GOPs dropped for a slow server and the
// frames discarded while offline.
func (q *queue) counters() (frames, gops, offline uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.droppedFrames, q.droppedGOPs, q.offline
}

// isClosed reports whether close was called.
func (q *queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

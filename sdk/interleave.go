package sdk

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// FrameReader is what an Interleaver reads: a *TrackReader, or anything
// that returns the frames of one track the same way.
type FrameReader interface {
	ReadFrame(ctx context.Context) (Frame, error)
}

var _ FrameReader = (*TrackReader)(nil)

// InterleaverConfig configures an Interleaver.
type InterleaverConfig struct {
	// StartWait bounds how long the Interleaver holds the first frames
	// back waiting for the first frame of every track. Once every track
	// has one, or StartWait has passed and some track has one, it fixes
	// the origin (the smallest first presentation time; see Origin) and
	// hands out the frames it held. 0 starts at the first frame.
	StartWait time.Duration

	// MaxWait bounds how long a frame is held so that the frames of all
	// tracks come out in decode-time order (DTS, or PTS without one): the
	// earliest frame held goes out once every track that has not ended
	// has a frame held, or once the oldest frame held has waited MaxWait
	// since it arrived (a lagging or stalled track is not waited for any
	// longer; its frames come out, late, as they arrive). This applies to
	// the frames held for the start too. The end of a track goes out once
	// its frames did.
	//
	// 0 hands frames out as they arrive, with no ordering across tracks:
	// the frames held at the start come out track by track, then every
	// frame as soon as it arrives. A muxer that groups tracks itself (the
	// fMP4 recorder) uses that.
	MaxWait time.Duration

	// OnFrame, if set, is called by Next for every frame as it is taken
	// from its track's reader, before it is held for the start or for
	// ordering (say, to count what a sink received).
	OnFrame func(track int)

	// Batch, when positive, reads the tracks from the goroutine that
	// calls Next, in batches: Next takes every frame the tracks have
	// ready, and when none has one, waits Batch before looking again
	// (after a second with nothing, it waits on the first track still
	// live instead, for up to a second at a time). A sink that writes in
	// large pieces anyway, such as a recorder writing a fragment per
	// group of pictures, is then woken a few times a second rather than
	// once or twice per frame, the largest cost of a recording next to
	// the relay; frames reach it up to Batch later. 0 reads each track
	// on its own goroutine and hands every frame out as it arrives.
	//
	// Batch needs readers that return a frame they have ready even when
	// the context passed is done, as TrackReader does.
	Batch time.Duration
}

// idleAfter is how long a batching Interleaver finds nothing before it
// blocks on a track instead of waking every Batch.
const idleAfter = time.Second

// Interleaved is a frame of one track, or the end of the track, from an
// Interleaver.
type Interleaved struct {
	// Track is the index of the track's reader.
	Track int
	Frame Frame
	// Err, when set, says the track ended, with the error its reader
	// returned: io.EOF or moq.ErrClosed for a normal end, another error
	// for a lost track. Frame is zero then.
	Err error
}

// Interleaver reads several tracks at once (a goroutine per track, owned
// by the Interleaver) and hands out their frames one at a time, for a
// sink that muxes them into one stream. See InterleaverConfig for the
// order and how long a lagging track is waited for. Next must be called
// from one goroutine at a time; Close may be called from any.
type Interleaver struct {
	cfg    InterleaverConfig
	events chan Interleaved
	cancel context.CancelFunc
	wg     sync.WaitGroup

	n       int
	live    int // tracks whose end has not been received
	started bool
	origin  time.Duration
	waited  bool        // StartWait passed: the next frame starts
	timer   *time.Timer // StartWait, then MaxWait
	early   [][]held    // frames held until the start, per track
	have    int         // tracks with an early frame

	err   error         // ctx.Err() once ctx ended
	out   []Interleaved // ready to hand out, in order, from outAt
	outAt int
	queue [][]held // MaxWait > 0: frames held per track after the start
	ended []bool   // the track's end was received

	// Batch > 0: the readers, read by Next.
	readers []FrameReader
	life    context.Context // NewInterleaver's: no reading once it ended
	read    []bool          // the reader returned its end
	ready   context.Context // done: a read takes only what is ready
	idle    time.Time       // when the last batch found nothing, zero after a frame
	// timerDue: the timer fired; it is handled once what is ready is taken.
	timerDue bool
	sleep    *time.Timer
}

// held is a frame (or a track's end) held for ordering, with when it
// arrived.
type held struct {
	it Interleaved
	at time.Time
}

// NewInterleaver starts reading readers; it reads until ctx ends, every
// track ended, or Close. The caller closes the readers, after Close.
func NewInterleaver(ctx context.Context, cfg InterleaverConfig, readers ...FrameReader) *Interleaver {
	ctx, cancel := context.WithCancel(ctx)
	il := &Interleaver{
		cfg:    cfg,
		events: make(chan Interleaved, 64),
		cancel: cancel,
		n:      len(readers),
		live:   len(readers),
		early:  make([][]held, len(readers)),
		queue:  make([][]held, len(readers)),
		ended:  make([]bool, len(readers)),
	}
	if cfg.StartWait > 0 {
		il.timer = time.NewTimer(cfg.StartWait)
	} else {
		il.waited = true
	}
	if cfg.Batch > 0 {
		il.readers = readers
		il.life = ctx
		il.read = make([]bool, len(readers))
		ready, done := context.WithCancel(context.Background())
		done()
		il.ready = ready
		return il
	}
	for i, r := range readers {
		il.wg.Go(func() {
			for {
				f, err := r.ReadFrame(ctx)
				select {
				case il.events <- Interleaved{Track: i, Frame: f, Err: err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		})
	}
	return il
}

// Close stops reading and waits for the reading goroutines.
func (il *Interleaver) Close() {
	il.cancel()
	il.wg.Wait()
	if il.sleep != nil {
		il.sleep.Stop()
	}
}

// Origin returns the smallest first presentation time over the tracks,
// fixed at the start (see InterleaverConfig.StartWait); ok is false
// before. Next returns the frames held for the start after the origin is
// fixed, so a caller checks Origin before using a frame.
func (il *Interleaver) Origin() (origin time.Duration, ok bool) {
	return il.origin, il.started
}

// Next returns the next frame, or the end of a track. It returns io.EOF
// once every track ended and everything was handed out, and ctx.Err()
// when ctx ends: what was held for the start is handed out first (the
// start happens then, with the tracks that have a frame), anything else
// held is dropped. A track that ends while ctx is done is not reported.
func (il *Interleaver) Next(ctx context.Context) (Interleaved, error) {
	for {
		if il.outAt < len(il.out) {
			it := il.out[il.outAt]
			il.out[il.outAt] = Interleaved{}
			if il.outAt++; il.outAt == len(il.out) {
				il.out, il.outAt = il.out[:0], 0
			}
			return it, nil
		}
		if il.err != nil {
			return Interleaved{}, il.err
		}
		if il.started && il.cfg.MaxWait > 0 && il.release(time.Now(), il.live == 0) {
			continue
		}
		if il.live == 0 {
			if !il.started && il.start() {
				continue
			}
			return Interleaved{}, io.EOF
		}
		var tc <-chan time.Time
		if il.timer != nil {
			tc = il.timer.C
		}
		if il.readers != nil {
			if ev, ok := il.batch(ctx, tc); ok {
				return ev, nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			il.stop(ctx)
		case <-tc:
			il.timerFired()
		case ev := <-il.events:
			if il.add(ctx, ev) {
				return ev, nil
			}
		}
	}
}

// batch takes what the readers have ready (Batch > 0); it returns an
// event that goes out at once, or ok false once it took what there was,
// after waiting when there was nothing.
func (il *Interleaver) batch(ctx context.Context, tc <-chan time.Time) (ev Interleaved, ok bool) {
	if il.life.Err() != nil { // closed: nothing more is read
		select {
		case <-ctx.Done():
			il.stop(ctx)
		case <-tc:
			il.timerFired()
		}
		return Interleaved{}, false
	}
	took := false
	for i, r := range il.readers {
		if il.read[i] {
			continue
		}
		f, err := r.ReadFrame(il.ready)
		if err != nil && il.ready.Err() != nil && errors.Is(err, il.ready.Err()) {
			continue // nothing ready
		}
		took = true
		if ev, ok := il.take(ctx, i, f, err); ok {
			return ev, true
		}
	}
	if took {
		il.idle = time.Time{}
		return Interleaved{}, false
	}
	if il.timerDue {
		// The timer fired while frames may have waited unread: they are
		// taken now, so the start happens with every track that had one.
		il.timerDue = false
		il.timerFired()
		return Interleaved{}, false
	}
	now := time.Now()
	if il.idle.IsZero() {
		il.idle = now
	}
	if now.Sub(il.idle) >= idleAfter {
		// Nothing for a while: wait on a track rather than waking
		// every Batch; the others are looked at again after a second.
		for i, r := range il.readers {
			if il.read[i] {
				continue
			}
			wait, cancel := context.WithTimeout(ctx, idleAfter)
			closed := context.AfterFunc(il.life, cancel)
			f, err := r.ReadFrame(wait)
			closed()
			cancel()
			switch {
			case ctx.Err() != nil:
				il.stop(ctx)
			case err != nil && wait.Err() != nil && errors.Is(err, wait.Err()):
				// Nothing within the second, or closed.
			default:
				il.idle = time.Time{}
				if ev, ok := il.take(ctx, i, f, err); ok {
					return ev, true
				}
			}
			return Interleaved{}, false
		}
	}
	if il.sleep == nil {
		il.sleep = time.NewTimer(il.cfg.Batch)
	} else {
		il.sleep.Reset(il.cfg.Batch)
	}
	select {
	case <-il.life.Done():
	case <-ctx.Done():
		il.stop(ctx)
	case <-tc:
		il.timer, il.timerDue = nil, true
	case <-il.sleep.C:
	}
	return Interleaved{}, false
}

// take handles what reader i returned (Batch > 0), like an event of its
// goroutine.
func (il *Interleaver) take(ctx context.Context, i int, f Frame, err error) (Interleaved, bool) {
	if err != nil {
		il.read[i] = true
	}
	ev := Interleaved{Track: i, Frame: f, Err: err}
	return ev, il.add(ctx, ev)
}

// timerFired handles the timer: StartWait passed (the start happens with
// the tracks that have a frame), or MaxWait for the oldest frame held.
func (il *Interleaver) timerFired() {
	il.timer = nil
	if !il.started {
		il.waited = true
		il.start()
	}
}

// stop records that ctx ended: what was held for the start goes out first.
func (il *Interleaver) stop(ctx context.Context) {
	il.err = ctx.Err()
	if !il.started {
		il.start()
	}
}

// add takes one event from a reader; it reports true if the event goes
// out right away, without being held.
func (il *Interleaver) add(ctx context.Context, ev Interleaved) bool {
	if ev.Err != nil {
		if ctx.Err() != nil {
			return false
		}
		il.live--
		il.ended[ev.Track] = true
		if il.started && il.cfg.MaxWait > 0 {
			il.queue[ev.Track] = append(il.queue[ev.Track], held{it: ev, at: time.Now()})
			return false
		}
		return true
	}
	if il.cfg.OnFrame != nil {
		il.cfg.OnFrame(ev.Track)
	}
	if !il.started {
		if len(il.early[ev.Track]) == 0 {
			il.have++
		}
		il.early[ev.Track] = append(il.early[ev.Track], held{it: ev, at: time.Now()})
		if il.have == il.n || il.waited {
			il.start()
		}
		return false
	}
	if il.cfg.MaxWait <= 0 {
		return true
	}
	il.queue[ev.Track] = append(il.queue[ev.Track], held{it: ev, at: time.Now()})
	return false
}

// start fixes the origin and queues the frames held for it; it reports
// false, and does nothing, while no track has a frame.
func (il *Interleaver) start() bool {
	first, any := time.Duration(0), false
	for _, fs := range il.early {
		if len(fs) > 0 && (!any || fs[0].it.Frame.PTS < first) {
			first, any = fs[0].it.Frame.PTS, true
		}
	}
	if !any {
		return false
	}
	il.origin, il.started = first, true
	if il.timer != nil {
		il.timer.Stop()
		il.timer = nil
	}
	for i, fs := range il.early {
		if il.cfg.MaxWait <= 0 {
			for _, h := range fs {
				il.out = append(il.out, h.it)
			}
		} else {
			// Ordered with what comes next, as if held since arrival.
			il.queue[i] = fs
		}
	}
	il.early = nil
	return true
}

// release moves the earliest held frame to out if it may go (see
// InterleaverConfig.MaxWait; all lets it go regardless), and arms the
// timer for when the oldest may go otherwise.
func (il *Interleaver) release(now time.Time, all bool) bool {
	best, complete := -1, true
	var oldest time.Time
	for i, q := range il.queue {
		if len(q) == 0 {
			if !il.ended[i] {
				complete = false
			}
			continue
		}
		h := q[0]
		if h.it.Err != nil { // a track's end goes out when it is reached
			best = i
			break
		}
		if best < 0 || decodeTime(h.it.Frame) < decodeTime(il.queue[best][0].it.Frame) {
			best = i
		}
		if oldest.IsZero() || h.at.Before(oldest) {
			oldest = h.at
		}
	}
	if best < 0 {
		return false
	}
	if !all && !complete && il.queue[best][0].it.Err == nil {
		if wait := oldest.Add(il.cfg.MaxWait).Sub(now); wait > 0 {
			if il.timer == nil {
				il.timer = time.NewTimer(wait)
			} else {
				il.timer.Reset(wait)
			}
			return false
		}
	}
	q := il.queue[best]
	il.out = append(il.out, q[0].it)
	q[0] = held{}
	il.queue[best] = q[1:]
	return true
}

// decodeTime is the frame's decode time: DTS if it has one, else PTS.
func decodeTime(f Frame) time.Duration {
	if f.HasDTS {
		return f.DTS
	}
	return f.PTS
}

package moq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// newTestGroup returns a group outside any track, as the group tests need
// only the group itself.
func newTestGroup(seq uint64) *GroupWriter {
	w := &GroupWriter{}
	w.g.seq = seq
	return w
}

// testFrame returns a distinct payload for frame i.
func testFrame(i int) []byte {
	return fmt.Appendf(nil, "frame-%04d-%s", i, bytes.Repeat([]byte{byte(i)}, i%37))
}

// readAll reads a group to its end and returns the frames and the final
// error.
func readAll(ctx context.Context, r *GroupReader) ([][]byte, error) {
	var frames [][]byte
	for {
		f, err := r.NextFrame(ctx)
		if err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
}

func TestGroupFanoutOrder(t *testing.T) {
	const readers, frames = 100, 300
	w := newTestGroup(7)
	pool := &chanPool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		r := newGroupReader(&w.g, pool)
		wg.Go(func() {
			defer r.Close()
			got, err := readAll(ctx, r)
			if !errors.Is(err, io.EOF) {
				errs <- fmt.Errorf("end: %v, want io.EOF", err)
				return
			}
			if len(got) != frames {
				errs <- fmt.Errorf("read %d frames, want %d", len(got), frames)
				return
			}
			for i, f := range got {
				if !bytes.Equal(f, testFrame(i)) {
					errs <- fmt.Errorf("frame %d = %q, want %q", i, f, testFrame(i))
					return
				}
			}
		})
	}
	for i := range frames {
		if err := w.WriteFrame(testFrame(i)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let readers catch up and wait
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(w.g.waiters); n != 0 {
		t.Errorf("%d waiters left registered", n)
	}
}

func TestGroupFramesShared(t *testing.T) {
	w := newTestGroup(0)
	p := []byte("payload")
	if err := w.WriteFrame(p); err != nil {
		t.Fatal(err)
	}
	r := newGroupReader(&w.g, nil)
	f, err := r.NextFrame(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if &f[0] != &p[0] {
		t.Error("frame was copied; it must be shared with readers")
	}
}

func TestGroupLateReader(t *testing.T) {
	w := newTestGroup(3)
	ctx := context.Background()
	for i := range 5 {
		if err := w.WriteFrame(testFrame(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A reader started while the group is in progress starts at frame 0.
	mid := newGroupReader(&w.g, nil)
	for i := 5; i < 10; i++ {
		if err := w.WriteFrame(testFrame(i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.Close()
	// A reader started after the group completed also starts at frame 0.
	late := newGroupReader(&w.g, nil)
	for name, r := range map[string]*GroupReader{"mid": mid, "late": late} {
		if r.Sequence() != 3 {
			t.Errorf("%s: Sequence = %d, want 3", name, r.Sequence())
		}
		got, err := readAll(ctx, r)
		if !errors.Is(err, io.EOF) {
			t.Errorf("%s: end = %v, want io.EOF", name, err)
		}
		if len(got) != 10 {
			t.Fatalf("%s: %d frames, want 10", name, len(got))
		}
		for i, f := range got {
			if !bytes.Equal(f, testFrame(i)) {
				t.Errorf("%s: frame %d = %q", name, i, f)
			}
		}
		// The end is sticky.
		if _, err := r.NextFrame(ctx); !errors.Is(err, io.EOF) {
			t.Errorf("%s: after end: %v, want io.EOF", name, err)
		}
	}
}

func TestGroupAbort(t *testing.T) {
	ctx := context.Background()
	errBoom := errors.New("boom")
	w := newTestGroup(1)
	r := newGroupReader(&w.g, nil)
	got := make(chan error, 1)
	var frames [][]byte
	go func() {
		var err error
		frames, err = readAll(ctx, r)
		got <- err
	}()
	for i := range 3 {
		if err := w.WriteFrame(testFrame(i)); err != nil {
			t.Fatal(err)
		}
	}
	w.Abort(errBoom)
	if err := <-got; !errors.Is(err, errBoom) {
		t.Fatalf("reader ended with %v, want %v", err, errBoom)
	}
	if len(frames) != 3 {
		t.Fatalf("reader got %d frames before the abort, want 3", len(frames))
	}
	// A reader that arrives after the abort still gets the frames first.
	late := newGroupReader(&w.g, nil)
	frames, err := readAll(ctx, late)
	if len(frames) != 3 || !errors.Is(err, errBoom) {
		t.Errorf("late reader: %d frames, %v; want 3, %v", len(frames), err, errBoom)
	}
	if err := w.WriteFrame([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteFrame after Abort = %v, want ErrClosed", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("Close after Abort = %v, want ErrClosed", err)
	}

	// Abort(nil) still reports an incomplete group.
	w2 := newTestGroup(2)
	w2.Abort(nil)
	if _, err := newGroupReader(&w2.g, nil).NextFrame(ctx); !errors.Is(err, ErrGroupDropped) {
		t.Errorf("Abort(nil): %v, want ErrGroupDropped", err)
	}
}

func TestGroupCloseTwice(t *testing.T) {
	w := newTestGroup(0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if err := w.WriteFrame(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteFrame after Close = %v, want ErrClosed", err)
	}
	w.Abort(errors.New("late")) // no effect on a complete group
	if _, err := newGroupReader(&w.g, nil).NextFrame(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("after Close+Abort: %v, want io.EOF", err)
	}
}

func TestGroupNextFrameCancel(t *testing.T) {
	w := newTestGroup(0)
	pool := &chanPool{}
	r := newGroupReader(&w.g, pool)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := r.NextFrame(ctx)
		got <- err
	}()
	waitFor(t, func() bool {
		w.g.mu.Lock()
		defer w.g.mu.Unlock()
		return len(w.g.waiters) == 1
	})
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("NextFrame = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not unblock NextFrame")
	}
	if n := len(w.g.waiters); n != 0 {
		t.Errorf("%d waiters registered after cancel, want 0", n)
	}
	// The reader still works afterwards.
	_ = w.WriteFrame([]byte("a"))
	f, err := r.NextFrame(context.Background())
	if err != nil || string(f) != "a" {
		t.Errorf("after cancel: %q, %v", f, err)
	}
	r.Close()
	if len(pool.free) != 1 {
		t.Errorf("pool holds %d channels after Close, want 1", len(pool.free))
	}
}

func TestGroupReaderCloseUnblocks(t *testing.T) {
	w := newTestGroup(0)
	pool := &chanPool{}
	r := newGroupReader(&w.g, pool)
	got := make(chan error, 1)
	go func() {
		_, err := r.NextFrame(context.Background())
		got <- err
	}()
	waitFor(t, func() bool {
		w.g.mu.Lock()
		defer w.g.mu.Unlock()
		return len(w.g.waiters) == 1
	})
	r.Close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("NextFrame = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock NextFrame")
	}
	w.g.mu.Lock()
	n := len(w.g.waiters)
	w.g.mu.Unlock()
	if n != 0 {
		t.Errorf("%d waiters registered after Close", n)
	}
	// The channel went back to the pool exactly once, drained.
	if len(pool.free) != 1 || len(pool.free[0]) != 0 {
		t.Errorf("pool: %d channels (first has %d tokens), want 1 drained", len(pool.free), len(pool.free[0]))
	}
	r.Close() // idempotent
	if len(pool.free) != 1 {
		t.Errorf("second Close returned the channel again")
	}
}

// TestGroupReaderConcurrentPool reads many groups through readers sharing
// one pool concurrently, checking that recycled wake-up channels never
// cross-wire readers (a lost wake-up would hang the test).
func TestGroupReaderConcurrentPool(t *testing.T) {
	pool := &chanPool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const groups, frames = 50, 20
	var wg sync.WaitGroup
	for gi := range groups {
		w := newTestGroup(uint64(gi))
		for range 3 {
			r := newGroupReader(&w.g, pool)
			wg.Go(func() {
				defer r.Close()
				got, err := readAll(ctx, r)
				if !errors.Is(err, io.EOF) || len(got) != frames {
					t.Errorf("group %d: %d frames, %v", gi, len(got), err)
				}
			})
		}
		wg.Go(func() {
			for i := range frames {
				_ = w.WriteFrame(testFrame(i))
				if i%5 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			_ = w.Close()
		})
	}
	wg.Wait()
}

func TestFrameAllocator(t *testing.T) {
	var a FrameAllocator // zero value usable
	sizes := []int{0, 1, 100, 1000, 16<<10 - 1, 16 << 10, 100 << 10, 5, 40 << 10, 30 << 10, 7}
	var bufs [][]byte
	for _, n := range sizes {
		p := a.Alloc(n)
		if len(p) != n || cap(p) != n {
			t.Fatalf("Alloc(%d): len %d cap %d", n, len(p), cap(p))
		}
		for i := range p {
			if p[i] != 0 {
				t.Fatalf("Alloc(%d) not zeroed", n)
			}
		}
		bufs = append(bufs, p)
	}
	// Fill each buffer with its own byte; no write may reach a neighbour.
	for i, p := range bufs {
		for j := range p {
			p[j] = byte(i + 1)
		}
	}
	for i, p := range bufs {
		for j := range p {
			if p[j] != byte(i+1) {
				t.Fatalf("buffer %d byte %d overwritten", i, j)
			}
		}
	}
	// Appending to a carved buffer must reallocate, not clobber the next.
	x := a.Alloc(4)
	y := a.Alloc(4)
	copy(y, "yyyy")
	_ = append(x, 'z')
	if string(y) != "yyyy" {
		t.Errorf("append to a neighbour clobbered it: %q", y)
	}
	// Small frames share a slab; a frame that does not fit starts a new
	// one; large frames never come from the slab.
	var b FrameAllocator
	p1 := b.Alloc(10)
	p2 := b.Alloc(10)
	if uintptr(unsafe.Pointer(&p2[0]))-uintptr(unsafe.Pointer(&p1[0])) != 10 {
		t.Error("consecutive small frames are not adjacent in one slab")
	}
	_ = b.Alloc(20 << 10)
	if len(b.slab) != slabSize-20 {
		t.Errorf("large frame consumed slab space: %d left", len(b.slab))
	}
	for range 4 {
		_ = b.Alloc(15 << 10) // 60 KiB + 20 B: the fifth does not fit
	}
	if len(b.slab) != slabSize-20-60<<10 {
		t.Fatalf("slab left %d", len(b.slab))
	}
	p3 := b.Alloc(15 << 10)
	if len(b.slab) != slabSize-15<<10 {
		t.Errorf("did not start a new slab: %d left", len(b.slab))
	}
	_ = p3
	if n := testing.AllocsPerRun(100, func() { _ = b.Alloc(64) }); n > 0.05 {
		t.Errorf("small Alloc allocates %.2f times per call, want about 1/1024", n)
	}
}

// waitFor polls cond in tests only, where it stands in for "the other
// goroutine reached its wait".
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

package moq

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTestTrack returns a broadcast (closed at the end of the test) and one
// track of it.
func newTestTrack(t *testing.T, cfg CacheConfig) (*BroadcastWriter, *TrackWriter) {
	t.Helper()
	bw := NewBroadcastWithCache(cfg)
	t.Cleanup(func() { _ = bw.Close() })
	tw, err := bw.CreateTrack("video", 2)
	if err != nil {
		t.Fatal(err)
	}
	return bw, tw
}

func subscribe(t *testing.T, bw *BroadcastWriter, name string, priority uint8) *TrackReader {
	t.Helper()
	tr, err := bw.Reader().Subscribe(name, priority)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", name, err)
	}
	t.Cleanup(tr.Close)
	return tr
}

func nextGroup(t *testing.T, tr *TrackReader) *GroupReader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatalf("NextGroup: %v", err)
	}
	t.Cleanup(g.Close)
	return g
}

func nextFrame(t *testing.T, g *GroupReader) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := g.NextFrame(ctx)
	if err != nil {
		t.Fatalf("NextFrame of group %d: %v", g.Sequence(), err)
	}
	return f
}

// expectBlocked checks that NextGroup has nothing to return right now.
func expectBlocked(t *testing.T, tr *TrackReader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if g, err := tr.NextGroup(ctx); !errors.Is(err, context.DeadlineExceeded) {
		seq := int64(-1)
		if g != nil {
			seq = int64(g.Sequence())
		}
		t.Fatalf("NextGroup = group %d, %v; want it to block", seq, err)
	}
}

func writeGroup(t *testing.T, tw *TrackWriter, frames int) *GroupWriter {
	t.Helper()
	g, err := tw.AppendGroup()
	if err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		if err := g.WriteFrame(testFrame(i)); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func TestTrackLateJoin(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	for seq := range 5 {
		g := writeGroup(t, tw, 3)
		if g.Sequence() != uint64(seq) {
			t.Fatalf("AppendGroup sequence %d, want %d", g.Sequence(), seq)
		}
		_ = g.Close()
	}
	g5 := writeGroup(t, tw, 2)

	tr := subscribe(t, bw, "video", 9)
	if tr.Name() != "video" || tr.Priority() != 9 || tw.Priority() != 2 {
		t.Errorf("Name/Priority = %q/%d (writer %d)", tr.Name(), tr.Priority(), tw.Priority())
	}
	if seq, ok := tr.Latest(); !ok || seq != 5 {
		t.Errorf("Latest = %d, %v; want 5, true", seq, ok)
	}
	gr := nextGroup(t, tr)
	if gr.Sequence() != 5 {
		t.Fatalf("first group %d, want the latest (5)", gr.Sequence())
	}
	for i := range 2 {
		if f := nextFrame(t, gr); !bytes.Equal(f, testFrame(i)) {
			t.Fatalf("frame %d = %q", i, f)
		}
	}
	// Frames written from now on arrive as they are written.
	for i := 2; i < 5; i++ {
		got := make(chan []byte, 1)
		go func() {
			f, _ := gr.NextFrame(context.Background())
			got <- f
		}()
		if err := g5.WriteFrame(testFrame(i)); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-got:
			if !bytes.Equal(f, testFrame(i)) {
				t.Fatalf("live frame %d = %q", i, f)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("frame %d not delivered", i)
		}
	}
	_ = g5.Close()
	if _, err := gr.NextFrame(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("end of group 5: %v", err)
	}
	expectBlocked(t, tr)
	_ = writeGroup(t, tw, 1).Close()
	if g := nextGroup(t, tr); g.Sequence() != 6 {
		t.Fatalf("next group %d, want 6", g.Sequence())
	}
}

func TestTrackFirstGroupWait(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	tr := subscribe(t, bw, "video", 0)
	if _, ok := tr.Latest(); ok {
		t.Error("Latest ok before any group")
	}
	got := make(chan *GroupReader, 1)
	go func() {
		g, _ := tr.NextGroup(context.Background())
		got <- g
	}()
	time.Sleep(10 * time.Millisecond)
	_ = writeGroup(t, tw, 1)
	select {
	case g := <-got:
		if g == nil || g.Sequence() != 0 {
			t.Fatalf("got %v, want group 0", g)
		}
		if f := nextFrame(t, g); !bytes.Equal(f, testFrame(0)) {
			t.Errorf("frame %q", f)
		}
		g.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("first group not delivered")
	}
}

// TestTrackOutOfOrder covers a relay receiving groups 3, 5, 4: readers
// never go backwards, so group 4 reaches nobody who already has 5, while a
// reader still at 3 gets 4 before 5.
func TestTrackOutOfOrder(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	if _, err := tw.CreateGroup(3); err != nil {
		t.Fatal(err)
	}
	a := subscribe(t, bw, "video", 0)
	if g := nextGroup(t, a); g.Sequence() != 3 {
		t.Fatalf("a: first %d, want 3", g.Sequence())
	}
	if _, err := tw.CreateGroup(5); err != nil {
		t.Fatal(err)
	}
	b := subscribe(t, bw, "video", 0)
	if g := nextGroup(t, b); g.Sequence() != 5 {
		t.Fatalf("b: first %d, want 5", g.Sequence())
	}
	if _, err := tw.CreateGroup(4); err != nil {
		t.Fatal(err)
	}
	if seq, _ := a.Latest(); seq != 5 {
		t.Errorf("Latest = %d after 3,5,4; want 5", seq)
	}
	for _, want := range []uint64{4, 5} {
		if g := nextGroup(t, a); g.Sequence() != want {
			t.Fatalf("a: got %d, want %d", g.Sequence(), want)
		}
	}
	expectBlocked(t, a)
	expectBlocked(t, b) // 4 arrived later but is behind 5

	c := subscribe(t, bw, "video", 0)
	_ = nextGroup(t, c) // 5, the latest
	for _, seq := range []uint64{3, 4, 5} {
		if _, err := tw.CreateGroup(seq); !errors.Is(err, ErrDuplicate) {
			t.Errorf("CreateGroup(%d) again = %v, want ErrDuplicate", seq, err)
		}
	}
	g, err := tw.AppendGroup()
	if err != nil || g.Sequence() != 6 {
		t.Fatalf("AppendGroup = %v, %v; want sequence 6", g, err)
	}
	for name, r := range map[string]*TrackReader{"a": a, "b": b, "c": c} {
		if g := nextGroup(t, r); g.Sequence() != 6 {
			t.Errorf("%s: got %d, want 6", name, g.Sequence())
		}
	}
}

func TestTrackOutOfOrderDelivery(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	_, _ = tw.CreateGroup(3)
	r := subscribe(t, bw, "video", 0)
	_ = nextGroup(t, r) // 3
	_, _ = tw.CreateGroup(7)
	_, _ = tw.CreateGroup(5) // created after 7, still delivered first
	_, _ = tw.CreateGroup(8)
	var got []uint64
	for range 3 {
		got = append(got, nextGroup(t, r).Sequence())
	}
	_, _ = tw.CreateGroup(6) // below the highest returned: skipped
	_, _ = tw.CreateGroup(9)
	got = append(got, nextGroup(t, r).Sequence())
	if !slices.Equal(got, []uint64{5, 7, 8, 9}) {
		t.Errorf("delivered %v, want [5 7 8 9] (sequence order, never backwards)", got)
	}
}

// TestTrackSlowReader checks that readers that do not keep up neither block
// the writer nor grow the cache, while a fast reader gets everything.
func TestTrackSlowReader(t *testing.T) {
	const (
		groups    = 200
		frames    = 30
		frameSize = 10 << 10
		maxBytes  = 1 << 20
		groupSize = frames * frameSize
	)
	bw, tw := newTestTrack(t, CacheConfig{MaxBytes: maxBytes, MaxAge: time.Hour})
	track := &tw.t

	idle := subscribe(t, bw, "video", 0)    // never reads until the end
	stalled := subscribe(t, bw, "video", 0) // takes one group, then stops
	fast := subscribe(t, bw, "video", 0)

	// The fast reader reports each group it finished, so the writer can
	// pace itself on it; nothing waits for the slow readers.
	finished := make(chan uint64, groups)
	fastErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx := context.Background()
		for want := uint64(0); want < groups; want++ {
			g, err := fast.NextGroup(ctx)
			if err != nil {
				fastErr <- err
				return
			}
			if g.Sequence() != want {
				fastErr <- errors.New("fast reader skipped a group")
				return
			}
			for i := range frames {
				f, err := g.NextFrame(ctx)
				if err != nil {
					fastErr <- err
					return
				}
				if binary.BigEndian.Uint64(f) != want || binary.BigEndian.Uint64(f[8:]) != uint64(i) {
					fastErr <- errors.New("fast reader got a wrong frame")
					return
				}
			}
			if _, err := g.NextFrame(ctx); !errors.Is(err, io.EOF) {
				fastErr <- err
				return
			}
			g.Close()
			finished <- want
		}
		fastErr <- nil
	})

	var alloc FrameAllocator
	var maxSeen int64
	var held *GroupReader
	for seq := range uint64(groups) {
		g, err := tw.AppendGroup()
		if err != nil {
			t.Fatal(err)
		}
		for i := range frames {
			p := alloc.Alloc(frameSize)
			binary.BigEndian.PutUint64(p, seq)
			binary.BigEndian.PutUint64(p[8:], uint64(i))
			if err := g.WriteFrame(p); err != nil {
				t.Fatal(err)
			}
			maxSeen = max(maxSeen, track.cachedBytes())
		}
		_ = g.Close()
		if seq == 0 {
			held = nextGroup(t, stalled)
		}
		select {
		case <-finished:
		case err := <-fastErr:
			t.Fatalf("fast reader: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("fast reader stuck")
		}
	}
	wg.Wait()
	if err := <-fastErr; err != nil {
		t.Fatalf("fast reader: %v", err)
	}

	t.Logf("max cached bytes %d (budget %d, one group %d)", maxSeen, maxBytes, groupSize)
	if maxSeen > maxBytes+groupSize {
		t.Errorf("cache reached %d bytes, budget %d + one group %d", maxSeen, maxBytes, groupSize)
	}
	if maxSeen > maxBytes+frameSize {
		t.Errorf("cache exceeded its budget by more than one frame: %d", maxSeen)
	}

	// The idle reader subscribed before the first group, so every group is
	// its own, but it gets only what is still cached: it skips what was
	// evicted, as the stalled reader does (a recent group, not 1).
	oldest := uint64(groups - 1 - maxBytes/groupSize - 1)
	if g := nextGroup(t, idle); g.Sequence() < oldest {
		t.Errorf("idle reader starts at group %d, want ≥ %d", g.Sequence(), oldest)
	}
	g := nextGroup(t, stalled)
	if g.Sequence() < oldest {
		t.Errorf("stalled reader resumes at group %d, want ≥ %d", g.Sequence(), oldest)
	}
	// The group it held was evicted long ago but stays readable.
	n := 0
	for {
		f, err := held.NextFrame(context.Background())
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("held group: %v", err)
			}
			break
		}
		if binary.BigEndian.Uint64(f) != 0 {
			t.Fatal("held group returned foreign data")
		}
		n++
	}
	if n != frames {
		t.Errorf("held group gave %d frames, want %d", n, frames)
	}
}

// TestTrackLatestAlwaysKept checks that a group larger than the budget is
// kept while it is the latest.
func TestTrackLatestAlwaysKept(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{MaxBytes: 100})
	_ = writeGroup(t, tw, 1).Close()
	g := writeGroup(t, tw, 0)
	for range 10 {
		_ = g.WriteFrame(make([]byte, 50))
	}
	if n := tw.t.cachedBytes(); n != 500 {
		t.Errorf("cached %d bytes, want only the latest group (500)", n)
	}
	if got := len(tw.t.cache); got != 1 {
		t.Errorf("%d groups cached, want 1", got)
	}
	r := subscribe(t, bw, "video", 0)
	if gr := nextGroup(t, r); gr.Sequence() != 1 {
		t.Errorf("got group %d, want 1", gr.Sequence())
	}
}

func TestTrackMaxAge(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{MaxAge: 30 * time.Millisecond})
	_ = writeGroup(t, tw, 1).Close()
	r := subscribe(t, bw, "video", 0)
	_ = nextGroup(t, r) // 0
	_ = writeGroup(t, tw, 1).Close()
	_ = writeGroup(t, tw, 1).Close()
	time.Sleep(60 * time.Millisecond)
	// Group 1 aged out while nobody wrote; 2 is the latest and stays.
	if g := nextGroup(t, r); g.Sequence() != 2 {
		t.Errorf("got group %d, want 2 (1 is older than MaxAge)", g.Sequence())
	}
	if n := len(tw.t.cache); n != 1 {
		t.Errorf("%d groups cached, want 1", n)
	}
}

func TestTrackClose(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	_ = writeGroup(t, tw, 1).Close()
	r := subscribe(t, bw, "video", 0)
	fresh := subscribe(t, bw, "video", 0) // subscribed, never read yet
	_ = nextGroup(t, r)                   // 0
	_ = writeGroup(t, tw, 1).Close()
	open := writeGroup(t, tw, 1) // still being written when the track ends
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tw.Done():
	default:
		t.Error("Done not closed")
	}
	if _, err := tw.AppendGroup(); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendGroup after Close = %v", err)
	}
	if err := tw.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	// Remaining groups, then io.EOF.
	if g := nextGroup(t, r); g.Sequence() != 1 {
		t.Fatalf("got %d, want 1", g.Sequence())
	}
	g2 := nextGroup(t, r)
	if g2.Sequence() != 2 {
		t.Fatalf("got %d, want 2", g2.Sequence())
	}
	if _, err := r.NextGroup(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("after the cache: %v, want io.EOF", err)
	}
	// A reader that subscribed when 0 was the latest group and never read
	// since still gets every group from there on.
	for want := uint64(0); want <= 2; want++ {
		if g := nextGroup(t, fresh); g.Sequence() != want {
			t.Errorf("fresh reader: %d, want %d (the latest when it subscribed, then every later group)", g.Sequence(), want)
		}
	}
	if _, err := fresh.NextGroup(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("fresh reader after latest: %v", err)
	}
	// The open group is left to its writer.
	_ = nextFrame(t, g2)
	_ = open.WriteFrame([]byte("tail"))
	_ = open.Close()
	if f := nextFrame(t, g2); string(f) != "tail" {
		t.Errorf("tail frame %q", f)
	}
	// The closed track left the broadcast.
	if names := bw.Reader().Tracks(); len(names) != 0 {
		t.Errorf("Tracks after close = %v", names)
	}
	if _, err := bw.Reader().Subscribe("video", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Subscribe to closed track = %v, want ErrNotFound", err)
	}
	if _, err := bw.CreateTrack("video", 0); err != nil {
		t.Errorf("CreateTrack after the old one closed: %v", err)
	}
}

func TestTrackCloseWithError(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	errUp := errors.New("upstream reset")
	_ = writeGroup(t, tw, 1).Close()
	r := subscribe(t, bw, "video", 0)
	g0 := nextGroup(t, r)
	open := writeGroup(t, tw, 1)
	tw.CloseWithError(errUp)
	if _, err := r.NextGroup(context.Background()); !errors.Is(err, errUp) {
		t.Errorf("NextGroup = %v, want %v without the remaining group", err, errUp)
	}
	_ = nextFrame(t, g0)
	if _, err := g0.NextFrame(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("finished group: %v, want io.EOF", err)
	}
	if err := open.WriteFrame([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("unfinished group still writable: %v", err)
	}
	if err := tw.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("Close after CloseWithError = %v", err)
	}
}

func TestTrackReaderCancelAndClose(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	r := subscribe(t, bw, "video", 0)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 2)
	go func() {
		_, err := r.NextGroup(ctx)
		got <- err
	}()
	waitFor(t, func() bool {
		tw.t.mu.Lock()
		defer tw.t.mu.Unlock()
		return len(tw.t.waiters) == 1
	})
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled NextGroup = %v", err)
	}
	if n := len(tw.t.waiters); n != 0 {
		t.Errorf("%d waiters after cancel", n)
	}
	go func() {
		_, err := r.NextGroup(context.Background())
		got <- err
	}()
	waitFor(t, func() bool {
		tw.t.mu.Lock()
		defer tw.t.mu.Unlock()
		return len(tw.t.waiters) == 1
	})
	r.Close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("NextGroup after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock NextGroup")
	}
}

func TestTrackUnused(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	a := subscribe(t, bw, "video", 0)
	b := subscribe(t, bw, "video", 0)
	a.Close()
	a.Close() // idempotent: must not count twice
	select {
	case <-tw.Unused():
		t.Fatal("Unused closed with a reader left")
	default:
	}
	b.Close()
	select {
	case <-tw.Unused():
	case <-time.After(5 * time.Second):
		t.Fatal("Unused not closed after the last reader left")
	}
	// A track made with CreateTrack stays subscribable; Unused stays closed.
	c := subscribe(t, bw, "video", 0)
	_ = writeGroup(t, tw, 1).Close()
	if g := nextGroup(t, c); g.Sequence() != 0 {
		t.Errorf("got %d", g.Sequence())
	}
	select {
	case <-tw.Unused():
	default:
		t.Error("Unused re-armed")
	}
}

func TestBroadcastTracks(t *testing.T) {
	bw := NewBroadcast()
	defer func() { _ = bw.Close() }()
	br := bw.Reader()
	if bw.Reader() != br {
		t.Error("Reader returns different values")
	}
	for _, name := range []string{"video", "audio", "catalog.json"} {
		if _, err := bw.CreateTrack(name, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bw.CreateTrack("audio", 3); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate CreateTrack = %v, want ErrDuplicate", err)
	}
	if got := br.Tracks(); !slices.Equal(got, []string{"audio", "catalog.json", "video"}) {
		t.Errorf("Tracks = %v", got)
	}
	if _, err := br.Subscribe("nope", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Subscribe unknown = %v, want ErrNotFound", err)
	}
}

func TestBroadcastClose(t *testing.T) {
	bw := NewBroadcast()
	tw, _ := bw.CreateTrack("video", 0)
	_ = writeGroup(t, tw, 1).Close()
	r := subscribe(t, bw, "video", 0)
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bw.Reader().Done():
	default:
		t.Error("Done not closed")
	}
	select {
	case <-tw.Done():
	default:
		t.Error("track not closed")
	}
	if g := nextGroup(t, r); g.Sequence() != 0 {
		t.Errorf("cached group %d", g.Sequence())
	}
	if _, err := r.NextGroup(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("after cache: %v, want io.EOF", err)
	}
	if _, err := bw.Reader().Subscribe("video", 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if _, err := bw.CreateTrack("x", 0); !errors.Is(err, ErrClosed) {
		t.Errorf("CreateTrack after Close = %v, want ErrClosed", err)
	}
	if err := bw.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}

func TestBroadcastHandleRequests(t *testing.T) {
	bw := NewBroadcast()
	var calls atomic.Int32
	release := make(chan struct{}) // closing ends the current request
	requested := make(chan *TrackWriter, 4)
	bw.HandleRequests(func(tw *TrackWriter) {
		n := calls.Add(1)
		g, _ := tw.AppendGroup()
		_ = g.WriteFrame([]byte{byte(n)})
		_ = g.Close()
		requested <- tw
		select {
		case <-tw.Unused():
			_ = tw.Close()
		case <-tw.Done():
		case <-release:
			_ = tw.Close()
		}
	})
	br := bw.Reader()

	// Two subscribers of one unknown track share one request.
	a := subscribe(t, bw, "video", 7)
	b := subscribe(t, bw, "video", 3)
	tw := <-requested
	if tw.Name() != "video" || tw.Priority() != 7 {
		t.Errorf("requested track %q priority %d, want video 7", tw.Name(), tw.Priority())
	}
	for _, r := range []*TrackReader{a, b} {
		if f := nextFrame(t, nextGroup(t, r)); f[0] != 1 {
			t.Errorf("frame from request %d, want 1", f[0])
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d requests for two subscribers, want 1", n)
	}
	if got := br.Tracks(); !slices.Equal(got, []string{"video"}) {
		t.Errorf("Tracks = %v", got)
	}

	// The handler closes the track: readers end, the next subscriber
	// triggers a fresh request.
	close(release)
	for _, r := range []*TrackReader{a, b} {
		if _, err := r.NextGroup(context.Background()); !errors.Is(err, io.EOF) {
			t.Errorf("after the request ended: %v, want io.EOF", err)
		}
	}
	waitFor(t, func() bool { return len(br.Tracks()) == 0 })
	c := subscribe(t, bw, "video", 1)
	<-requested
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d requests after the first track closed, want 2", n)
	}
	if f := nextFrame(t, nextGroup(t, c)); f[0] != 2 {
		t.Errorf("frame from request %d, want 2", f[0])
	}

	// When the last reader leaves, the track leaves the table at once, so a
	// new subscriber never joins a track that is about to be cancelled.
	c.Close()
	if got := br.Tracks(); len(got) != 0 {
		t.Errorf("Tracks after the last reader left = %v", got)
	}
	d := subscribe(t, bw, "video", 1)
	<-requested
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}

	// Close ends the open request track and waits for its handler.
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	_ = nextGroup(t, d)
	if _, err := d.NextGroup(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("after broadcast Close: %v, want io.EOF", err)
	}
}

// TestBroadcastHandlerReturnsOpen checks that a handler returning without
// closing its track does not leave readers waiting forever.
func TestBroadcastHandlerReturnsOpen(t *testing.T) {
	bw := NewBroadcast()
	defer func() { _ = bw.Close() }()
	bw.HandleRequests(func(*TrackWriter) {})
	r := subscribe(t, bw, "video", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.NextGroup(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("NextGroup = %v, want io.EOF", err)
	}
}

// TestBroadcastConcurrentSubscribe races subscribers and unsubscribers on
// one requested track name: every subscriber must get data from a live
// request, never join one that is being cancelled. (Requests may overlap
// briefly: an unused one leaves the table before its handler returns.)
//
// The number of handlers running at once is not bounded (a handler whose
// request went unused may not have been scheduled yet), so what is checked
// is the table: when a handler starts, every other running handler's
// request must already be unused or closed, i.e. at most one request per
// name is in the table at a time; and every handler returns once the
// broadcast closes.
func TestBroadcastConcurrentSubscribe(t *testing.T) {
	bw := NewBroadcast()
	var live, maxLive, requests atomic.Int32
	var mu sync.Mutex
	running := map[*TrackWriter]bool{}
	gone := func(w *TrackWriter) bool {
		select {
		case <-w.Unused():
			return true
		case <-w.Done():
			return true
		default:
			return false
		}
	}
	bw.HandleRequests(func(tw *TrackWriter) {
		requests.Add(1)
		n := live.Add(1)
		for {
			m := maxLive.Load()
			if n <= m || maxLive.CompareAndSwap(m, n) {
				break
			}
		}
		mu.Lock()
		for other := range running {
			if !gone(other) {
				t.Errorf("request started while an earlier request for the same name is neither unused nor closed")
			}
		}
		running[tw] = true
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(running, tw)
			mu.Unlock()
		}()
		g, _ := tw.AppendGroup()
		_ = g.WriteFrame([]byte("x"))
		_ = g.Close()
		select {
		case <-tw.Unused():
		case <-tw.Done():
		}
		live.Add(-1)
		_ = tw.Close()
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				r, err := bw.Reader().Subscribe("video", 0)
				if err != nil {
					t.Error(err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				g, err := r.NextGroup(ctx)
				cancel()
				if err != nil {
					t.Errorf("NextGroup: %v", err)
				} else {
					g.Close()
				}
				r.Close()
			}
		})
	}
	wg.Wait()
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	if requests.Load() == 0 {
		t.Fatal("no request reached the handler")
	}
	for deadline := time.Now().Add(5 * time.Second); live.Load() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers still running 5 s after the broadcast closed", live.Load())
		}
	}
	t.Logf("%d requests, at most %d handlers running at once", requests.Load(), maxLive.Load())
}

// TestTrackBurstBeforeFirstRead: groups that arrive between a subscription
// and its first read belong to the reader, whichever way it reads; NextArrival
// also returns a group whose sequence is below one it already returned.
func TestTrackBurstBeforeFirstRead(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	inSeq := subscribe(t, bw, "video", 0)
	inArrival := subscribe(t, bw, "video", 0)
	for _, seq := range []uint64{0, 1, 3, 2, 4} {
		g, err := tw.CreateGroup(seq)
		if err != nil {
			t.Fatal(err)
		}
		_ = g.Close()
	}
	var bySeq, byArrival []uint64
	for range 5 {
		bySeq = append(bySeq, nextGroup(t, inSeq).Sequence())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		g, err := inArrival.NextArrival(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		byArrival = append(byArrival, g.Sequence())
	}
	if !slices.Equal(bySeq, []uint64{0, 1, 2, 3, 4}) {
		t.Errorf("NextGroup delivered %v, want [0 1 2 3 4]", bySeq)
	}
	if !slices.Equal(byArrival, []uint64{0, 1, 3, 2, 4}) {
		t.Errorf("NextArrival delivered %v, want the arrival order [0 1 3 2 4]", byArrival)
	}

	// A late joiner starts at the latest group (4) and still gets a lower
	// sequence that arrives after it joined.
	late := subscribe(t, bw, "video", 0)
	for _, seq := range []uint64{6, 5} {
		g, _ := tw.CreateGroup(seq)
		_ = g.Close()
	}
	var got []uint64
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		g, err := late.NextArrival(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, g.Sequence())
	}
	if !slices.Equal(got, []uint64{4, 6, 5}) {
		t.Errorf("late joiner got %v, want [4 6 5]", got)
	}
}

// TestTrackConsumerCache: a consumer's cache keeps the groups its readers
// may still take and lets go of the ones they passed, the latest always
// kept; a reader that is behind loses nothing.
func TestTrackConsumerCache(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{Consumer: true})
	fast := subscribe(t, bw, "video", 0)
	slow := subscribe(t, bw, "video", 0)
	for range 5 {
		_ = writeGroup(t, tw, 2).Close()
	}
	if n := len(tw.t.cache); n != 5 {
		t.Fatalf("%d groups cached, want all 5: no reader has taken any", n)
	}
	for want := range uint64(5) {
		if g := nextGroup(t, fast); g.Sequence() != want {
			t.Fatalf("fast reader got %d, want %d", g.Sequence(), want)
		}
	}
	if n := len(tw.t.cache); n != 5 {
		t.Fatalf("%d groups cached, want 5: the slow reader has taken none", n)
	}
	for want := range uint64(3) {
		if g := nextGroup(t, slow); g.Sequence() != want {
			t.Fatalf("slow reader got %d, want %d", g.Sequence(), want)
		}
	}
	if n := len(tw.t.cache); n != 2 {
		t.Errorf("%d groups cached, want 2 (3 and 4, which the slow reader has still to take)", n)
	}
	slow.Close()
	if n := len(tw.t.cache); n != 1 || tw.t.cache[0].seq != 4 {
		t.Errorf("%d groups cached after the slow reader left, want only the latest (4)", n)
	}
	// A reader subscribing now starts at the latest group.
	if g := nextGroup(t, subscribe(t, bw, "video", 0)); g.Sequence() != 4 {
		t.Errorf("a new reader got %d, want the latest (4)", g.Sequence())
	}
}

// TestTrackConsumerFrames: a consumer's group lets go of the frames all its
// readers have passed once no track reader may still start it; a reader
// subscribing after that starts with the next group, except on a group of
// one frame (a catalog), which stays whole.
func TestTrackConsumerFrames(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{Consumer: true})
	a := subscribe(t, bw, "video", 0)
	g0 := writeGroup(t, tw, 5)
	ga := nextGroup(t, a)
	b := subscribe(t, bw, "video", 0) // starts at group 0: nothing let go yet
	gb := nextGroup(t, b)
	for range 3 {
		_ = nextFrame(t, ga)
	}
	_ = nextFrame(t, gb)
	frames := func() (held int) {
		g0.g.mu.Lock()
		defer g0.g.mu.Unlock()
		for _, f := range g0.g.frames {
			if f != nil {
				held++
			}
		}
		return held
	}
	if n := frames(); n != 4 {
		t.Errorf("group 0 holds %d of 5 frames, want 4 (both readers passed frame 0)", n)
	}
	gb.Close() // the slower reader leaves the group
	if n := frames(); n != 2 {
		t.Errorf("group 0 holds %d of 5 frames after its slower reader left, want 2", n)
	}
	for i := 3; i < 5; i++ {
		if f := nextFrame(t, ga); !bytes.Equal(f, testFrame(i)) {
			t.Fatalf("frame %d = %q", i, f)
		}
	}
	if n := frames(); n != 1 {
		t.Errorf("group 0 holds %d frames once read, want only its last", n)
	}
	// A reader subscribing now does not start in the middle of group 0.
	c := subscribe(t, bw, "video", 0)
	expectBlocked(t, c)
	_ = g0.Close()
	_ = writeGroup(t, tw, 1).Close()
	if g := nextGroup(t, c); g.Sequence() != 1 {
		t.Errorf("a late reader got group %d, want 1", g.Sequence())
	}

	// A group of one frame is whole for a late reader.
	catBW, cat := newTestTrack(t, CacheConfig{Consumer: true})
	r := subscribe(t, catBW, "video", 0)
	_ = writeGroup(t, cat, 1).Close()
	gr := nextGroup(t, r)
	_ = nextFrame(t, gr)
	late := subscribe(t, catBW, "video", 0)
	if f := nextFrame(t, nextGroup(t, late)); !bytes.Equal(f, testFrame(0)) {
		t.Errorf("a late reader of a one-frame group got %q", f)
	}
}

package moq

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

func subscribeFrom(t *testing.T, bw *BroadcastWriter, name string, from StartPoint) *TrackReader {
	t.Helper()
	tr, err := bw.Reader().SubscribeFrom(name, 0, from)
	if err != nil {
		t.Fatalf("SubscribeFrom(%q, %v): %v", name, from, err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// sequences reads n groups with NextGroup (or NextArrival) and returns
// their sequences.
func sequences(t *testing.T, tr *TrackReader, n int, arrival bool) []uint64 {
	t.Helper()
	var got []uint64
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var g *GroupReader
		var err error
		if arrival {
			g, err = tr.NextArrival(ctx)
		} else {
			g, err = tr.NextGroup(ctx)
		}
		cancel()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, g.Sequence())
		g.Close()
	}
	return got
}

// TestSubscribeFromOldest: on a relay's cache, a FromOldest reader gets
// every cached group from the oldest, then the ones that arrive; a
// FromLatest reader (Subscribe) starts at the latest.
func TestSubscribeFromOldest(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	for range 4 {
		_ = writeGroup(t, tw, 2).Close()
	}
	open := writeGroup(t, tw, 1) // group 4, still being written
	oldest := subscribeFrom(t, bw, "video", FromOldest)
	latest := subscribeFrom(t, bw, "video", FromLatest)
	plain := subscribe(t, bw, "video", 0)
	arrival := subscribeFrom(t, bw, "video", FromOldest)

	if got := sequences(t, oldest, 5, false); !slices.Equal(got, []uint64{0, 1, 2, 3, 4}) {
		t.Errorf("FromOldest got %v, want [0 1 2 3 4]", got)
	}
	expectBlocked(t, oldest)
	if got := sequences(t, latest, 1, false); !slices.Equal(got, []uint64{4}) {
		t.Errorf("FromLatest got %v, want [4]", got)
	}
	if got := sequences(t, plain, 1, false); !slices.Equal(got, []uint64{4}) {
		t.Errorf("Subscribe got %v, want [4]", got)
	}
	_ = open.Close()
	_ = writeGroup(t, tw, 1).Close()
	for name, r := range map[string]*TrackReader{"FromOldest": oldest, "FromLatest": latest, "Subscribe": plain} {
		if got := sequences(t, r, 1, false); !slices.Equal(got, []uint64{5}) {
			t.Errorf("%s then got %v, want [5]", name, got)
		}
	}
	if got := sequences(t, arrival, 6, true); !slices.Equal(got, []uint64{0, 1, 2, 3, 4, 5}) {
		t.Errorf("FromOldest with NextArrival got %v, want [0 1 2 3 4 5]", got)
	}

	// The first group read is whole, from frame 0.
	first := subscribeFrom(t, bw, "video", FromOldest)
	g := nextGroup(t, first)
	if f := nextFrame(t, g); g.Sequence() != 0 || !bytes.Equal(f, testFrame(0)) {
		t.Errorf("a second FromOldest reader starts with group %d frame %q, want group 0 frame 0", g.Sequence(), f)
	}
}

// TestSubscribeFromOldestOutOfOrder: groups created out of order come in
// sequence order from the lowest cached (NextGroup), or as they arrived
// (NextArrival).
func TestSubscribeFromOldestOutOfOrder(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{})
	for _, seq := range []uint64{3, 1, 2} {
		g, err := tw.CreateGroup(seq)
		if err != nil {
			t.Fatal(err)
		}
		_ = g.WriteFrame(testFrame(int(seq)))
		_ = g.Close()
	}
	byseq := subscribeFrom(t, bw, "video", FromOldest)
	byarrival := subscribeFrom(t, bw, "video", FromOldest)
	if got := sequences(t, byseq, 3, false); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("NextGroup got %v, want [1 2 3]", got)
	}
	if got := sequences(t, byarrival, 3, true); !slices.Equal(got, []uint64{3, 1, 2}) {
		t.Errorf("NextArrival got %v, want [3 1 2]", got)
	}
	// A lower sequence arriving later is still not a step back.
	g, _ := tw.CreateGroup(0)
	_ = g.Close()
	expectBlocked(t, byseq)
	if got := sequences(t, byarrival, 1, true); !slices.Equal(got, []uint64{0}) {
		t.Errorf("NextArrival then got %v, want [0]", got)
	}
}

// TestSubscribeFromOldestEvicted: the oldest cached group is the oldest the
// cache's budget kept, never one it evicted.
func TestSubscribeFromOldestEvicted(t *testing.T) {
	frame := testFrame(0)
	// Room for three groups of one frame.
	bw, tw := newTestTrack(t, CacheConfig{MaxBytes: int64(3 * len(frame))})
	for range 6 {
		_ = writeGroup(t, tw, 1).Close()
	}
	r := subscribeFrom(t, bw, "video", FromOldest)
	if got := sequences(t, r, 3, false); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Errorf("FromOldest got %v, want the cached [3 4 5]", got)
	}

	// Age: a group older than MaxAge is gone for a new reader too.
	bw2, tw2 := newTestTrack(t, CacheConfig{MaxAge: 30 * time.Millisecond})
	_ = writeGroup(t, tw2, 1).Close()
	time.Sleep(50 * time.Millisecond)
	_ = writeGroup(t, tw2, 1).Close()
	if got := sequences(t, subscribeFrom(t, bw2, "video", FromOldest), 1, false); !slices.Equal(got, []uint64{1}) {
		t.Errorf("FromOldest after MaxAge got %v, want [1]", got)
	}
}

// TestSubscribeFromOldestBeforeFirstGroup: a reader that subscribes before
// the track has a group, from either start, gets every group, however many
// arrive before its first read.
func TestSubscribeFromOldestBeforeFirstGroup(t *testing.T) {
	for _, from := range []StartPoint{FromOldest, FromLatest} {
		for _, consumer := range []bool{false, true} {
			bw, tw := newTestTrack(t, CacheConfig{Consumer: consumer})
			r := subscribeFrom(t, bw, "video", from)
			for range 4 {
				_ = writeGroup(t, tw, 3).Close()
			}
			if got := sequences(t, r, 4, false); !slices.Equal(got, []uint64{0, 1, 2, 3}) {
				t.Errorf("%v (consumer %v) got %v, want [0 1 2 3]", from, consumer, got)
			}
		}
	}
}

// TestSubscribeFromOldestConsumer: a consumer's cache keeps what current
// readers may still take and the latest group, so a FromOldest reader
// starts at the oldest group another reader has yet to take, else at the
// latest; a latest group that let go of frames is skipped.
func TestSubscribeFromOldestConsumer(t *testing.T) {
	bw, tw := newTestTrack(t, CacheConfig{Consumer: true})
	slow := subscribe(t, bw, "video", 0)
	for range 5 {
		_ = writeGroup(t, tw, 2).Close()
	}
	if got := sequences(t, slow, 2, false); !slices.Equal(got, []uint64{0, 1}) {
		t.Fatalf("slow reader got %v", got)
	}
	// Groups 2, 3 and 4 wait for the slow reader.
	r := subscribeFrom(t, bw, "video", FromOldest)
	if got := sequences(t, r, 3, false); !slices.Equal(got, []uint64{2, 3, 4}) {
		t.Errorf("FromOldest got %v, want [2 3 4], what the slow reader has still to take", got)
	}
	// The new reader holds what it has not read, whatever the slow one does.
	late := subscribeFrom(t, bw, "video", FromOldest)
	_ = sequences(t, slow, 3, false)
	_ = writeGroup(t, tw, 2).Close()
	_ = writeGroup(t, tw, 2).Close()
	_ = sequences(t, slow, 2, false)
	_ = sequences(t, r, 2, false)
	if got := sequences(t, late, 5, false); !slices.Equal(got, []uint64{2, 3, 4, 5, 6}) {
		t.Errorf("a FromOldest reader that has not read got %v, want [2 3 4 5 6]", got)
	}
	slow.Close()
	r.Close()
	late.Close()

	// No reader: only the latest group is kept (a group of one frame,
	// which stays whole).
	_ = writeGroup(t, tw, 1).Close()
	_ = writeGroup(t, tw, 1).Close()
	if n := len(tw.t.cache); n != 1 {
		t.Errorf("%d groups cached without a reader, want 1", n)
	}
	if got := sequences(t, subscribeFrom(t, bw, "video", FromOldest), 1, false); !slices.Equal(got, []uint64{8}) {
		t.Errorf("FromOldest without other readers got %v, want the latest [8]", got)
	}

	// A latest group that let go of frames is skipped.
	bw2, tw2 := newTestTrack(t, CacheConfig{Consumer: true})
	a := subscribe(t, bw2, "video", 0)
	g0 := writeGroup(t, tw2, 4)
	ga := nextGroup(t, a)
	for range 3 {
		_ = nextFrame(t, ga)
	}
	b := subscribeFrom(t, bw2, "video", FromOldest)
	expectBlocked(t, b)
	_ = g0.Close()
	_ = writeGroup(t, tw2, 1).Close()
	if got := sequences(t, b, 1, false); !slices.Equal(got, []uint64{1}) {
		t.Errorf("FromOldest after the latest let go of frames got %v, want [1]", got)
	}
}

// TestSubscribeFromOldestRequested: a requested track holds only what
// arrived since its first subscriber asked; FromOldest reaches back to
// that, and a later FromOldest subscriber gets it too.
func TestSubscribeFromOldestRequested(t *testing.T) {
	bw := NewBroadcast()
	t.Cleanup(func() { _ = bw.Close() })
	wrote := make(chan struct{})
	bw.HandleRequests(func(tw *TrackWriter) {
		// What a session does: the first group it receives is the
		// publisher's latest when the SUBSCRIBE arrived.
		for seq := uint64(7); seq < 10; seq++ {
			g, _ := tw.CreateGroup(seq)
			_ = g.WriteFrame(testFrame(int(seq)))
			_ = g.Close()
		}
		close(wrote)
		select {
		case <-tw.Unused():
		case <-tw.Done():
		}
	})
	first := subscribeFrom(t, bw, "video", FromOldest)
	<-wrote
	second := subscribeFrom(t, bw, "video", FromOldest)
	third := subscribeFrom(t, bw, "video", FromLatest)
	for name, r := range map[string]*TrackReader{"first": first, "second": second} {
		if got := sequences(t, r, 3, false); !slices.Equal(got, []uint64{7, 8, 9}) {
			t.Errorf("%s FromOldest reader got %v, want [7 8 9]", name, got)
		}
	}
	if got := sequences(t, third, 1, false); !slices.Equal(got, []uint64{9}) {
		t.Errorf("FromLatest reader got %v, want [9]", got)
	}
}

func TestStartPointString(t *testing.T) {
	for p, want := range map[StartPoint]string{FromLatest: "latest", FromOldest: "oldest", 7: "StartPoint(7)"} {
		if got := p.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", p, got, want)
		}
	}
}

// TestFromOldestWaitsForLowerFirst: a reader from the oldest group of an
// empty track does not take the first group to arrive as its start at
// once: lower sequences arriving within ReorderWait (a peer's cached
// groups, sent beside its live one) come first.
func TestFromOldestWaitsForLowerFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bw := NewBroadcastWithCache(CacheConfig{ReorderWait: 200 * time.Millisecond})
	defer bw.Close()
	tw, err := bw.CreateTrack("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := bw.Reader().SubscribeFrom("t", 0, FromOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, seq := range []uint64{5, 3, 4} {
		g, err := tw.CreateGroup(seq)
		if err != nil {
			t.Fatal(err)
		}
		_ = g.Close()
		time.Sleep(20 * time.Millisecond)
	}
	var got []uint64
	for range 3 {
		g, err := tr.NextGroup(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, g.Sequence())
	}
	if fmt.Sprint(got) != "[3 4 5]" {
		t.Errorf("groups %v, want [3 4 5]", got)
	}
}

// TestGapUnderEviction: a reader waiting out a gap in the sequence gets
// the next group within ReorderWait even when the writer is fast enough
// for the cache budget to evict every group beyond the gap before that
// wait ends (each new candidate would otherwise start the wait again, and
// the reader never return).
func TestGapUnderEviction(t *testing.T) {
	const wait = 50 * time.Millisecond
	bw := NewBroadcastWithCache(CacheConfig{MaxBytes: 1500, ReorderWait: wait})
	tw, err := bw.CreateTrack("video", 0)
	if err != nil {
		t.Fatal(err)
	}
	write := func(seq uint64) {
		g, err := tw.CreateGroup(seq)
		if err != nil {
			t.Fatalf("group %d: %v", seq, err)
		}
		_ = g.WriteFrame(make([]byte, 1000)) // over half the budget: the older groups go
		_ = g.Close()
	}
	write(0)
	tr := subscribeFrom(t, bw, "video", FromLatest)
	if got := sequences(t, tr, 1, false); got[0] != 0 {
		t.Fatalf("first group %d, want 0", got[0])
	}
	// Group 1 never comes; 2, 3, … come every 5 ms, each evicting the
	// one before.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for seq := uint64(2); ; seq++ {
			write(seq)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	readCtx, readCancel := context.WithTimeout(ctx, 2*time.Second)
	defer readCancel()
	g, err := tr.NextGroup(readCtx)
	cancel()
	<-writing
	if err != nil {
		t.Fatalf("no group after the gap while the writer went on: %v", err)
	}
	if g.Sequence() < 2 {
		t.Errorf("group %d after the gap", g.Sequence())
	}
	g.Close()
}

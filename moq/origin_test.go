package moq

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func newTestBroadcast(t testing.TB) *BroadcastWriter {
	t.Helper()
	bw := NewBroadcast()
	t.Cleanup(func() { _ = bw.Close() })
	return bw
}

func nextAnn(t *testing.T, a *AnnouncementReader) Announcement {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ann, err := a.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return ann
}

func expectAnn(t *testing.T, a *AnnouncementReader, path string, b *BroadcastReader) {
	t.Helper()
	ann := nextAnn(t, a)
	want := Announcement{Path: path, Active: b != nil, Broadcast: b}
	if ann != want {
		t.Fatalf("announcement %s, want %s", fmtAnn(ann), fmtAnn(want))
	}
}

func fmtAnn(a Announcement) string {
	if a.Active {
		return fmt.Sprintf("active(%s, %p)", a.Path, a.Broadcast)
	}
	return fmt.Sprintf("ended(%s)", a.Path)
}

func expectNoAnn(t *testing.T, a *AnnouncementReader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if ann, err := a.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unexpected %s, %v", fmtAnn(ann), err)
	}
}

func TestOriginPublishConsume(t *testing.T) {
	o := NewOrigin()
	defer o.Close()
	b := newTestBroadcast(t).Reader()
	if err := o.Publish("/live//alice/", b); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"live/alice", "/live/alice", "live//alice//"} {
		got, err := o.Consume(p)
		if err != nil || got != b {
			t.Errorf("Consume(%q) = %p, %v; want %p", p, got, err, b)
		}
	}
	if _, err := o.Consume("live/bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Consume unknown = %v, want ErrNotFound", err)
	}
	if _, err := o.Consume("live"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Consume of a prefix = %v, want ErrNotFound", err)
	}
	if err := o.Publish("live/alice", b); !errors.Is(err, ErrDuplicate) {
		t.Errorf("publishing the same broadcast twice = %v, want ErrDuplicate", err)
	}
	// The same broadcast may live at several paths.
	if err := o.Publish("mirror/alice", b); err != nil {
		t.Errorf("second path: %v", err)
	}
	ended := NewBroadcast()
	_ = ended.Close()
	if err := o.Publish("live/ended", ended.Reader()); !errors.Is(err, ErrClosed) {
		t.Errorf("publishing an ended broadcast = %v, want ErrClosed", err)
	}
	// Subscribing through the Origin reaches the writer's tracks.
	bw := NewBroadcast()
	defer func() { _ = bw.Close() }()
	tw, _ := bw.CreateTrack("video", 1)
	_ = o.Publish("live/carol", bw.Reader())
	br, _ := o.Consume("live/carol")
	tr, err := br.Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	_ = writeGroup(t, tw, 1).Close()
	if g := nextGroup(t, tr); g.Sequence() != 0 {
		t.Errorf("group %d", g.Sequence())
	}
}

func TestOriginAnnouncedPrefix(t *testing.T) {
	o := NewOrigin()
	defer o.Close()
	bs := map[string]*BroadcastReader{}
	for _, p := range []string{"live/b", "live/a", "livex/c", "other/d", "live"} {
		bs[p] = newTestBroadcast(t).Reader()
		if err := o.Publish(p, bs[p]); err != nil {
			t.Fatal(err)
		}
	}
	a := o.Announced("/live/")
	defer a.Close()
	// Existing broadcasts first, in path order; "livex/c" is not under
	// "live" on a segment boundary.
	expectAnn(t, a, "live", bs["live"])
	expectAnn(t, a, "live/a", bs["live/a"])
	expectAnn(t, a, "live/b", bs["live/b"])
	expectNoAnn(t, a)

	// Then live changes.
	e := newTestBroadcast(t).Reader()
	_ = o.Publish("livex/e", e)
	c := newTestBroadcast(t).Reader()
	_ = o.Publish("live/c/d", c)
	expectAnn(t, a, "live/c/d", c)
	o.Unpublish("live/a", bs["live/a"])
	expectAnn(t, a, "live/a", nil)
	expectNoAnn(t, a)

	// Everything matches the empty prefix.
	all := o.Announced("")
	defer all.Close()
	for range 6 {
		if ann := nextAnn(t, all); !ann.Active {
			t.Errorf("initial %s", fmtAnn(ann))
		}
	}
	expectNoAnn(t, all)
}

func TestOriginAnnounceAlternation(t *testing.T) {
	o := NewOrigin()
	defer o.Close()
	a := o.Announced("live")
	defer a.Close()
	b1 := newTestBroadcast(t).Reader()
	b2 := newTestBroadcast(t).Reader()

	// active(b1) told; while asleep: ended, active(b2) → ended, active(b2).
	_ = o.Publish("live/x", b1)
	expectAnn(t, a, "live/x", b1)
	o.Unpublish("live/x", b1)
	_ = o.Publish("live/x", b2)
	expectAnn(t, a, "live/x", nil)
	expectAnn(t, a, "live/x", b2)
	expectNoAnn(t, a)

	// Came and went unseen: nothing.
	b3 := newTestBroadcast(t).Reader()
	_ = o.Publish("live/y", b3)
	o.Unpublish("live/y", b3)
	expectNoAnn(t, a)

	// Told b2; b2 ended and came back while asleep: still the same
	// broadcast active, nothing to report.
	o.Unpublish("live/x", b2)
	_ = o.Publish("live/x", b2)
	expectNoAnn(t, a)

	// Several paths keep the order of their first change.
	_ = o.Publish("live/z", b3)
	o.Unpublish("live/x", b2)
	expectAnn(t, a, "live/z", b3)
	expectAnn(t, a, "live/x", nil)
	expectNoAnn(t, a)
}

func TestOriginBackupPromotion(t *testing.T) {
	o := NewOrigin()
	defer o.Close()
	w1, w2, w3 := newTestBroadcast(t), newTestBroadcast(t), newTestBroadcast(t)
	b1, b2, b3 := w1.Reader(), w2.Reader(), w3.Reader()
	a := o.Announced("")
	defer a.Close()
	for _, b := range []*BroadcastReader{b1, b2, b3} {
		if err := o.Publish("cam", b); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Publish("cam", b2); !errors.Is(err, ErrDuplicate) {
		t.Errorf("re-publishing a backup = %v, want ErrDuplicate", err)
	}
	expectAnn(t, a, "cam", b1)
	expectNoAnn(t, a) // backups are not announced
	if got, _ := o.Consume("cam"); got != b1 {
		t.Fatal("the first publisher is not the active one")
	}

	// The active one ends: the oldest backup is promoted and re-announced.
	_ = w1.Close()
	expectAnn(t, a, "cam", nil)
	expectAnn(t, a, "cam", b2)
	if got, _ := o.Consume("cam"); got != b2 {
		t.Fatal("b2 not promoted")
	}
	// A backup that goes away is dropped silently.
	o.Unpublish("cam", b3)
	expectNoAnn(t, a)
	_ = w2.Close()
	expectAnn(t, a, "cam", nil)
	if _, err := o.Consume("cam"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Consume after all ended = %v, want ErrNotFound", err)
	}
	// b3 was unpublished, so its end touches nothing.
	_ = w3.Close()
	expectNoAnn(t, a)
}

func TestOriginBroadcastClose(t *testing.T) {
	o := NewOrigin()
	defer o.Close()
	bw := NewBroadcast()
	tw, _ := bw.CreateTrack("video", 0)
	_ = o.Publish("live/a", bw.Reader())
	a := o.Announced("live")
	defer a.Close()
	expectAnn(t, a, "live/a", bw.Reader())
	br, _ := o.Consume("live/a")
	tr, _ := br.Subscribe("video", 0)
	defer tr.Close()

	_ = bw.Close()
	expectAnn(t, a, "live/a", nil)
	if _, err := o.Consume("live/a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Consume after Close = %v, want ErrNotFound", err)
	}
	select {
	case <-tw.Done():
	default:
		t.Error("track still open")
	}
	if n := len(bw.b.onDone); n != 0 {
		t.Errorf("%d done callbacks left", n)
	}
}

// TestOriginAnnouncedBounded checks that a reader that never calls Next
// holds constant state however many changes happen.
func TestOriginAnnouncedBounded(t *testing.T) {
	o := NewOrigin()
	defer o.Close()
	w1, w2 := newTestBroadcast(t), newTestBroadcast(t)
	b1, b2 := w1.Reader(), w2.Reader()
	told := o.Announced("live")   // will have been told b1
	asleep := o.Announced("live") // never told anything
	defer told.Close()
	defer asleep.Close()
	_ = o.Publish("live/x", b1)
	expectAnn(t, told, "live/x", b1)

	maxQueue, maxState := 0, 0
	for i := range 10000 {
		b := b1
		if i%2 == 1 {
			b = b2
		}
		if err := o.Publish("live/x", b); err != nil && !errors.Is(err, ErrDuplicate) {
			t.Fatal(err)
		}
		o.Unpublish("live/x", b)
		if i == 9999 {
			_ = o.Publish("live/x", b2)
		}
		o.mu.Lock()
		for _, a := range []*AnnouncementReader{told, asleep} {
			maxQueue = max(maxQueue, cap(a.queue))
			maxState = max(maxState, len(a.state))
		}
		o.mu.Unlock()
	}
	if maxQueue > 4 || maxState > 1 {
		t.Errorf("state grew: queue cap %d, paths %d", maxQueue, maxState)
	}
	if n := len(b1.b.onDone) + len(b2.b.onDone); n != 1 {
		t.Errorf("%d done callbacks registered, want 1", n)
	}
	// What each reader learns is the net change.
	expectAnn(t, told, "live/x", nil)
	expectAnn(t, told, "live/x", b2)
	expectNoAnn(t, told)
	expectAnn(t, asleep, "live/x", b2)
	expectNoAnn(t, asleep)
}

func TestOriginManyPathsBounded(t *testing.T) {
	o := NewOrigin()
	defer o.Close()
	a := o.Announced("")
	defer a.Close()
	b := newTestBroadcast(t).Reader()
	for i := range 1000 {
		p := fmt.Sprintf("p/%d", i)
		_ = o.Publish(p, b)
		o.Unpublish(p, b)
	}
	o.mu.Lock()
	queued, paths := len(a.queue)-a.head, len(a.state)
	o.mu.Unlock()
	if queued != 1000 || paths != 1000 {
		t.Fatalf("queued %d paths %d, want 1000 each", queued, paths)
	}
	expectNoAnn(t, a) // all came and went unseen
	if len(a.state) != 0 || len(a.queue) != 0 {
		t.Errorf("state not released: %d paths, %d queued", len(a.state), len(a.queue))
	}
}

func TestOriginClose(t *testing.T) {
	o := NewOrigin()
	bw := NewBroadcast()
	defer func() { _ = bw.Close() }()
	_ = o.Publish("a", bw.Reader())
	a := o.Announced("")
	got := make(chan error, 1)
	go func() {
		for {
			if _, err := a.Next(context.Background()); err != nil {
				got <- err
				return
			}
		}
	}()
	o.Close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Next after Origin.Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Origin.Close did not unblock Next")
	}
	if n := len(bw.b.onDone); n != 0 {
		t.Errorf("%d done callbacks left after Origin.Close", n)
	}
	if err := o.Publish("b", NewBroadcast().Reader()); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := o.Consume("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Consume after Close = %v, want ErrClosed", err)
	}
	late := o.Announced("")
	if _, err := late.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Announced after Close: %v, want ErrClosed", err)
	}
	a.Close()
	late.Close()
	o.Close() // idempotent
}

func TestOriginAnnouncementReaderClose(t *testing.T) {
	o := NewOrigin()
	defer o.Close()
	a := o.Announced("x")
	got := make(chan error, 1)
	go func() {
		_, err := a.Next(context.Background())
		got <- err
	}()
	time.Sleep(5 * time.Millisecond)
	a.Close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Next = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Next")
	}
	if len(o.readers) != 0 {
		t.Error("closed reader still registered")
	}
	// Changes after Close are not recorded.
	_ = o.Publish("x", newTestBroadcast(t).Reader())
	if a.state != nil {
		t.Error("closed reader keeps state")
	}
}

func TestOriginCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"/":               "",
		"///":             "",
		"live/alice":      "live/alice",
		"/live/alice/":    "live/alice",
		"live//alice":     "live/alice",
		"//live///a//b//": "live/a/b",
		"a/./b":           "a/./b",
	} {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
	for _, c := range []struct {
		path, prefix string
		want         bool
	}{
		{"foo", "foo", true},
		{"foo/bar", "foo", true},
		{"foobar", "foo", false},
		{"fo", "foo", false},
		{"anything", "", true},
		{"", "", true},
		{"foo/bar/baz", "foo/bar", true},
		{"foo/barbaz", "foo/bar", false},
	} {
		if got := HasPathPrefix(c.path, c.prefix); got != c.want {
			t.Errorf("HasPathPrefix(%q, %q) = %v", c.path, c.prefix, got)
		}
	}
}

// TestOriginAnnounceProperty drives an Origin with random publish,
// unpublish, close and read steps and checks what a reader sees: per path,
// announcements alternate (starting with active), every active names the
// broadcast active at that moment, and after draining, the reader's view
// equals the Origin's table.
func TestOriginAnnounceProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		o := NewOrigin()
		defer o.Close()
		paths := []string{"a", "a/b", "c"}
		var writers []*BroadcastWriter
		defer func() {
			for _, w := range writers {
				_ = w.Close()
			}
		}()
		for range 4 {
			writers = append(writers, NewBroadcast())
		}
		a := o.Announced("")
		defer a.Close()
		view := map[string]*BroadcastReader{} // what the reader was told

		read := func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			ann, err := a.Next(ctx)
			if err != nil {
				return false
			}
			cur := view[ann.Path]
			if ann.Active {
				if cur != nil {
					rt.Fatalf("second active for %s without ended", ann.Path)
				}
				if ann.Broadcast == nil {
					rt.Fatalf("active without broadcast")
				}
				view[ann.Path] = ann.Broadcast
			} else {
				if cur == nil {
					rt.Fatalf("ended for %s that was not active", ann.Path)
				}
				if ann.Broadcast != nil {
					rt.Fatalf("ended with a broadcast")
				}
				delete(view, ann.Path)
			}
			return true
		}

		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for range steps {
			path := rapid.SampledFrom(paths).Draw(rt, "path")
			w := rapid.IntRange(0, len(writers)-1).Draw(rt, "writer")
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0, 1:
				_ = o.Publish(path, writers[w].Reader())
			case 2:
				o.Unpublish(path, writers[w].Reader())
			case 3:
				_ = writers[w].Close()
				writers[w] = NewBroadcast()
				writers = append(writers, writers[w]) // closed at the end
			case 4:
				for range rapid.IntRange(1, 3).Draw(rt, "reads") {
					read()
				}
			}
		}
		for read() {
		}
		for _, p := range paths {
			want, err := o.Consume(p)
			if err != nil {
				want = nil
			}
			if view[p] != want {
				rt.Fatalf("reader thinks %s is %p, Origin has %p", p, view[p], want)
			}
		}
	})
}

func TestOriginTryNext(t *testing.T) {
	o := NewOrigin()
	b1, b2 := newTestBroadcast(t).Reader(), newTestBroadcast(t).Reader()
	_ = o.Publish("live/b", b1)
	_ = o.Publish("live/a", b2)
	a := o.Announced("live")
	defer a.Close()
	var got []Announcement
	for {
		ann, ok, err := a.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, ann)
	}
	want := []Announcement{{"live/a", true, b2}, {"live/b", true, b1}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("TryNext gave %v, want %v", got, want)
	}
	o.Unpublish("live/a", b2)
	if ann, ok, err := a.TryNext(); !ok || err != nil || ann != (Announcement{Path: "live/a"}) {
		t.Errorf("TryNext after unpublish = %s, %v, %v", fmtAnn(ann), ok, err)
	}
	o.Close()
	if _, ok, err := a.TryNext(); ok || !errors.Is(err, ErrClosed) {
		t.Errorf("TryNext after Origin.Close = %v, %v; want ErrClosed", ok, err)
	}
}

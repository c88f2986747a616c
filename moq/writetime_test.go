package moq

import (
	"context"
	"testing"
	"time"
)

// writeTimeBetween writes p into g and returns the clock readings taken
// just before and just after.
func writeTimeBetween(t *testing.T, g *GroupWriter, p []byte) (before, after time.Time) {
	t.Helper()
	before = time.Now()
	if err := g.WriteFrame(p); err != nil {
		t.Fatal(err)
	}
	return before, time.Now()
}

func TestWriteTimeOffByDefault(t *testing.T) {
	ctx := context.Background()
	bw := NewBroadcast()
	defer func() { _ = bw.Close() }()
	tw, _ := bw.CreateTrack("t", 0)
	tr, _ := bw.Reader().Subscribe("t", 0)
	defer tr.Close()
	g, _ := tw.AppendGroup()
	_ = g.WriteFrame([]byte("a"))
	gr, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gr.WriteTime(); ok {
		t.Error("WriteTime before any frame: ok")
	}
	if _, err := gr.NextFrame(ctx); err != nil {
		t.Fatal(err)
	}
	if at, ok := gr.WriteTime(); ok {
		t.Errorf("WriteTime without RecordWriteTimes = %v, want unknown", at)
	}
}

// TestWriteTime checks that each frame's write time lies between the clock
// readings around its WriteFrame, for frames written before and after the
// reader took the group, and that frames written before recording was
// turned on have none.
func TestWriteTime(t *testing.T) {
	ctx := context.Background()
	bw := NewBroadcast()
	defer func() { _ = bw.Close() }()
	tw, _ := bw.CreateTrack("t", 0)
	tr, _ := bw.Reader().Subscribe("t", 0)
	defer tr.Close()

	g, _ := tw.AppendGroup()
	_ = g.WriteFrame([]byte("before recording"))
	tr.RecordWriteTimes()
	var windows [][2]time.Time
	for range 3 {
		b, a := writeTimeBetween(t, g, []byte("x"))
		windows = append(windows, [2]time.Time{b, a})
	}
	gr, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gr.NextFrame(ctx); err != nil {
		t.Fatal(err)
	}
	if at, ok := gr.WriteTime(); ok {
		t.Errorf("frame written before RecordWriteTimes: WriteTime %v, want unknown", at)
	}
	for i := range 5 {
		if i >= 3 {
			b, a := writeTimeBetween(t, g, []byte("y"))
			windows = append(windows, [2]time.Time{b, a})
		}
		if _, err := gr.NextFrame(ctx); err != nil {
			t.Fatal(err)
		}
		at, ok := gr.WriteTime()
		if !ok {
			t.Fatalf("frame %d: WriteTime unknown", i+1)
		}
		if w := windows[i]; at.Before(w[0]) || at.After(w[1]) {
			t.Errorf("frame %d: written at %v, outside [%v, %v]", i+1, at, w[0], w[1])
		}
	}
	_ = g.Close()

	// The next group records from its first frame, including frames
	// received from the network.
	g2, _ := tw.AppendGroup()
	before := time.Now()
	buf := g2.AllocFrame(3)
	copy(buf, "abc")
	if _, err := g2.WriteReceived(buf); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	g2.DoneReceiving()
	gr.Close()
	gr2, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gr2.Close()
	if _, err := gr2.NextFrame(ctx); err != nil {
		t.Fatal(err)
	}
	if at, ok := gr2.WriteTime(); !ok || at.Before(before) || at.After(after) {
		t.Errorf("received frame: WriteTime %v, %v; want within [%v, %v]", at, ok, before, after)
	}
}

// TestWriteTimeAllocs checks that recording write times adds no allocation
// per frame: the group's list of times is made once, with its frame list's
// capacity.
func TestWriteTimeAllocs(t *testing.T) {
	ctx := context.Background()
	bw := NewBroadcastWithCache(CacheConfig{MaxBytes: 1 << 40})
	defer func() { _ = bw.Close() }()
	tw, _ := bw.CreateTrack("t", 0)
	tr, _ := bw.Reader().Subscribe("t", 0)
	defer tr.Close()
	tr.RecordWriteTimes()
	payload := make([]byte, 64)
	const frames = 200

	// A warm-up group sizes the next group's frame list.
	warm, _ := tw.AppendGroup()
	for range 2*frames + 2 {
		_ = warm.WriteFrame(payload)
	}
	_ = warm.Close()
	gr, _ := tr.NextGroup(ctx)
	gr.Close()

	g, _ := tw.AppendGroup()
	defer func() { _ = g.Close() }()
	gr, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	_ = g.WriteFrame(payload) // makes the list of write times
	if _, err := gr.NextFrame(ctx); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(1, func() {
		for range frames {
			if err := g.WriteFrame(payload); err != nil {
				t.Fatal(err)
			}
			if _, err := gr.NextFrame(ctx); err != nil {
				t.Fatal(err)
			}
			if _, ok := gr.WriteTime(); !ok {
				t.Fatal("WriteTime unknown")
			}
		}
	})
	if n != 0 {
		t.Errorf("%v allocations for %d frames with write times, want 0", n, frames)
	}
}

// BenchmarkTrackAppendWriteTimes is BenchmarkTrackAppend on a track that
// records write times: a clock reading per frame and a list of times per
// group.
func BenchmarkTrackAppendWriteTimes(b *testing.B) {
	const framesPerGroup = 30
	bw := NewBroadcast()
	defer func() { _ = bw.Close() }()
	tw, _ := bw.CreateTrack("bench", 0)
	tr, _ := bw.Reader().Subscribe("bench", 0)
	defer tr.Close()
	tr.RecordWriteTimes()
	payload := make([]byte, benchFrameSize)

	b.SetBytes(benchFrameSize)
	b.ReportAllocs()
	before := mallocs()
	var g *GroupWriter
	for i := range b.N {
		if i%framesPerGroup == 0 {
			if g != nil {
				_ = g.Close()
			}
			g, _ = tw.AppendGroup()
		}
		_ = g.WriteFrame(payload)
	}
	_ = g.Close()
	b.StopTimer()
	b.ReportMetric(float64(mallocs()-before)/float64(b.N), "allocs/frame")
}

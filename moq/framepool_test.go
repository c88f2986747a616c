package moq

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestChunkClass(t *testing.T) {
	for _, tc := range []struct{ n, class int }{
		{0, 0}, {1, 0}, {256, 0}, {257, 1}, {512, 1}, {24_000, 7}, {64 << 10, 8}, {1 << 20, 12}, {1<<20 + 1, -1},
	} {
		if got := chunkClass(tc.n); got != tc.class {
			t.Errorf("chunkClass(%d) = %d, want %d", tc.n, got, tc.class)
		}
		if tc.class >= 0 && 1<<(minChunkShift+tc.class) < tc.n {
			t.Errorf("class %d does not hold %d bytes", tc.class, tc.n)
		}
	}
}

// TestGroupBuffersAlloc: buffers never overlap (cap == len), small frames
// share chunks, chunk sizes grow to the limit, oversized frames bypass the
// pools.
func TestGroupBuffersAlloc(t *testing.T) {
	var b groupBuffers
	var bufs [][]byte
	for i := range 200 {
		p := b.alloc(300 + i)
		if len(p) != 300+i || cap(p) != len(p) {
			t.Fatalf("alloc(%d): len %d cap %d", 300+i, len(p), cap(p))
		}
		for j := range p {
			p[j] = byte(i)
		}
		bufs = append(bufs, p)
	}
	for i, p := range bufs {
		if !bytes.Equal(p, bytes.Repeat([]byte{byte(i)}, len(p))) {
			t.Fatalf("buffer %d was overwritten by a later one", i)
		}
	}
	chunks := 0
	for c := b.head; c != nil; c = c.next {
		chunks++
		if len(c.buf) > chunkGrowLimit {
			t.Errorf("a chunk of %d bytes for small frames", len(c.buf))
		}
	}
	// ~90 kB in frames of ~400 B: chunks of 512 B, 1 KiB, … 64 KiB.
	if chunks > 10 {
		t.Errorf("%d chunks for 200 small frames", chunks)
	}
	if p := b.alloc(2 << 20); len(p) != 2<<20 {
		t.Fatalf("large alloc: len %d", len(p))
	}
	b.release()
	if b.head != nil || b.tail != nil || b.free != nil {
		t.Error("release left chunks behind")
	}
}

// writePooledGroup writes a group the way a network receiver does: frames
// in the group's reusable memory, then Close and doneWriting.
func writePooledGroup(t *testing.T, tw *TrackWriter, frames, size int) *GroupWriter {
	t.Helper()
	gw, err := tw.AppendGroup()
	if err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		p := gw.AllocFrame(size)
		for j := range p {
			p[j] = byte(int(gw.Sequence()) + i)
		}
		if err := gw.WriteFrame(p); err != nil {
			t.Fatal(err)
		}
	}
	_ = gw.Close()
	gw.DoneReceiving()
	return gw
}

func released(g *GroupWriter) bool {
	g.g.mu.Lock()
	defer g.g.mu.Unlock()
	return g.g.released
}

// TestPayloadReuse: a group only forwarders read gives its payload memory
// back once it left the cache and every forwarder handed its reader back;
// a group any other reader saw keeps it, and its frames stay intact.
func TestPayloadReuse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const frames, size = 4, 1000
	// The cache holds about two groups.
	bw, tw := newTestTrack(t, CacheConfig{MaxBytes: 2 * frames * size})
	fwd := subscribe(t, bw, "video", 1)
	fwd.forwarder = true

	// Group 0: read by the forwarder only.
	g0 := writePooledGroup(t, tw, frames, size)
	r0, err := fwd.NextArrival(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range frames {
		if _, err := r0.NextFrame(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Group 1: read by the forwarder and by a consumer that subscribes
	// when it is the latest group.
	g1 := writePooledGroup(t, tw, frames, size)
	consumer := subscribe(t, bw, "video", 1)
	r1, err := fwd.NextArrival(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c1 := nextGroup(t, consumer)
	if c1.Sequence() != g1.Sequence() {
		t.Fatalf("consumer got group %d, want %d", c1.Sequence(), g1.Sequence())
	}
	var kept [][]byte
	for range frames {
		f := nextFrame(t, c1)
		kept = append(kept, f)
	}
	c1.Close()

	// Newer groups push both out of the cache.
	for range 3 {
		writePooledGroup(t, tw, frames, size)
	}
	if released(g0) {
		t.Fatal("group 0 released while the forwarder still held its reader")
	}
	r0.Close()
	fwd.Recycle(r0)
	if !released(g0) {
		t.Error("group 0 kept its memory after eviction and the forwarder's release")
	}
	r1.Close()
	fwd.Recycle(r1)
	if released(g1) {
		t.Error("group 1 released although a consumer had its frames")
	}
	// New groups reuse what was released; the consumer's frames of group 1
	// must not change.
	for range 5 {
		writePooledGroup(t, tw, frames, size)
	}
	for i, f := range kept {
		if want := bytes.Repeat([]byte{byte(int(g1.Sequence()) + i)}, size); !bytes.Equal(f, want) {
			t.Fatalf("frame %d of group 1 changed after other groups reused memory", i)
		}
	}
}

// TestGrowFrameChunks: a frame that grows alone in its chunks, doubling as
// a receiver asks, leaves one chunk behind, not one per doubling.
func TestGrowFrameChunks(t *testing.T) {
	const size = 300_000
	tw, err := NewBroadcast().CreateTrack("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	g, err := tw.AppendGroup()
	if err != nil {
		t.Fatal(err)
	}
	defer g.DoneReceiving()
	var f FrameBuffer
	for f.Len() < size {
		if f.Len() == f.Cap() {
			g.GrowFrame(&f, min(size, max(FrameStartSize, 2*f.Len())))
		}
		f.Advance(min(1200, len(f.Spare())))
	}
	if p := g.FinishFrame(&f); len(p) != size || cap(p) != size {
		t.Fatalf("frame len %d cap %d", len(p), cap(p))
	}
	b := &g.g.bufs
	chunks := 0
	for c := b.head; c != nil; c = c.next {
		chunks++
	}
	if chunks != 1 || b.head != b.tail || len(b.tail.buf) < size {
		t.Fatalf("a %d-byte frame in a new group left %d chunks", size, chunks)
	}
}

package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// chunkedSource delivers a stream in reads of at most n bytes (a QUIC
// packet's worth), looping over data forever.
type chunkedSource struct {
	data []byte
	off  int
	n    int
}

func (c *chunkedSource) Read(p []byte) (int, error) {
	k := copy(p[:min(len(p), c.n)], c.data[c.off:])
	c.off = (c.off + k) % len(c.data)
	return k, nil
}

// budgetedSession is a session with only its buffer budgets set, for
// readFrame.
func budgetedSession(sessionLimit, serverLimit int) *Session {
	return &Session{mem: sessionBudget{
		own:    newByteBudget("session", sessionLimit),
		shared: newByteBudget("server", serverLimit),
	}}
}

// TestReadFrame: frames of every size class arrive byte-exact, through
// partial reads, into memory that never overlaps; every byte reserved
// from the budgets is given back.
func TestReadFrame(t *testing.T) {
	sizes := []int{0, 1, 300, 4000, 5000, 16 << 10, 20_000, 64 << 10, 300_000, 1<<20 + 5, 2 << 20}
	var stream []byte
	for i, n := range sizes {
		stream = append(stream, bytes.Repeat([]byte{byte(i + 1)}, n)...)
	}
	for _, packet := range []int{1, 1200, 70_000} {
		s := budgetedSession(64<<20, 64<<20)
		r := wire.NewReader(&chunkedSource{data: stream, n: packet})
		b := receiveGroupWriter(t)
		var frames [][]byte
		for i, n := range sizes {
			p, err := s.readFrame(r, b, n)
			if err != nil {
				t.Fatalf("packets of %d: frame %d (%d bytes): %v", packet, i, n, err)
			}
			if len(p) != n || cap(p) != n {
				t.Fatalf("packets of %d: frame %d: len %d cap %d, want %d", packet, i, len(p), cap(p), n)
			}
			frames = append(frames, p)
		}
		for i, p := range frames {
			if !bytes.Equal(p, bytes.Repeat([]byte{byte(i + 1)}, sizes[i])) {
				t.Fatalf("packets of %d: frame %d changed after later frames were read", packet, i)
			}
		}
		if own, shared := s.mem.own.used.Load(), s.mem.shared.used.Load(); own != 0 || shared != 0 {
			t.Errorf("packets of %d: %d and %d bytes still reserved after complete frames", packet, own, shared)
		}
		b.DoneReceiving()
	}
}

// TestReadFrameMemoryFollowsBytes: a declared size alone reserves nothing,
// a partial frame reserves about twice what arrived, an aborted frame gives
// everything back, and a frame that outgrows a budget fails with
// BoundsExceeded.
func TestReadFrameMemoryFollowsBytes(t *testing.T) {
	const declared = 16 << 20
	for _, sent := range []int{0, 1, 40_000, 3 << 20} {
		s := budgetedSession(64<<20, 64<<20)
		peak := int64(0)
		src := &observedReader{data: make([]byte, sent), seen: func() {
			peak = max(peak, s.mem.own.used.Load())
		}}
		b := receiveGroupWriter(t)
		if _, err := s.readFrame(wire.NewReader(src), b, declared); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%d of %d bytes: %v, want io.ErrUnexpectedEOF", sent, declared, err)
		}
		bound := int64(0)
		if sent > 0 {
			bound = int64(max(moq.FrameStartSize, 2*sent))
		}
		if peak > bound {
			t.Errorf("%d of %d bytes: %d bytes reserved, want at most %d", sent, declared, peak, bound)
		}
		if used := s.mem.own.used.Load() + s.mem.shared.used.Load(); used != 0 {
			t.Errorf("%d bytes: %d still reserved after the frame failed", sent, used)
		}
		b.DoneReceiving()
	}

	for _, limits := range [][2]int{{1 << 20, 64 << 20}, {64 << 20, 1 << 20}} {
		s := budgetedSession(limits[0], limits[1])
		b := receiveGroupWriter(t)
		r := wire.NewReader(&observedReader{data: make([]byte, 4<<20), seen: func() {}})
		_, err := s.readFrame(r, b, 4<<20)
		var we wireCoded
		if !errors.As(err, &we) || we.code != wire.CodeBoundsExceeded {
			t.Errorf("4 MiB frame with budgets %v: %v, want BoundsExceeded", limits, err)
		}
		if used := s.mem.own.used.Load() + s.mem.shared.used.Load(); used != 0 {
			t.Errorf("budgets %v: %d still reserved after the frame failed", limits, used)
		}
		b.DoneReceiving()
	}
}

// observedReader delivers data in reads of 1000 bytes, calling seen before
// each, then io.EOF.
type observedReader struct {
	data []byte
	seen func()
}

func (o *observedReader) Read(p []byte) (int, error) {
	o.seen()
	if len(o.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1000)], o.data)
	o.data = o.data[n:]
	return n, nil
}

// BenchmarkReceiveFrames measures the receive path of a group stream: frame
// payloads read from the stream (in reads of a QUIC packet's size) into the
// group's pooled memory, groups of 30 frames released to the pools after
// use, as a relay does once a group left the cache. "upfront" is the former
// path (the declared size allocated, then filled) for comparison.
func BenchmarkReceiveFrames(b *testing.B) {
	for _, size := range []int{1 << 10, 20_000, 64 << 10, 256 << 10, 2 << 20} {
		for _, mode := range []string{"grow", "upfront"} {
			b.Run(fmt.Sprintf("size=%d/%s", size, mode), func(b *testing.B) {
				benchReceiveFrames(b, size, mode == "upfront")
			})
		}
	}
}

func benchReceiveFrames(b *testing.B, size int, upfront bool) {
	const framesPerGroup = 30
	s := budgetedSession(1<<30, 1<<30)
	r := wire.NewReader(&chunkedSource{data: make([]byte, size), n: 1200})
	// A small cache lets each group go (and its memory back to the pools)
	// soon after the next one starts, as a relay's cache does.
	tw, err := moq.NewBroadcastWithCache(moq.CacheConfig{MaxBytes: 1}).CreateTrack("t", 0)
	if err != nil {
		b.Fatal(err)
	}
	g, err := tw.AppendGroup()
	if err != nil {
		b.Fatal(err)
	}
	nextGroup := func() {
		_ = g.Close()
		g.DoneReceiving()
		if g, err = tw.AppendGroup(); err != nil {
			b.Fatal(err)
		}
	}
	read := func() {
		var p []byte
		if upfront {
			p = g.AllocFrame(size)
			if err := r.ReadFull(p); err != nil {
				b.Fatal(err)
			}
		} else if p, err = s.readFrame(r, g, size); err != nil {
			b.Fatal(err)
		}
		_ = g.WriteFrame(p)
	}
	for range framesPerGroup { // warm the pools
		read()
	}
	nextGroup()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	before := mallocs()
	i := 0
	for b.Loop() {
		read()
		if i++; i%framesPerGroup == 0 {
			nextGroup()
		}
	}
	b.ReportMetric(float64(mallocs()-before)/float64(b.N), "allocs/frame")
}

// receiveGroupWriter returns a group of a new track for readFrame to
// receive into.
func receiveGroupWriter(t testing.TB) *moq.GroupWriter {
	t.Helper()
	tw, err := moq.NewBroadcast().CreateTrack("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	g, err := tw.AppendGroup()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// mallocs is the process's count of heap allocations so far.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

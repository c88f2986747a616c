package moq

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Frame payload memory a relay can reuse.
//
// A relay receives every frame once and forwards it to its subscribers; the
// payload buffer is the one thing it must allocate per frame. When only
// forwarders ever read a group (no in-process consumer took its frames),
// its payload memory can be reused as soon as the group has left the cache
// and every forwarder has finished it: the group's frames live in chunks
// taken from size-classed pools, and go back to them then. Everywhere else
// (a consumer may keep frames as long as it likes) the chunks are simply
// left to the garbage collector, like any other allocation. Up to
// keepBudget bytes of free chunks stay allocated while the process lives.

// Chunk size classes: powers of two from 256 B to 1 MiB. Frames above 1 MiB
// get a plain allocation and are not reused.
const (
	minChunkShift = 8
	maxChunkShift = 20
	// chunkGrowLimit caps the chunk size frames share: a group's first
	// chunk fits its first frame, each later one is twice the previous up
	// to this, so a group of tiny frames (audio) holds little spare memory,
	// and video frames of tens of kB fill large chunks with little left
	// over at their ends (a 24 kB frame would leave a quarter of a 32 KiB
	// chunk unused, but only a twentieth of a 256 KiB one).
	chunkGrowLimit = 256 << 10
)

// chunk is a pooled backing array; a group chains the chunks it uses.
type chunk struct {
	buf  []byte
	next *chunk
}

// chunkPools holds the free chunks, one pool per size class.
var chunkPools [maxChunkShift - minChunkShift + 1]chunkPool

// keepBudget bounds the bytes of free chunks kept across garbage
// collections, about one default track cache: a busy relay collects
// garbage every few seconds, and a sync.Pool alone would drop the free
// chunks each time and make the next groups allocate them anew. Free
// chunks beyond the budget go to a sync.Pool, which the collector empties.
const keepBudget = defaultCacheMaxBytes

var keptBytes atomic.Int64

type chunkPool struct {
	mu       sync.Mutex
	kept     []*chunk
	overflow sync.Pool
}

// chunkClass returns the pool index of the smallest class that holds n
// bytes, or -1 when n is above the largest class.
func chunkClass(n int) int {
	if n <= 1<<minChunkShift {
		return 0
	}
	shift := bits.Len(uint(n - 1)) // 1<<shift >= n
	if shift > maxChunkShift {
		return -1
	}
	return shift - minChunkShift
}

func getChunk(class int) *chunk {
	p := &chunkPools[class]
	p.mu.Lock()
	if n := len(p.kept); n > 0 {
		c := p.kept[n-1]
		p.kept[n-1] = nil
		p.kept = p.kept[:n-1]
		p.mu.Unlock()
		keptBytes.Add(-int64(len(c.buf)))
		return c
	}
	p.mu.Unlock()
	if c, _ := p.overflow.Get().(*chunk); c != nil {
		return c
	}
	return &chunk{buf: make([]byte, 1<<(minChunkShift+class))}
}

func putChunk(c *chunk) {
	c.next = nil
	p := &chunkPools[chunkClass(len(c.buf))]
	size := int64(len(c.buf))
	if keptBytes.Add(size) <= keepBudget {
		p.mu.Lock()
		p.kept = append(p.kept, c)
		p.mu.Unlock()
		return
	}
	keptBytes.Add(-size)
	p.overflow.Put(c)
}

// groupBuffers carves the payloads of one group's frames out of pooled
// chunks. Only the group's single writer calls alloc, grow and finish.
type groupBuffers struct {
	head, tail *chunk
	free       []byte // unused end of tail
	// plain gives every frame memory of its own instead, for a consumer's
	// groups (CacheConfig.Consumer), whose frames are let go one by one
	// as their readers pass them.
	plain bool
}

// alloc returns a buffer of length and capacity n, for a frame whose bytes
// have all arrived. Its contents are undefined: the caller overwrites all
// of it.
func (b *groupBuffers) alloc(n int) []byte {
	if b.plain || n > len(b.free) && !b.addChunk(n) {
		return make([]byte, n)
	}
	p := b.free[:n:n]
	b.free = b.free[n:]
	return p
}

// addChunk appends a pooled chunk of at least n bytes and makes it the free
// space; it reports false, changing nothing, when n is above the largest
// size class. A group's first chunk fits n; each later one is twice the
// previous up to chunkGrowLimit, which the bytes already received into the
// group (not any declared size) justify.
func (b *groupBuffers) addChunk(n int) bool {
	if b.plain {
		return false
	}
	size := n
	if b.tail != nil {
		size = max(n, min(2*len(b.tail.buf), chunkGrowLimit))
	}
	class := chunkClass(size)
	if class < 0 {
		return false
	}
	c := getChunk(class)
	if b.tail == nil {
		b.head = c
	} else {
		b.tail.next = c
	}
	b.tail = c
	b.free = c.buf
	return true
}

// frameStartSize is the memory a frame being received gets once its first
// bytes have arrived (or all of it, if smaller); it doubles with the bytes
// received after that. A peer that declares a frame of many megabytes and
// sends a byte makes the receiver hold this much, not the declared size.
const frameStartSize = 16 << 10

// partialFrame is a frame being received into a group's memory: p holds the
// bytes received so far and cap(p) is the room reserved for it. Its memory
// is the start of the group's free chunk space, so it grows in place while
// the chunk has room, or, for frames above the largest chunk class, a
// buffer of its own.
type partialFrame struct {
	p     []byte
	plain bool
}

// grow makes room for want bytes in total (want > cap(f.p)), keeping the
// bytes received so far: in place while the current chunk has room,
// otherwise by moving them into a new chunk or, beyond the largest chunk
// class, into a plain buffer. A chunk that held nothing but this frame goes
// back to the pool at once; space a frame leaves behind in a chunk shared
// with earlier frames stays with the group until it is released.
func (b *groupBuffers) grow(f *partialFrame, want int) {
	if f.plain {
		f.p = append(make([]byte, 0, want), f.p...)
		return
	}
	if want <= len(b.free) {
		f.p = b.free[:len(f.p):want]
		return
	}
	var alone *chunk
	if b.tail != nil && len(b.free) == len(b.tail.buf) {
		alone = b.tail
	}
	received := f.p
	if !b.addChunk(want) {
		f.plain = true
		f.p = append(make([]byte, 0, want), received...)
		return
	}
	f.p = b.free[:copy(b.free, received):want]
	if alone != nil {
		b.dropChunk(alone)
	}
}

// dropChunk unlinks c, which is not the tail, and returns it to its pool.
func (b *groupBuffers) dropChunk(c *chunk) {
	if b.head == c {
		b.head = c.next
	} else {
		prev := b.head
		for prev.next != c {
			prev = prev.next
		}
		prev.next = c.next
	}
	putChunk(c)
}

// finish returns the complete frame, with len == cap, and takes its memory
// out of the free space.
func (b *groupBuffers) finish(f *partialFrame) []byte {
	n := len(f.p)
	if !f.plain {
		b.free = b.free[n:]
	}
	return f.p[:n:n]
}

// release hands every chunk back to its pool.
func (b *groupBuffers) release() {
	for c := b.head; c != nil; {
		next := c.next
		putChunk(c)
		c = next
	}
	*b = groupBuffers{plain: b.plain}
}

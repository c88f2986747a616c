package moq

// The API in this file is for network receivers and forwarders (the
// protocol package's sessions): it lets them put received bytes straight
// into a group's pooled memory and tell the model how their peers keep up,
// without reaching into the model's internals. Applications use
// GroupWriter.WriteFrame and TrackReader.NextGroup instead.

// Size returns the payload bytes written into the group so far.
func (r *GroupReader) Size() int64 { return r.g.sizeNow() }

// Evicted reports whether the track's cache has let the group go (for its
// budget or age): no new reader will get it.
func (r *GroupReader) Evicted() bool { return r.g.isEvicted() }

// Ended returns a channel closed when the reader's track has ended (its
// writer closed it, with or without an error).
func (r *TrackReader) Ended() <-chan struct{} { return r.t.done }

// FrameBuffer is a frame being received into a group's memory
// (GroupWriter.GrowFrame): Filled holds the bytes received so far, Spare
// the room left for more.
type FrameBuffer struct {
	f partialFrame
}

// Len is the number of bytes received so far; Cap the room reserved.
func (b *FrameBuffer) Len() int { return len(b.f.p) }

// Cap is the room reserved for the frame so far.
func (b *FrameBuffer) Cap() int { return cap(b.f.p) }

// Spare is the reserved room not yet filled; after reading m bytes into
// it, call Advance(m).
func (b *FrameBuffer) Spare() []byte { return b.f.p[len(b.f.p):cap(b.f.p)] }

// Advance records m more bytes received into Spare.
func (b *FrameBuffer) Advance(m int) { b.f.p = b.f.p[:len(b.f.p)+m] }

// AllocFrame returns memory for a frame of n bytes that have all arrived,
// carved from the group's pooled chunks (or plain memory for a consumer's
// track, CacheConfig.Consumer). Its contents are undefined: the caller
// overwrites all of it, then writes it with WriteReceived. Only the group's
// writer may call it, and it must call DoneReceiving when it stops.
func (w *GroupWriter) AllocFrame(n int) []byte { return w.g.bufs.alloc(n) }

// GrowFrame makes room for want bytes in total (want > b.Cap()) in a frame
// being received, keeping what was received: in place while the group's
// current chunk has room, otherwise moving it. Memory follows the bytes
// that arrive, never a size a peer declares.
func (w *GroupWriter) GrowFrame(b *FrameBuffer, want int) { w.g.bufs.grow(&b.f, want) }

// FinishFrame returns the complete frame, with len == cap, ready for
// WriteReceived.
func (w *GroupWriter) FinishFrame(b *FrameBuffer) []byte { return w.g.bufs.finish(&b.f) }

// FrameStartSize is the room GrowFrame is first asked for once a frame's
// first bytes have arrived (or all of it, if smaller); it doubles with the
// bytes received after that.
const FrameStartSize = frameStartSize

package transport

import (
	"bytes"
	"testing"
)

// TestWSRecvMemoryFollowsBytes: a stream's buffered data costs memory
// close to its byte count whatever the frame sizes (the limits count bytes;
// a peer sending one-byte frames must not make each byte cost an
// allocation and a slice header), and is read back in order.
func TestWSRecvMemoryFollowsBytes(t *testing.T) {
	for _, size := range []int{1, 7, 100, 5000, maxStreamPayload} {
		s := &wsSession{d: dialectLegacy, streams: map[uint64]*wsStream{}}
		st := &wsStream{s: s, canRecv: true}
		var sent []byte
		for i := 0; len(sent) < 256<<10; i++ {
			data := bytes.Repeat([]byte{byte(i)}, size)
			st.appendRecv(data)
			st.buffered += size
			s.buffered += size
			sent = append(sent, data...)
		}
		held := 0
		for _, b := range st.bufs {
			held += cap(b)
		}
		if limit := len(sent) + len(sent)/8 + recvChunkMax; held > limit {
			t.Errorf("frames of %d bytes: %d bytes buffered hold %d bytes in %d chunks, want at most %d",
				size, len(sent), held, len(st.bufs), limit)
		}
		var got []byte
		p := make([]byte, 3000)
		for st.buffered > 0 {
			got = append(got, p[:st.readLocked(p)]...)
		}
		if !bytes.Equal(got, sent) {
			t.Fatalf("frames of %d bytes: read back %d bytes that differ from the %d sent", size, len(got), len(sent))
		}
	}
}

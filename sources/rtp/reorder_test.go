package rtp

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// checkReorder checks the buffer's invariants: held counts the held
// packets, which all lie in [next, next+reorderSlots) in their slot.
func checkReorder(t *testing.T, b *reorderBuffer) {
	t.Helper()
	n := 0
	for i, s := range b.slots {
		if s.pkt == nil {
			continue
		}
		n++
		if s.ext < b.next || s.ext >= b.next+reorderSlots || int(s.ext%reorderSlots) != i {
			t.Fatalf("slot %d holds %d, next %d", i, s.ext, b.next)
		}
	}
	if n != b.held {
		t.Fatalf("%d packets held, counted %d", n, b.held)
	}
}

func TestReorderBuffer(t *testing.T) {
	b := &reorderBuffer{window: 50 * time.Millisecond}
	now := time.Unix(0, 0)
	var out []ordered
	push := func(seq uint16) {
		out, _ = b.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq}}, now, out[:0])
	}
	seqs := func() (s []int) {
		for _, o := range out {
			if o.lost > 0 {
				s = append(s, -int(o.lost))
			}
			if o.pkt != nil {
				s = append(s, int(o.pkt.SequenceNumber))
			}
		}
		return s
	}
	push(65533)
	push(65532) // sent first, came second: the sequence starts there
	if got := seqs(); len(got) != 0 {
		t.Fatalf("released %v while settling", got)
	}
	now = now.Add(50 * time.Millisecond)
	out = b.expire(now, out[:0])
	if got := seqs(); len(got) != 2 || got[0] != 65532 || got[1] != 65533 {
		t.Fatalf("released %v after settling", got)
	}
	push(65534)
	if got := seqs(); len(got) != 1 || got[0] != 65534 {
		t.Fatalf("released %v", got)
	}
	push(0) // 65535 missing: held
	if got := seqs(); len(got) != 0 {
		t.Fatalf("released %v", got)
	}
	push(65535)
	if got := seqs(); len(got) != 2 || got[0] != 65535 || got[1] != 0 {
		t.Fatalf("released %v after the missing one came", got)
	}
	push(2) // 1 missing
	now = now.Add(49 * time.Millisecond)
	out = b.expire(now, out[:0])
	if len(out) != 0 {
		t.Fatalf("released %v before the window", seqs())
	}
	now = now.Add(time.Millisecond)
	out = b.expire(now, out[:0])
	if got := seqs(); len(got) != 2 || got[0] != -1 || got[1] != 2 {
		t.Fatalf("released %v after the window, want 1 lost then 2", got)
	}
	push(2)
	push(1)
	if b.duplicates != 1 || b.late != 1 {
		t.Fatalf("%d duplicates, %d late", b.duplicates, b.late)
	}
	checkReorder(t, b)
}

func TestReorderBufferRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := &reorderBuffer{window: 50 * time.Millisecond}
	now := time.Unix(0, 0)
	seq := uint16(r.Uint32())
	var out []ordered
	for range 200000 {
		switch k := r.IntN(100); {
		case k < 60:
			seq++
		case k < 80:
			seq += uint16(r.IntN(20)) - 10
		case k < 90:
			seq += uint16(r.IntN(2000)) - 1000
		case k < 95:
			seq = uint16(r.Uint32())
		}
		out, _ = b.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq}}, now, out[:0])
		checkReorder(t, b)
		now = now.Add(time.Duration(r.IntN(5)) * time.Millisecond)
		out = b.expire(now, out[:0])
		checkReorder(t, b)
	}
}

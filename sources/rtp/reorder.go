package rtp

import (
	"time"

	"github.com/pion/rtp"
)

// reorderSlots is how many packets a reorder buffer holds at most: at
// 50 ms and 10 Mb/s of 1200-byte packets, about 50 are in flight.
const reorderSlots = 512

// ordered is a packet the reorder buffer releases, in sequence order.
type ordered struct {
	pkt *rtp.Packet
	at  time.Time // when it arrived
	// lost is how many packets right before this one were given up on.
	lost uint64
}

// reorderBuffer puts the packets of one sender back in sequence order. A
// packet that comes after a gap is held until the missing ones arrive, or
// until it has waited window: then the missing ones are lost. Bounding
// the wait in time rather than in packets keeps the delay it adds the
// same at any bitrate. It holds at most reorderSlots packets; a packet
// further ahead gives up on the oldest missing ones at once.
type reorderBuffer struct {
	window  time.Duration
	started bool
	next    int64 // the extended sequence number released next
	slots   [reorderSlots]slot
	// released holds, per slot, 1 + the extended sequence number last
	// released from it: a packet that comes again is a duplicate.
	released [reorderSlots]int64
	held     int
	oldest   time.Time // the earliest arrival among the held packets

	behind []slot // consecutive packets far behind next
	// settling holds everything for the window after the first packet:
	// packets sent before it may still come, and start the sequence.
	settling bool
	maxExt   int64

	duplicates uint64 // packets seen already
	late       uint64 // packets that came after they were given up on
}

// restartAfter is how many consecutive packets far behind the expected
// sequence number make it a sender that restarted its sequence with the
// same SSRC (ffmpeg with -ssrc), rather than stragglers.
const restartAfter = 8

// restartAhead is the jump forward of the sequence numbers taken for a
// new sequence at once: more packets than a network loses while the
// sender goes on (its timestamps would jump too).
const restartAhead = 4096

type slot struct {
	pkt *rtp.Packet
	at  time.Time
	ext int64
}

// reset forgets everything (a new sender).
func (b *reorderBuffer) reset() {
	*b = reorderBuffer{window: b.window, duplicates: b.duplicates, late: b.late}
}

// push adds a packet that arrived at at and appends to out what can be
// released. It reports restarted when the packet begins a new sequence:
// the sender restarted it. Then out holds the rest of the old sequence
// (what was missing given up on), and the new sequence starts settling
// with this packet and the ones far behind that announced it.
func (b *reorderBuffer) push(pkt *rtp.Packet, at time.Time, out []ordered) (_ []ordered, restarted bool) {
	if !b.started {
		// Far from 0, so that an earlier packet has a positive number.
		b.started, b.next, b.settling = true, 1<<20+int64(pkt.SequenceNumber), true
		b.maxExt = b.next
	}
	ext := b.next + int64(int16(pkt.SequenceNumber-uint16(b.next)))
	if b.settling && ext < b.next && ext > b.maxExt-reorderSlots {
		b.next = ext
	}
	b.maxExt = max(b.maxExt, ext)
	restart := func(first []slot) []ordered {
		out = b.flush(out) // the end of the old sequence goes first
		b.reset()
		for _, s := range first {
			b.push(s.pkt, s.at, nil) // settling: nothing comes out
		}
		return out
	}
	switch {
	case ext < b.next-reorderSlots:
		b.behind = append(b.behind, slot{pkt: pkt, at: at})
		if len(b.behind) >= restartAfter {
			return restart(b.behind), true
		}
		return out, false // late, unless more follow
	case ext >= b.next+restartAhead && !b.settling:
		return restart([]slot{{pkt: pkt, at: at}}), true
	default:
		b.late += uint64(len(b.behind)) // stragglers after all
		b.behind = b.behind[:0]
	}
	switch {
	case ext < b.next:
		if ext >= 0 && b.released[ext%reorderSlots] == ext+1 {
			b.duplicates++
		} else {
			b.late++
		}
		return out, false
	case ext >= b.next+reorderSlots:
		// Too far ahead to hold: give up on what is missing up to the
		// point where it fits (a long loss, or a jump of the sender's
		// sequence).
		out = b.skipTo(ext-reorderSlots+1, out)
	}
	s := &b.slots[ext%reorderSlots]
	if s.pkt != nil {
		b.duplicates++
		return out, restarted
	}
	*s = slot{pkt: pkt, at: at, ext: ext}
	if b.held == 0 || at.Before(b.oldest) {
		b.oldest = at
	}
	b.held++
	if b.settling {
		return out, restarted
	}
	return b.release(0, out), restarted
}

// deadline returns when the oldest held packet has waited the window, and
// false when none is held.
func (b *reorderBuffer) deadline() (time.Time, bool) {
	if b.held == 0 {
		return time.Time{}, false
	}
	return b.oldest.Add(b.window), true
}

// expire gives up on the missing packets that held ones have waited for
// the window by now, appending what it releases to out.
func (b *reorderBuffer) expire(now time.Time, out []ordered) []ordered {
	if b.settling && b.held > 0 && !now.Before(b.oldest.Add(b.window)) {
		b.settling = false
		out = b.release(0, out)
	}
	for b.held > 0 && !now.Before(b.oldest.Add(b.window)) {
		// Skip to the first held packet.
		ext := b.next
		for b.slots[ext%reorderSlots].pkt == nil {
			ext++
		}
		out = b.skipTo(ext, out)
	}
	return out
}

// flush releases everything held, giving up on what is missing (the
// sender changed).
func (b *reorderBuffer) flush(out []ordered) []ordered {
	b.settling = false
	out = b.release(0, out)
	for b.held > 0 {
		ext := b.next
		for b.slots[ext%reorderSlots].pkt == nil {
			ext++
		}
		out = b.skipTo(ext, out)
	}
	return out
}

// skipTo gives up on the missing packets before ext, releasing the held
// ones among them.
func (b *reorderBuffer) skipTo(ext int64, out []ordered) []ordered {
	var lost uint64
	for b.next < ext {
		if b.held == 0 {
			// Nothing held: jump at once.
			lost += uint64(ext - b.next)
			b.next = ext
			break
		}
		s := &b.slots[b.next%reorderSlots]
		if s.pkt == nil {
			lost++
			b.next++
			continue
		}
		out = b.release(lost, out)
		lost = 0
	}
	return b.release(lost, out)
}

// release releases the held packets from next on while they follow each
// other; the first carries lost.
func (b *reorderBuffer) release(lost uint64, out []ordered) []ordered {
	released := false
	for {
		s := &b.slots[b.next%reorderSlots]
		if s.pkt == nil || s.ext != b.next {
			break
		}
		out = append(out, ordered{pkt: s.pkt, at: s.at, lost: lost})
		lost = 0
		b.released[b.next%reorderSlots] = b.next + 1
		*s = slot{}
		b.held--
		b.next++
		released = true
	}
	if lost > 0 {
		// Nothing followed the gap yet: carried by the next release.
		out = append(out, ordered{lost: lost})
	}
	if released && b.held > 0 {
		b.oldest = time.Time{}
		for i := range b.slots {
			if s := &b.slots[i]; s.pkt != nil && (b.oldest.IsZero() || s.at.Before(b.oldest)) {
				b.oldest = s.at
			}
		}
	}
	return out
}

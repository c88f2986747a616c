package rtp

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/moqbridge/moqbridge/internal/lograte"
	"github.com/moqbridge/moqbridge/sdk"
)

// Bounds of one access unit being assembled; beyond them it is dropped as
// damaged (a sender that never sets the marker bit nor changes the
// timestamp must not grow memory).
const (
	maxAUPackets = 4096
	maxAUBytes   = 16 << 20
)

// MediaStats counts what happened to the packets of one media.
type MediaStats struct {
	Packets uint64 // RTP packets received
	Bytes   uint64 // their payload bytes
	// Lost counts packets given up on: still missing when the reorder
	// window ended.
	Lost uint64
	// Duplicates counts packets received twice; Late those that came
	// after they were given up on.
	Duplicates uint64
	Late       uint64
	// Invalid counts datagrams that are neither an RTP packet of the
	// media's payload type nor RTCP, or come from a sender the source
	// filter excludes.
	Invalid uint64
	// Damaged counts access units dropped because a packet of theirs was
	// lost or they did not decode.
	Damaged uint64
	// Skipped counts whole access units dropped because the video track
	// waited for a keyframe after a loss, or its configuration was not
	// known yet, or the stream's clock stepped back (audio), or they
	// ended before the first video keyframe of the tracks added together
	// (a sender joined mid-stream).
	Skipped uint64
	// Frames counts the frames written.
	Frames uint64
	// Restarts counts new senders: SSRC changes and sequence restarts.
	Restarts uint64
	// SenderReports counts the RTCP sender reports received.
	SenderReports uint64
}

// mediaCounters are the atomic counters behind MediaStats, written by Run
// and read by Stats.
type mediaCounters struct {
	packets, bytes, lost, duplicates, late, invalid atomic.Uint64
	damaged, skipped, frames, restarts, reports     atomic.Uint64
}

func (c *mediaCounters) snapshot() MediaStats {
	return MediaStats{
		Packets: c.packets.Load(), Bytes: c.bytes.Load(), Lost: c.lost.Load(),
		Duplicates: c.duplicates.Load(), Late: c.late.Load(), Invalid: c.invalid.Load(),
		Damaged: c.damaged.Load(), Skipped: c.skipped.Load(), Frames: c.frames.Load(),
		Restarts: c.restarts.Load(), SenderReports: c.reports.Load(),
	}
}

// media is the ingest state of one media while Run runs: the current
// sender, its reorder buffer and clock, the access unit being assembled
// and the track written.
type media struct {
	m    Media
	log  *slog.Logger
	dep  depacketizer
	w    *sdk.BroadcastWriter
	gate *trackGate // nil: tracks are added as soon as known
	tw   *sdk.TrackWriter
	c    *mediaCounters

	rb    reorderBuffer
	clock streamClock

	haveSSRC bool
	ssrc     uint32
	prevSSRC uint32 // the sender before the latest change: its stragglers are ignored
	havePrev bool
	// restartLog bounds the lines about restarts (a new SSRC, new
	// sequence numbers) to one a second: packets of two senders mixed on
	// one port (or forged) restart the media at every packet.
	restartLog lograte.Limiter
	nextSR     *senderReport // a report of another SSRC, for when it takes over

	// The access unit being assembled.
	au        []*rtp.Packet
	auOpen    bool
	auTS      uint32
	auAt      time.Time
	auBytes   int
	auDamaged bool
	lossNext  bool // packets were lost right before the next one
	ended     bool // the latest packet ended its access unit (marker bit)

	held         []sdk.Frame // while the track gate is closed
	heldBytes    int
	needKey      bool // video: drop until a keyframe
	audioPTS     time.Duration
	haveAudioPTS bool
	warnedConfig bool

	released []ordered // scratch for the reorder buffer's output
}

func newMedia(m Media, w *sdk.BroadcastWriter, tl *timeline, window time.Duration, c *mediaCounters, log *slog.Logger) (*media, error) {
	log = log.With("media", m.Index+1)
	dep, err := newDepacketizer(m.Format, log)
	if err != nil {
		return nil, permanentf("rtp: %s: %w", m.Describe(), err)
	}
	return &media{
		m: m, log: log, dep: dep, w: w, c: c,
		rb:      reorderBuffer{window: window},
		clock:   streamClock{tl: tl, rate: int64(max(m.Format.ClockRate(), 1))},
		needKey: dep.video(),
	}, nil
}

// packet takes one RTP datagram that arrived at at.
func (md *media) packet(data []byte, at time.Time) error {
	var pkt rtp.Packet
	if err := pkt.Unmarshal(data); err != nil || pkt.PayloadType != md.m.Format.PayloadType() || len(pkt.Payload) == 0 {
		md.c.invalid.Add(1)
		return nil
	}
	md.c.packets.Add(1)
	md.c.bytes.Add(uint64(len(pkt.Payload)))
	switch {
	case !md.haveSSRC:
		md.haveSSRC, md.ssrc = true, pkt.SSRC
		if p := md.clock.pending; p != nil && p.ssrc != pkt.SSRC {
			md.clock.pending = nil
		}
		md.takeNextSR()
	case pkt.SSRC != md.ssrc:
		if md.havePrev && pkt.SSRC == md.prevSSRC {
			md.c.late.Add(1)
			return nil
		}
		md.restartLog.Log(md.log, slog.LevelInfo, "rtp: a new sender (SSRC) on the media; its state restarts", "ssrc", pkt.SSRC, "previous", md.ssrc)
		// What the old sender sent still goes out first.
		if err := md.deliver(md.rb.flush(md.released[:0])); err != nil {
			return err
		}
		md.prevSSRC, md.havePrev, md.ssrc = md.ssrc, true, pkt.SSRC
		md.rb.reset()
		md.restart()
	}
	dupBefore, lateBefore := md.rb.duplicates, md.rb.late
	out, restarted := md.rb.push(&pkt, at, md.released[:0])
	md.c.duplicates.Add(md.rb.duplicates - dupBefore)
	md.c.late.Add(md.rb.late - lateBefore)
	if restarted {
		// out holds the end of the old sequence; the new one is held.
		md.restartLog.Log(md.log, slog.LevelInfo, "rtp: the sender restarted its sequence numbers; the media's state restarts", "ssrc", pkt.SSRC)
		if err := md.deliver(out); err != nil {
			return err
		}
		md.restart()
		return nil
	}
	return md.deliver(out)
}

// takeNextSR makes a report received for the current SSRC before it took
// over the clock's.
func (md *media) takeNextSR() {
	if md.nextSR != nil && md.nextSR.ssrc == md.ssrc {
		md.clock.pending = md.nextSR
	}
	md.nextSR = nil
}

// restart begins a new sender, once the old one's packets went through:
// its packets are assembled and placed on the clock afresh; a video track
// waits for its keyframe. An access unit the old sender left unfinished
// is dropped.
func (md *media) restart() {
	md.c.restarts.Add(1)
	if md.auOpen {
		md.c.damaged.Add(1)
	}
	md.au, md.auOpen, md.auDamaged, md.auBytes, md.lossNext = md.au[:0], false, false, 0, false
	md.dep.reset()
	md.needKey = md.dep.video()
	md.clock.restart(md.ssrc)
	md.takeNextSR()
}

// expire releases what the reorder buffer held for its window by now.
func (md *media) expire(now time.Time) error {
	return md.deliver(md.rb.expire(now, md.released[:0]))
}

func (md *media) deliver(out []ordered) error {
	for _, o := range out {
		if o.lost > 0 {
			md.c.lost.Add(o.lost)
			md.lost()
		}
		if o.pkt != nil {
			if err := md.ordered(o.pkt, o.at); err != nil {
				return err
			}
		}
	}
	md.released = out[:0]
	return nil
}

// lost notes that packets were lost before the next one. Unless every
// packet is a whole access unit, the open access unit lost a part, and
// so may the next one (its first packets).
func (md *media) lost() {
	if md.dep.singlePacket() {
		return
	}
	if md.auOpen {
		md.auDamaged = true
	}
	md.lossNext = true
	if md.dep.video() {
		md.needKey = true // whole frames may have been lost
	}
}

// ordered takes the next packet in sequence order.
func (md *media) ordered(p *rtp.Packet, at time.Time) error {
	md.dep.observe(p)
	if md.tw == nil {
		if err := md.addTrack(at); err != nil {
			return err
		}
	}
	if md.auOpen && p.Timestamp != md.auTS {
		// The open access unit ended without a marker bit (some cameras
		// never set it).
		if err := md.finish(); err != nil {
			return err
		}
	}
	if !md.auOpen {
		md.auOpen, md.auTS, md.auAt, md.auBytes = true, p.Timestamp, at, 0
		// After a loss, the access unit lost its first packets unless
		// the one before the loss ended the previous access unit and
		// this one surely starts its own.
		md.auDamaged = md.lossNext && !(md.ended && md.dep.startsAU(p))
	}
	md.lossNext = false
	md.ended = p.Marker
	if !md.auDamaged {
		md.au = append(md.au, p)
		md.auBytes += len(p.Payload)
		if len(md.au) > maxAUPackets || md.auBytes > maxAUBytes {
			md.auDamaged = true
		}
	}
	if md.auDamaged {
		clear(md.au)
		md.au = md.au[:0]
	}
	if p.Marker || md.dep.singlePacket() {
		return md.finish()
	}
	return nil
}

// finish decodes the open access unit and writes its frames, or drops
// it.
func (md *media) finish() error {
	pkts := md.au
	md.au, md.auOpen = md.au[:0], false
	defer clear(pkts)
	at := md.clock.at(md.auTS, md.auAt) // every access unit, so that unwrapping follows
	if md.auDamaged {
		md.drop()
		return nil
	}
	// The decoders finish an access unit at the marker bit: mark its last
	// packet, which ended it by a new timestamp otherwise.
	last := *pkts[len(pkts)-1]
	last.Marker = true
	pkts[len(pkts)-1] = &last
	units, err := md.dep.decode(pkts)
	if err != nil {
		md.log.Debug("rtp: access unit dropped", "error", err)
		md.drop()
		return nil
	}
	if len(units) == 0 {
		return nil
	}
	if md.tw == nil {
		if err := md.addTrack(md.auAt); err != nil {
			return err
		}
		if _, ok, err := md.dep.track(); md.tw == nil && (!ok || err != nil) {
			md.c.skipped.Add(uint64(len(units))) // nothing to decode them with
			return nil
		}
	}
	video := md.dep.video()
	for _, u := range units {
		pts := at + md.clock.ticks(u.offset)
		if video {
			if md.needKey && !u.key {
				md.c.skipped.Add(1)
				continue
			}
			if u.key {
				md.needKey = false
			}
		} else {
			if md.haveAudioPTS && pts < md.audioPTS {
				md.c.skipped.Add(1) // the clock stepped back when a sender report placed the stream
				continue
			}
			md.audioPTS, md.haveAudioPTS = pts, true
		}
		if pts < 0 {
			md.c.skipped.Add(1)
			continue
		}
		if err := md.write(sdk.Frame{PTS: pts, Keyframe: u.key || !video, Payload: u.payload}); err != nil {
			return err
		}
	}
	return nil
}

// maxHeldFrames and maxHeldBytes bound the frames a media keeps while
// the track gate is closed.
const (
	maxHeldFrames = 1024
	maxHeldBytes  = 32 << 20
)

// write writes a frame, or keeps it while the track gate holds the
// track back or the broadcast's start is not known yet (trackGate
// aligning); kept frames go first.
func (md *media) write(f sdk.Frame) error {
	if len(md.held) >= maxHeldFrames || md.heldBytes+len(f.Payload) > maxHeldBytes {
		if md.tw == nil {
			md.c.skipped.Add(1)
			md.needKey = md.dep.video()
			return nil
		}
		// No video keyframe came while this many frames waited for
		// one: they go as they are.
		if err := md.gate.stopAligning(); err != nil {
			return err
		}
	}
	md.held = append(md.held, f)
	md.heldBytes += len(f.Payload)
	return md.flushHeld()
}

// flushHeld writes the held frames once the track is added and, when the
// tracks are aligned, the broadcast's start is known; a video keyframe
// held sets that start.
func (md *media) flushHeld() error {
	if md.tw == nil || len(md.held) == 0 {
		return nil
	}
	if g := md.gate; g != nil && g.aligning {
		if !md.dep.video() {
			return nil
		}
		for _, h := range md.held {
			if h.Keyframe {
				return g.start(h.PTS)
			}
		}
		return nil
	}
	for _, h := range md.held {
		if err := md.writeNow(h); err != nil {
			return err
		}
	}
	clear(md.held)
	md.held, md.heldBytes = md.held[:0], 0
	return nil
}

// heldEnd returns where held frame i ends: where the next one begins, or
// for the last one as far after it as it is after the one before; a
// frame alone has no known end (the maximum).
func (md *media) heldEnd(i int) time.Duration {
	switch {
	case i+1 < len(md.held):
		return md.held[i+1].PTS
	case i > 0:
		return 2*md.held[i].PTS - md.held[i-1].PTS
	}
	return time.Duration(1<<63 - 1)
}

// dropBefore drops the held frames that end before start: audio up to the
// frame that covers it, video up to its first keyframe at or after it.
func (md *media) dropBefore(start time.Duration) {
	n := 0
	if md.dep.video() {
		for n < len(md.held) && !(md.held[n].Keyframe && md.held[n].PTS >= start) {
			n++
		}
		if n == len(md.held) {
			md.needKey = true
		}
	} else {
		for n < len(md.held) && md.heldEnd(n) <= start {
			n++
		}
	}
	if n == 0 {
		return
	}
	md.c.skipped.Add(uint64(n))
	for _, h := range md.held[:n] {
		md.heldBytes -= len(h.Payload)
	}
	kept := copy(md.held, md.held[n:])
	clear(md.held[kept:])
	md.held = md.held[:kept]
}

func (md *media) writeNow(f sdk.Frame) error {
	if err := md.tw.WriteFrame(f); err != nil {
		return fmt.Errorf("rtp: writing %s: %w", md.m.Describe(), err)
	}
	md.c.frames.Add(1)
	return nil
}

// trackGate holds the tracks back until every media's configuration is
// known, or for wait after the first packet, and then adds the known ones
// at once: a sink that starts at the first catalog (a recorder) then sees
// them all, where a track added a keyframe interval later would be left
// out of its file.
type trackGate struct {
	open bool
	// aligning: the tracks were added together with a video track and no
	// video keyframe was written yet. Every media's frames are held until
	// one is; those that end before it are then dropped (counted as
	// skipped), so that the tracks start together. A sender that was
	// running when the source started otherwise has its audio start up to
	// a keyframe interval before its video.
	aligning bool
	first    time.Time
	wait     time.Duration
	w        *sdk.BroadcastWriter
	medias   []*media
}

// pass reports whether tracks may be added by now, adding the known ones
// together when the gate opens.
func (g *trackGate) pass(at time.Time) (bool, error) {
	if g == nil || g.open {
		return true, nil
	}
	if g.first.IsZero() {
		g.first = at
	}
	var ready []*media
	var ts []sdk.Track
	for _, md := range g.medias {
		if t, ok, err := md.dep.track(); ok && err == nil {
			ready = append(ready, md)
			ts = append(ts, t)
		}
	}
	if len(ready) < len(g.medias) && at.Sub(g.first) < g.wait {
		return false, nil
	}
	g.open = true
	if len(ts) == 0 {
		return true, nil
	}
	ws, err := g.w.AddTracks(ts...)
	if err != nil {
		return false, fmt.Errorf("rtp: adding the tracks: %w", err)
	}
	for i, md := range ready {
		md.tw = ws[i]
		md.log.Info("rtp: track added", "track", ws[i].Track().Name, "codec", ts[i].Codec)
		if md.dep.video() {
			g.aligning = true
		}
	}
	return true, nil
}

// start ends the alignment at the first video keyframe, at pts: each
// media's held frames that end before it are dropped and the rest
// written (a media whose track is not added yet keeps them).
func (g *trackGate) start(pts time.Duration) error {
	g.aligning = false
	for _, md := range g.medias {
		md.dropBefore(pts)
	}
	for _, md := range g.medias {
		if err := md.flushHeld(); err != nil {
			return err
		}
	}
	return nil
}

// stopAligning gives up waiting for a video keyframe: every held frame
// is written as it is.
func (g *trackGate) stopAligning() error {
	if g == nil || !g.aligning {
		return nil
	}
	g.aligning = false
	g.medias[0].log.Warn("rtp: no video keyframe came; the tracks start unaligned")
	for _, md := range g.medias {
		if err := md.flushHeld(); err != nil {
			return err
		}
	}
	return nil
}

// addTrack adds the media's track to the broadcast once its
// configuration is known and the gate lets it.
func (md *media) addTrack(at time.Time) error {
	if ok, err := md.gate.pass(at); !ok || err != nil || md.tw != nil {
		return err
	}
	t, ok, err := md.dep.track()
	if err != nil && !md.warnedConfig {
		md.warnedConfig = true
		md.log.Warn("rtp: the media's configuration does not parse; waiting for another", "error", err)
	}
	if !ok || err != nil {
		return nil
	}
	if md.tw, err = md.w.AddTrack(t); err != nil {
		return fmt.Errorf("rtp: adding the track of %s: %w", md.m.Describe(), err)
	}
	md.log.Info("rtp: track added", "track", md.tw.Track().Name, "codec", t.Codec)
	return nil
}

// drop counts a damaged access unit; video then waits for a keyframe.
func (md *media) drop() {
	md.c.damaged.Add(1)
	md.dep.reset()
	if md.dep.video() {
		md.needKey = true
	}
}

// report takes an RTCP sender report.
func (md *media) report(sr *rtcp.SenderReport, at time.Time) {
	md.c.reports.Add(1)
	r := senderReport{ssrc: sr.SSRC, ntp: ntpDuration(sr.NTPTime), rtp: sr.RTPTime}
	if md.haveSSRC && sr.SSRC != md.ssrc {
		md.nextSR = &r // perhaps the next sender's
		return
	}
	if moved := md.clock.report(r, at); moved != 0 {
		md.log.Debug("rtp: the first sender report placed the stream on the shared timeline", "moved", moved)
	}
}

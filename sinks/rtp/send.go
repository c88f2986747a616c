package rtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Pacing of the packets of one frame: they are spread over half the
// frame interval of the track, at most maxSpread, so that a keyframe of a
// hundred packets is not one burst; packets due within sleepSlack go out
// together (a sleep shorter than that overshoots anyway).
const (
	maxSpread       = 10 * time.Millisecond
	defaultInterval = 40 * time.Millisecond
	sleepSlack      = 500 * time.Microsecond
)

// reportInterval is how often each stream gets an RTCP sender report
// (RFC 3550 6.2 suggests 5 s at least for small sessions; receivers such
// as ffmpeg sync their streams on the first, so it comes early and often).
const reportInterval = time.Second

// stream is the RTP stream of one track: its socket and destination, and
// the state of its packets.
type stream struct {
	o        *outTrack
	pack     packetizer
	ssrc     uint32
	tsBase   uint32 // the random RTP timestamp of media time 0
	conn     *net.UDPConn
	rtpAddr  netip.AddrPort
	rtcpAddr netip.AddrPort

	packets, octets uint32 // for the sender reports
	sent            bool
	lastT           time.Duration
	interval        time.Duration // between the last two frames
}

// openStreams opens one UDP socket per track, bound to a free port, and
// creates the tracks' encoders.
func (s *Sink) openStreams(tracks []*outTrack) ([]*stream, error) {
	network, local := "udp4", netip.IPv4Unspecified()
	if s.dest.Addr().Is6() {
		network, local = "udp6", netip.IPv6Unspecified()
	}
	var streams []*stream
	for i, o := range tracks {
		pack, ssrc, err := o.newPacketizer(s.cfg.MTU - rtpHeaderSize)
		if err != nil {
			closeStreams(streams)
			return nil, fmt.Errorf("rtp: %s encoder: %w", o.codec, err)
		}
		conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
		if err != nil {
			closeStreams(streams)
			return nil, fmt.Errorf("rtp: opening a UDP socket: %w", err)
		}
		if s.dest.Addr().IsMulticast() {
			if err := setMulticastTTL(conn, s.dest.Addr().Is6(), s.cfg.TTL); err != nil {
				s.log.Warn("rtp: cannot set the multicast TTL; the system default applies", "ttl", s.cfg.TTL, "err", err)
			}
		}
		port := s.dest.Port() + uint16(2*i)
		streams = append(streams, &stream{o: o, pack: pack, ssrc: ssrc, tsBase: randomUint32(), conn: conn,
			rtpAddr:  netip.AddrPortFrom(s.dest.Addr(), port),
			rtcpAddr: netip.AddrPortFrom(s.dest.Addr(), port+1),
			interval: defaultInterval})
	}
	return streams, nil
}

func closeStreams(streams []*stream) {
	for _, st := range streams {
		_ = st.conn.Close()
	}
}

// rtpTime is media time t on the stream's RTP clock.
func (st *stream) rtpTime(t time.Duration) uint32 {
	clock := int64(st.o.clockRate())
	sec, frac := int64(t/time.Second), int64(t%time.Second)
	return st.tsBase + uint32(sec*clock+(frac*clock+int64(time.Second)/2)/int64(time.Second))
}

// writer sends the queued frames, paced, and the RTCP reports. It is the
// only user of the streams while it runs.
type writer struct {
	s       *Sink
	log     *slog.Logger
	q       *queue
	streams []*stream

	// The mapping of media time to wall-clock time that schedules every
	// stream: media time mediaAnchor is due at wallAnchor. It moves when
	// frames are skipped.
	anchored    bool
	wallAnchor  time.Time
	mediaAnchor time.Duration
	// The mapping that dates every sender report, the first schedule's,
	// fixed for the Run: one clock for all streams, which receivers line
	// the streams up by, that does not move when frames are skipped (a
	// receiver may take any report of each stream).
	reportWall  time.Time
	reportMedia time.Duration

	nextReport time.Time
	timer      *time.Timer
	buf        []byte
}

// run sends until the queue is closed and drained or ctx ends, then says
// BYE.
func (w *writer) run(ctx context.Context) {
	w.timer = time.NewTimer(time.Hour)
	defer w.timer.Stop()
	w.buf = make([]byte, w.s.cfg.MTU)
	defer w.bye()
	for {
		it, err := w.pop(ctx)
		if err != nil {
			return
		}
		if !w.send(ctx, it) {
			return
		}
	}
}

// pop waits for the next frame, sending the sender reports when due.
func (w *writer) pop(ctx context.Context) (item, error) {
	for {
		var due <-chan time.Time
		if w.anchored {
			w.reset(time.Until(w.nextReport))
			due = w.timer.C
		}
		it, ok, err := w.q.pop(ctx, due)
		if err != nil || ok {
			return it, err
		}
		w.report(time.Now())
	}
}

// reset arms the timer to fire in d.
func (w *writer) reset(d time.Duration) {
	w.timer.Reset(max(d, 0))
}

// sleepUntil waits until t, sending the sender reports that fall due
// meanwhile. It reports false when ctx ended.
func (w *writer) sleepUntil(ctx context.Context, t time.Time) bool {
	if w.s.unpaced {
		return ctx.Err() == nil
	}
	for {
		now := time.Now()
		if t.Sub(now) <= sleepSlack {
			return true
		}
		wake := t
		if w.anchored && w.nextReport.Before(wake) {
			wake = w.nextReport
		}
		w.reset(wake.Sub(now))
		select {
		case <-w.timer.C:
		case <-ctx.Done():
			return false
		}
		if now := time.Now(); w.anchored && !now.Before(w.nextReport) {
			w.report(now)
		}
	}
}

// send sends one frame when it is due, its packets spread out. It
// reports false when ctx ended.
func (w *writer) send(ctx context.Context, it item) bool {
	st := w.streams[it.track]
	now := time.Now()
	switch {
	case !w.anchored || it.resync:
		// The first frame, or the first after frames were skipped: the
		// schedule starts here.
		w.anchor(now, it.t)
	case now.Sub(w.at(it.t)) > w.s.cfg.MaxDelay:
		// The writer itself fell behind its schedule (the machine was
		// busy): it moves the schedule rather than catching up in a
		// burst.
		w.anchor(now, it.t)
	}
	due := w.at(it.t)
	if !w.sleepUntil(ctx, due) {
		return false
	}
	if st.sent && it.t > st.lastT {
		if d := it.t - st.lastT; d < time.Second {
			st.interval = d
		}
	}
	st.lastT = it.t

	pkts, err := packetize(st, it.f.Payload, it.f.Keyframe)
	if err != nil {
		w.s.unsent.Add(1)
		w.s.badLog.Log(w.log, slog.LevelWarn, "rtp: frame not sent: "+err.Error(), "track", st.o.t.Name)
		return true
	}
	ts := st.rtpTime(it.f.PTS)
	spread := min(st.interval/2, maxSpread)
	start := time.Now()
	for i, p := range pkts {
		if i > 0 && !w.sleepUntil(ctx, start.Add(spread*time.Duration(i)/time.Duration(len(pkts)))) {
			return false
		}
		p.Timestamp += ts
		p.SSRC = st.ssrc
		if i == len(pkts)-1 && st.o.video() {
			p.Marker = true // the last packet of an access unit
		}
		w.write(st, p)
		if !st.sent {
			// The first sender report follows the first packet, so that
			// a receiver can line the streams up from the start.
			st.sent = true
			w.reportStream(st, time.Now())
		}
	}
	w.s.frames.Add(1)
	return true
}

// packetize runs the stream's encoder on a frame. The frame's bytes come
// from the network: an empty payload is refused here, and a panic of an
// encoder on malformed input (gortsplib's may panic on what they do not
// expect) is turned into an error rather than ending the program.
func packetize(st *stream, payload []byte, key bool) (pkts []*rtp.Packet, err error) {
	if len(payload) == 0 {
		return nil, errors.New("empty frame")
	}
	defer func() {
		if r := recover(); r != nil {
			pkts, err = nil, fmt.Errorf("the %s encoder failed on the frame (%v)", st.o.codec, r)
		}
	}()
	return st.pack(st.o, payload, key)
}

// anchor maps media time t to wall-clock time now.
func (w *writer) anchor(now time.Time, t time.Duration) {
	if !w.anchored {
		w.nextReport = now.Add(reportInterval)
		w.reportWall, w.reportMedia = now, t
	}
	w.anchored, w.wallAnchor, w.mediaAnchor = true, now, t
}

// at is when media time t is due.
func (w *writer) at(t time.Duration) time.Time { return w.wallAnchor.Add(t - w.mediaAnchor) }

// reportedMedia is the media time the sender reports date at wall-clock
// time now.
func (w *writer) reportedMedia(now time.Time) time.Duration {
	return w.reportMedia + now.Sub(w.reportWall)
}

// write sends one RTP packet.
func (w *writer) write(st *stream, p *rtp.Packet) {
	n, err := p.MarshalTo(w.buf)
	if err != nil {
		w.s.unsent.Add(1)
		w.s.badLog.Log(w.log, slog.LevelWarn, "rtp: packet not sent: "+err.Error(), "track", st.o.t.Name)
		return
	}
	if _, err := st.conn.WriteToUDPAddrPort(w.buf[:n], st.rtpAddr); err != nil {
		// UDP: nobody listening (an ICMP unreachable) or no route is
		// normal; the receiver may come later.
		w.s.sendErrors.Add(1)
		w.s.errLog.Log(w.log, slog.LevelWarn, "rtp: sending failed (counted, sending goes on)", "track", st.o.t.Name, "err", err)
	}
	// Counted even when refused: the stream's sequence went on.
	st.packets++
	st.octets += uint32(len(p.Payload))
	w.s.packets.Add(1)
	w.s.bytes.Add(uint64(n))
}

// report sends a sender report on every stream that sent a packet, and
// schedules the next.
func (w *writer) report(now time.Time) {
	for _, st := range w.streams {
		if st.sent {
			w.reportStream(st, now)
		}
	}
	w.nextReport = now.Add(reportInterval)
}

// reportStream sends a stream's sender report: the wall-clock time now in
// NTP format, and the RTP time of now by the report clock all streams
// share.
func (w *writer) reportStream(st *stream, now time.Time) {
	sr := &rtcp.SenderReport{SSRC: st.ssrc, NTPTime: ntpTime(now), RTPTime: st.rtpTime(w.reportedMedia(now)),
		PacketCount: st.packets, OctetCount: st.octets}
	if w.sendRTCP(st, sr) {
		w.s.reports.Add(1)
	}
}

// bye ends the streams that sent something with an RTCP BYE (RFC 3550
// 6.6), after a last sender report.
func (w *writer) bye() {
	now := time.Now()
	for _, st := range w.streams {
		if !st.sent {
			continue
		}
		sr := &rtcp.SenderReport{SSRC: st.ssrc, NTPTime: ntpTime(now), RTPTime: st.rtpTime(w.reportedMedia(now)),
			PacketCount: st.packets, OctetCount: st.octets}
		if w.sendRTCP(st, sr, &rtcp.Goodbye{Sources: []uint32{st.ssrc}}) {
			w.s.reports.Add(1)
		}
	}
}

// sendRTCP sends a compound RTCP packet to the stream's RTCP port.
func (w *writer) sendRTCP(st *stream, pkts ...rtcp.Packet) bool {
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		return false
	}
	if _, err := st.conn.WriteToUDPAddrPort(b, st.rtcpAddr); err != nil {
		w.s.sendErrors.Add(1)
		w.s.errLog.Log(w.log, slog.LevelWarn, "rtp: sending failed (counted, sending goes on)", "track", st.o.t.Name, "err", err)
		return false
	}
	return true
}

// ntpEpochOffset is the number of seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2208988800

// ntpTime is t in the 64-bit NTP format: seconds since 1900 and a binary
// fraction.
func ntpTime(t time.Time) uint64 {
	sec := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return sec<<32 | frac
}

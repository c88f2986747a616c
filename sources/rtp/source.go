package rtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/pion/rtcp"

	"github.com/moqbridge/moqbridge/sdk"
)

// Defaults of Config.
const (
	DefaultReorderWindow = 50 * time.Millisecond
	DefaultTimeout       = 10 * time.Second
	DefaultTrackWait     = 2 * time.Second
)

// socketBuffer is the receive buffer asked of the kernel for each socket:
// a keyframe of a high-bitrate stream arrives as a burst of packets.
const socketBuffer = 4 << 20

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

// Config configures a Source.
type Config struct {
	// SDP is the session description text; SDPFile names a file holding
	// it. Exactly one is set.
	SDP     string
	SDPFile string

	// Listen overrides where the media are received, one entry per m=
	// line in order (missing or empty entries keep the SDP's): "host:port",
	// or "host" to keep the SDP's port. RTCP is received on the port + 1;
	// with port 0 both sockets get free ports (see Addrs).
	Listen []string

	// ReorderWindow is how long a packet after a gap waits for the
	// missing ones (default DefaultReorderWindow). It is the latency the
	// source adds when packets are lost or reordered, none otherwise.
	ReorderWindow time.Duration

	// Timeout ends Run with an error wrapping sdk.ErrInputIdle when no
	// RTP packet came for this long after the first (default
	// DefaultTimeout).
	Timeout time.Duration

	// TrackWait is how long after the first packet the tracks are held
	// back while some media's configuration is not known yet (H.264 or
	// H.265 without sprop parameters waits for its parameter sets, AV1,
	// VP8 and VP9 for a keyframe); then the known ones are published and
	// the others added as they come. Meanwhile the frames of the known
	// ones are kept (up to 1024 per media) and written first. Default
	// DefaultTrackWait.
	TrackWait time.Duration

	Logger *slog.Logger
}

// Source receives the RTP media a session description announces and
// writes them into a broadcast. It implements sdk.Source; Run may be
// called again after it returned (the sockets are opened again).
type Source struct {
	cfg  Config
	sess *Session
	log  *slog.Logger

	mu       sync.Mutex
	conns    []mediaConns // while listening
	addrs    []MediaAddrs
	counters []*mediaCounters
}

// MediaAddrs are the local addresses a media is received on.
type MediaAddrs struct {
	RTP, RTCP netip.AddrPort
}

type mediaConns struct {
	rtp, rtcp *net.UDPConn
}

var _ sdk.Source = (*Source)(nil)

// New parses the session description of cfg. Its errors are permanent.
func New(cfg Config) (*Source, error) {
	text := []byte(cfg.SDP)
	switch {
	case cfg.SDP != "" && cfg.SDPFile != "":
		return nil, permanentf("rtp: both an SDP and an SDP file are set")
	case cfg.SDPFile != "":
		b, err := os.ReadFile(cfg.SDPFile)
		if err != nil {
			return nil, permanentf("rtp: reading the SDP file: %w", err)
		}
		text = b
	case cfg.SDP == "":
		return nil, permanentf("rtp: no session description (SDP or SDPFile)")
	}
	sess, err := ParseSDP(text)
	if err != nil {
		return nil, err
	}
	if len(cfg.Listen) > len(sess.Medias) {
		return nil, permanentf("rtp: %d listen addresses for %d media", len(cfg.Listen), len(sess.Medias))
	}
	for i, m := range sess.Medias {
		if _, err := newDepacketizer(m.Format, nil); err != nil {
			return nil, permanentf("rtp: %s: %w", m.Describe(), err)
		}
		if i < len(cfg.Listen) && cfg.Listen[i] != "" {
			if _, _, err := listenAddrs(m, cfg.Listen[i]); err != nil {
				return nil, permanentf("rtp: listen address of %s: %w", m.Describe(), err)
			}
		}
	}
	if cfg.ReorderWindow <= 0 {
		cfg.ReorderWindow = DefaultReorderWindow
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.TrackWait <= 0 {
		cfg.TrackWait = DefaultTrackWait
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Source{cfg: cfg, sess: sess, log: log}
	for range sess.Medias {
		s.counters = append(s.counters, &mediaCounters{})
	}
	return s, nil
}

// Session returns the parsed session description.
func (s *Source) Session() *Session { return s.sess }

// Stats returns the counters of each media, in SDP order, summed over the
// runs of the source.
func (s *Source) Stats() []MediaStats {
	out := make([]MediaStats, len(s.counters))
	for i, c := range s.counters {
		out[i] = c.snapshot()
	}
	return out
}

// listenAddrs returns where a media's RTP and RTCP are received: the SDP's
// address, or the override.
func listenAddrs(m Media, override string) (rtpAddr, rtcpAddr netip.AddrPort, err error) {
	rtpAddr, rtcpPort := m.Addr, m.RTCPPort
	if override != "" {
		host, port, err := net.SplitHostPort(override)
		if err != nil {
			host, port = override, ""
		}
		a := m.Addr.Addr()
		if host != "" {
			if a, err = netip.ParseAddr(host); err != nil {
				return rtpAddr, rtcpAddr, fmt.Errorf("%q: %w", override, err)
			}
		}
		p := m.Addr.Port()
		if port != "" {
			n, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				return rtpAddr, rtcpAddr, fmt.Errorf("%q: bad port", override)
			}
			p = uint16(n)
			rtcpPort = p + 1
			if p == 0 {
				rtcpPort = 0
			}
		}
		rtpAddr = netip.AddrPortFrom(a, p)
	}
	return rtpAddr, netip.AddrPortFrom(rtpAddr.Addr(), rtcpPort), nil
}

// Listen opens the sockets of every media; Run does when they are not
// open. After an error nothing is left open. Listening again after Run
// returned takes the same ports, also those picked for port 0.
func (s *Source) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns != nil {
		return nil
	}
	var conns []mediaConns
	var addrs []MediaAddrs
	fail := func(err error) error {
		closeConns(conns)
		return err
	}
	for i, m := range s.sess.Medias {
		override := ""
		if i < len(s.cfg.Listen) {
			override = s.cfg.Listen[i]
		}
		rtpAddr, rtcpAddr, err := listenAddrs(m, override)
		if err != nil {
			return fail(permanentf("rtp: listen address of %s: %w", m.Describe(), err))
		}
		if i < len(s.addrs) {
			// Listening again (the next Run): the ports picked the first
			// time, which the sender was given.
			rtpAddr = netip.AddrPortFrom(rtpAddr.Addr(), s.addrs[i].RTP.Port())
			rtcpAddr = netip.AddrPortFrom(rtcpAddr.Addr(), s.addrs[i].RTCP.Port())
		}
		rc, err := listenUDP(rtpAddr)
		if err != nil {
			return fail(fmt.Errorf("rtp: receiving %s: %w", m.Describe(), err))
		}
		cc, err := listenUDP(rtcpAddr)
		if err != nil {
			rc.Close()
			return fail(fmt.Errorf("rtp: receiving the RTCP of %s: %w", m.Describe(), err))
		}
		conns = append(conns, mediaConns{rtp: rc, rtcp: cc})
		addrs = append(addrs, MediaAddrs{RTP: localAddr(rc, rtpAddr), RTCP: localAddr(cc, rtcpAddr)})
	}
	s.conns, s.addrs = conns, addrs
	return nil
}

// Addrs returns the addresses the media are received on, once listening
// (Listen, or Run started).
func (s *Source) Addrs() []MediaAddrs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]MediaAddrs(nil), s.addrs...)
}

func localAddr(c *net.UDPConn, want netip.AddrPort) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if want.Addr().IsMulticast() || ap.Addr().IsUnspecified() {
		return netip.AddrPortFrom(want.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// listenUDP opens a socket on a unicast address, or joins a multicast
// group on the default interface.
func listenUDP(a netip.AddrPort) (*net.UDPConn, error) {
	network := "udp4"
	if a.Addr().Is6() && !a.Addr().Is4In6() {
		network = "udp6"
	}
	ua := net.UDPAddrFromAddrPort(a)
	var c *net.UDPConn
	var err error
	if a.Addr().IsMulticast() {
		c, err = net.ListenMulticastUDP(network, nil, ua)
	} else {
		c, err = net.ListenUDP(network, ua)
	}
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(socketBuffer) // best effort: the kernel caps it
	return c, nil
}

func closeConns(cs []mediaConns) {
	for _, c := range cs {
		c.rtp.Close()
		c.rtcp.Close()
	}
}

// Run receives the media until ctx ends (nil), no packet came for the
// timeout (sdk.ErrInputIdle: a returning sender is received by the next
// Run), or writing fails. Tracks are added as their configuration becomes
// known: at once when the SDP carries it, else at the first access unit
// carrying it in band.
//
// Each socket's reader takes its datagrams through to the broadcast
// itself, under the lock of the run's state; Run's own goroutine only
// keeps the timer (the reorder window's deadlines and the timeout). A
// datagram is then one wake-up of one goroutine, not also a hand-over to
// another, and the timer is set again only when a deadline comes earlier
// than the one it is set for, not per datagram.
func (s *Source) Run(ctx context.Context, w *sdk.BroadcastWriter) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		s.mu.Lock()
		closeConns(s.conns)
		s.conns = nil
		s.mu.Unlock()
		wg.Wait()
	}()

	tl := &timeline{}
	gate := &trackGate{wait: s.cfg.TrackWait, w: w}
	run := &ingest{s: s, rearm: make(chan struct{}, 1)}
	run.medias = make([]*media, len(s.sess.Medias))
	for i, m := range s.sess.Medias {
		md, err := newMedia(m, w, tl, s.cfg.ReorderWindow, s.counters[i], s.log)
		if err != nil {
			return err
		}
		md.gate = gate
		run.medias[i] = md
	}
	gate.medias = run.medias

	failed := make(chan error, 2*len(conns))
	for i, c := range conns {
		for _, uc := range []*net.UDPConn{c.rtp, c.rtcp} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := run.readLoop(ctx, uc, i); err != nil {
					failed <- err
				}
			}()
		}
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-run.rearm:
		case now := <-timer.C:
			if err := run.expire(now); err != nil {
				return err
			}
		}
		if next, ok := run.arm(); ok {
			timer.Reset(max(time.Until(next), 0))
		} else {
			timer.Reset(time.Hour)
		}
	}
}

// ingest is the state of one Run: the medias, written by the socket
// readers and by the timer's expiries under mu.
type ingest struct {
	s *Source

	mu         sync.Mutex
	medias     []*media
	lastPacket time.Time // the latest RTP packet's arrival
	// armed is the deadline the timer is set for, zero when none is. A
	// reader that needs an earlier one sets it and signals rearm; a later
	// one (the timeout, which moves with every packet) waits for the timer
	// to fire early and be set again.
	armed time.Time
	rearm chan struct{}
}

// arm returns the next deadline, the earliest of the timeout and the
// reorder buffers', and notes it as armed.
func (run *ingest) arm() (time.Time, bool) {
	run.mu.Lock()
	defer run.mu.Unlock()
	next := time.Time{}
	if !run.lastPacket.IsZero() {
		next = run.lastPacket.Add(run.s.cfg.Timeout)
	}
	for _, md := range run.medias {
		if d, ok := md.rb.deadline(); ok && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	run.armed = next
	return next, !next.IsZero()
}

// expire releases what the reorder buffers held for their window by now,
// and ends the run when no packet came for the timeout.
func (run *ingest) expire(now time.Time) error {
	run.mu.Lock()
	defer run.mu.Unlock()
	for _, md := range run.medias {
		if err := md.expire(now); err != nil {
			return err
		}
	}
	if !run.lastPacket.IsZero() && now.Sub(run.lastPacket) >= run.s.cfg.Timeout {
		return fmt.Errorf("rtp: no packets for %v: %w", run.s.cfg.Timeout, sdk.ErrInputIdle)
	}
	return nil
}

// datagram takes one datagram of a media that arrived at at. An RTP
// packet keeps data (the reorder buffer and the frames refer to it).
func (run *ingest) datagram(media int, data []byte, from netip.AddrPort, at time.Time) error {
	run.mu.Lock()
	defer run.mu.Unlock()
	md := run.medias[media]
	if !run.s.allowed(md.m, from) {
		md.c.invalid.Add(1)
		return nil
	}
	if isRTCP(data) {
		md.rtcp(data, at)
		return nil
	}
	run.lastPacket = at
	if err := md.packet(data, at); err != nil {
		return err
	}
	// The timer needs setting again only for a deadline earlier than the
	// one it is set for: the first packet's timeout, or a packet held for
	// the reorder window.
	need := time.Time{}
	if run.armed.IsZero() {
		need = at.Add(run.s.cfg.Timeout)
	}
	if d, ok := md.rb.deadline(); ok && (need.IsZero() || d.Before(need)) {
		need = d
	}
	if !need.IsZero() && (run.armed.IsZero() || need.Before(run.armed)) {
		run.armed = need
		select {
		case run.rearm <- struct{}{}:
		default: // signalled already
		}
	}
	return nil
}

// udpReader reads the datagrams of a socket (see datagramReader).
type udpReader interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
}

// slabSize is the size of the blocks RTP datagrams are copied into: one
// allocation per few dozen packets rather than one per packet. A block is
// freed once nothing refers to any packet in it.
const slabSize = 64 << 10

// readLoop takes the datagrams of a socket through to the broadcast until
// the socket is closed or taking one fails.
func (run *ingest) readLoop(ctx context.Context, c *net.UDPConn, media int) error {
	r := datagramReader(c)
	buf := make([]byte, maxDatagram)
	var slab []byte
	for {
		n, from, err := r.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("rtp: receiving: %w", err)
		}
		at := time.Now()
		data := buf[:n]
		if !isRTCP(data) {
			// Kept after this call: copied out of the read buffer into
			// the current block, capped so that nothing appends over
			// the next packet.
			if cap(slab)-len(slab) < n {
				slab = make([]byte, 0, max(slabSize, n))
			}
			off := len(slab)
			slab = append(slab, data...)
			data = slab[off:len(slab):len(slab)]
		}
		if err := run.datagram(media, data, from, at); err != nil {
			return err
		}
	}
}

// allowed applies the SDP's source filter.
func (s *Source) allowed(m Media, from netip.AddrPort) bool {
	if len(m.Sources) == 0 {
		return true
	}
	for _, a := range m.Sources {
		if a == from.Addr().Unmap() {
			return true
		}
	}
	return false
}

// isRTCP tells RTCP from RTP by the packet type byte (RFC 5761 4): RTCP
// types 192–223 fall where RTP has a marker bit and payload types 64–95,
// which RTP senders avoid.
func isRTCP(b []byte) bool {
	return len(b) >= 2 && b[1] >= 192 && b[1] <= 223
}

// rtcp takes an RTCP compound packet: its sender reports place the
// streams on the timeline; the rest is not needed.
func (md *media) rtcp(data []byte, at time.Time) {
	pkts, err := rtcp.Unmarshal(data)
	if err != nil {
		md.c.invalid.Add(1)
		return
	}
	for _, p := range pkts {
		if sr, ok := p.(*rtcp.SenderReport); ok {
			md.report(sr, at)
		}
	}
}

// Close closes the sockets Listen opened when Run is not using them.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	closeConns(s.conns)
	s.conns = nil
	return nil
}

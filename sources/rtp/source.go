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

	// Timeout ends Run with a transient error when no RTP packet came for
	// this long after the first (default DefaultTimeout).
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

// datagram is one UDP payload received for a media.
type datagram struct {
	media int
	data  []byte
	from  netip.AddrPort
	at    time.Time
}

// Run receives the media until ctx ends (nil), no packet came for the
// timeout (a transient error: a returning sender is received by the next
// Run), or writing fails. Tracks are added as their configuration becomes
// known: at once when the SDP carries it, else at the first access unit
// carrying it in band.
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
	medias := make([]*media, len(s.sess.Medias))
	for i, m := range s.sess.Medias {
		md, err := newMedia(m, w, tl, s.cfg.ReorderWindow, s.counters[i], s.log)
		if err != nil {
			return err
		}
		md.gate = gate
		medias[i] = md
	}
	gate.medias = medias

	in := make(chan datagram, 256)
	readErr := make(chan error, 2*len(conns))
	for i, c := range conns {
		for _, uc := range []*net.UDPConn{c.rtp, c.rtcp} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := readLoop(ctx, uc, i, in); err != nil {
					readErr <- err
				}
			}()
		}
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var lastPacket time.Time
	for {
		next := time.Time{}
		if !lastPacket.IsZero() {
			next = lastPacket.Add(s.cfg.Timeout)
		}
		for _, md := range medias {
			if d, ok := md.rb.deadline(); ok && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), 0))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return err
		case d := <-in:
			md := medias[d.media]
			if !s.allowed(md.m, d.from) {
				md.c.invalid.Add(1)
				continue
			}
			if isRTCP(d.data) {
				md.rtcp(d.data, d.at)
				continue
			}
			lastPacket = d.at
			if err := md.packet(d.data, d.at); err != nil {
				return err
			}
		case now := <-timer.C:
			for _, md := range medias {
				if err := md.expire(now); err != nil {
					return err
				}
			}
			if !lastPacket.IsZero() && now.Sub(lastPacket) >= s.cfg.Timeout {
				return fmt.Errorf("rtp: no packets for %v", s.cfg.Timeout)
			}
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

// readLoop passes the datagrams of a socket to in until the socket is
// closed.
func readLoop(ctx context.Context, c *net.UDPConn, media int, in chan<- datagram) error {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
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
		d := datagram{media: media, data: append([]byte(nil), buf[:n]...), from: from, at: time.Now()}
		select {
		case in <- d:
		case <-ctx.Done():
			return nil
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

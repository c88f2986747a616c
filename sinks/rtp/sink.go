package rtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/internal/lograte"
	"github.com/moqbridge/moqbridge/sdk"
)

// Defaults of Config.
const (
	DefaultMTU      = 1200
	DefaultMaxDelay = 500 * time.Millisecond
	DefaultTTL      = 1
)

// Bounds of Config.MTU: an RTP header and a useful payload at least, a
// UDP datagram at most.
const (
	MinMTU = 128
	MaxMTU = 65507
)

// rtpHeaderSize is the size of the RTP headers the sink writes: no CSRC,
// no extension.
const rtpHeaderSize = 12

// Limits of the queue between the broadcast and the writer (see queue).
const (
	maxQueueBytes = 64 << 20
	minQueueSpan  = 10 * time.Second
)

// Config configures a Sink. Only Dest is required.
type Config struct {
	// Dest is where the first medium goes, HOST:PORT (IPv4 or IPv6,
	// unicast or multicast; a host name is resolved once, by New). Each
	// next medium goes to PORT+2, and the RTCP of each to its port+1 (the
	// RTP/AVP convention ffmpeg uses).
	Dest string
	// TTL is the multicast TTL (IPv4) or hop limit (IPv6); 0 means
	// DefaultTTL (1: the local network).
	TTL int
	// MTU is the largest UDP payload sent, RTP header included; 0 means
	// DefaultMTU.
	MTU int
	// Video and Audio name the tracks to send; empty picks one of each
	// kind (see Run).
	Video, Audio string
	// SDPFile is where the session description is written (atomically);
	// "" or "-" writes no file (see OnSDP).
	SDPFile string
	// OnSDP, if set, is called with each session description written,
	// before the first packet it describes is sent (the command line
	// prints it).
	OnSDP func(sdp []byte)
	// MaxDelay bounds how far behind live the sink may stay: when the
	// frame to send has been more than MaxDelay of media behind the newest
	// one received for 3 s, it skips to the latest video keyframe
	// received. 0 means DefaultMaxDelay.
	MaxDelay time.Duration
	// Logger receives what happens; default slog.Default().
	Logger *slog.Logger
}

// ErrSourceLost is wrapped by the error Run returns when the broadcast was
// lost rather than ended: a track ended with an error other than io.EOF or
// moq.ErrClosed. Running the Sink again once the broadcast is back goes on
// sending (new RTP streams, the same SDP if the tracks are the same).
var ErrSourceLost = errors.New("rtp: source lost")

// Stats counts what a Sink did, over all its Runs.
type Stats struct {
	Packets uint64 // RTP packets sent
	Bytes   uint64 // their UDP payload bytes, RTP headers included
	Frames  uint64 // frames sent
	// DroppedFrames and DroppedGOPs count what was skipped to stay near
	// live (Config.MaxDelay) or to bound the queue.
	DroppedFrames uint64
	DroppedGOPs   uint64
	// Unsent counts the frames not sent for other reasons: before the
	// first video keyframe, or undecodable.
	Unsent        uint64
	SenderReports uint64 // RTCP sender reports sent
	// SendErrors counts the datagrams the kernel refused (no route, or
	// nobody listening: ICMP unreachable), which do not stop the sink.
	SendErrors uint64
}

// Sink sends a broadcast as RTP over UDP. It implements sdk.Sink.
type Sink struct {
	cfg  Config
	dest netip.AddrPort
	log  *slog.Logger

	running atomic.Bool

	packets, bytes, frames, unsent, reports, sendErrors atomic.Uint64

	errLog, badLog lograte.Limiter

	sessionID uint64

	mu                         sync.Mutex
	droppedFrames, droppedGOPs uint64 // of the Runs that ended
	beforeStart                uint64
	q                          *queue // the running Run's
	lastSDP                    []byte
	version                    uint64

	// unpaced sends every frame at once (the benchmark, which measures
	// the cost of sending rather than the pacing).
	unpaced bool
}

var _ sdk.Sink = (*Sink)(nil)

// New returns a Sink with cfg, defaults filled in. A Dest that is not
// HOST:PORT with a usable address and port, an MTU out of bounds or a
// negative TTL or MaxDelay are permanent errors (sdk.IsPermanent).
func New(cfg Config) (*Sink, error) {
	dest, err := parseDest(cfg.Dest)
	if err != nil {
		return nil, sdk.Permanent(err)
	}
	switch {
	case cfg.MTU == 0:
		cfg.MTU = DefaultMTU
	case cfg.MTU < MinMTU || cfg.MTU > MaxMTU:
		return nil, sdk.Permanent(fmt.Errorf("rtp: MTU %d out of range (%d to %d bytes)", cfg.MTU, MinMTU, MaxMTU))
	}
	switch {
	case cfg.TTL == 0:
		cfg.TTL = DefaultTTL
	case cfg.TTL < 0 || cfg.TTL > 255:
		return nil, sdk.Permanent(fmt.Errorf("rtp: TTL %d out of range (1 to 255)", cfg.TTL))
	}
	switch {
	case cfg.MaxDelay == 0:
		cfg.MaxDelay = DefaultMaxDelay
	case cfg.MaxDelay < 0:
		return nil, sdk.Permanent(fmt.Errorf("rtp: negative maximum delay %s", cfg.MaxDelay))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Sink{cfg: cfg, dest: dest, log: cfg.Logger.With("rtp", dest.String()),
		sessionID: uint64(randomUint32())}, nil
}

// parseDest reads Config.Dest.
func parseDest(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return netip.AddrPort{}, fmt.Errorf("rtp: destination %q: want HOST:PORT, e.g. 127.0.0.1:5004, 239.0.0.1:5004 or [::1]:5004", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("rtp: destination %q: port %q is not a number from 1 to 65535", s, port)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
		if lerr != nil || len(ips) == 0 {
			return netip.AddrPort{}, fmt.Errorf("rtp: destination %q: %q is neither an IP address nor a host name that resolves (%v)", s, host, lerr)
		}
		addr = ips[0]
	}
	addr = addr.Unmap()
	if addr.IsUnspecified() || addr.Zone() != "" && !addr.IsLinkLocalUnicast() && !addr.IsLinkLocalMulticast() {
		return netip.AddrPort{}, fmt.Errorf("rtp: destination %q: %s is not an address to send to", s, addr)
	}
	return netip.AddrPortFrom(addr, uint16(p)), nil
}

// Stats returns the sink's counters; safe to call while Run runs.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	st := Stats{DroppedFrames: s.droppedFrames, DroppedGOPs: s.droppedGOPs, Unsent: s.beforeStart}
	if s.q != nil {
		f, g, b := s.q.counters()
		st.DroppedFrames += f
		st.DroppedGOPs += g
		st.Unsent += b
	}
	s.mu.Unlock()
	st.Packets = s.packets.Load()
	st.Bytes = s.bytes.Load()
	st.Frames = s.frames.Load()
	st.Unsent += s.unsent.Load()
	st.SenderReports = s.reports.Load()
	st.SendErrors = s.sendErrors.Load()
	return st
}

// catalogSettle is how long the catalog must hold still before Run takes
// its tracks.
const catalogSettle = 200 * time.Millisecond

// interleaveWait bounds how long a frame waits for the other track's
// frames, so that the writer gets them in decode-time order.
const interleaveWait = 200 * time.Millisecond

// Run sends r as RTP until the broadcast ends or ctx ends.
//
// It sends one video and one audio track: those named by Config.Video and
// Config.Audio, or else the video track with the most pixels (H.264 first
// among equals, then the first in the catalog) and the first audio track
// (AAC or Opus before G.711). Tracks whose codec cannot be sent are
// skipped with a warning; if none can be sent, Run fails with a permanent
// error. The video goes to Config.Dest, the audio to its port + 2.
//
// Once it has its tracks, Run writes the session description
// (Config.SDPFile, Config.OnSDP) unless a previous Run wrote the same, and
// starts new RTP streams (random SSRC, sequence numbers and timestamps).
// Frames are handed to one writer goroutine through a bounded queue, so
// the network never holds up the broadcast; the writer paces them in
// real time, and skips to the latest keyframe when it stays behind by
// more than Config.MaxDelay.
//
// Run returns nil when ctx ends or the broadcast ended (after the queued
// frames are sent, and an RTCP BYE); an error wrapping ErrSourceLost when
// a track ended with an error (Run may be called again once the broadcast
// is back; Runs must not overlap).
func (s *Sink) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("rtp: Run called while another Run of the same Sink runs")
	}
	defer s.running.Store(false)
	log := s.log
	if p := r.Path(); p != "" {
		log = log.With("path", p)
	}
	if ok, err := r.WaitSinkTracks(ctx, catalogSettle, "rtp", ErrSourceLost); !ok {
		return err
	}
	tracks, err := s.pick(log, r.Tracks())
	if err != nil {
		return err
	}
	if last := int(s.dest.Port()) + 2*(len(tracks)-1) + 1; last > 65535 {
		return sdk.Permanent(fmt.Errorf("rtp: destination port %d leaves no room for %d media (ports up to %d)", s.dest.Port(), len(tracks), last))
	}
	streams, err := s.openStreams(tracks)
	if err != nil {
		return err
	}
	defer closeStreams(streams)

	names := make([]string, len(tracks))
	for i, o := range tracks {
		names[i] = o.t.Name
	}
	readers, closeReaders, err := r.SubscribeSinkTracks(ctx, names, "rtp", ErrSourceLost)
	if err != nil {
		return err
	}
	defer closeReaders()
	if err := s.publishSDP(log, r.Path(), tracks); err != nil {
		return err
	}

	q := newQueue(maxQueueBytes, max(minQueueSpan, 4*s.cfg.MaxDelay), s.cfg.MaxDelay)
	s.mu.Lock()
	s.q = q
	s.mu.Unlock()
	defer s.retire(q)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &writer{s: s, log: log, q: q, streams: streams}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		w.run(ctx)
	}()

	il := sdk.NewInterleaver(ctx, sdk.InterleaverConfig{MaxWait: interleaveWait}, readers...)
	lost := s.read(ctx, log, il, q, tracks)
	il.Close()
	q.close()
	// The writer sends what is queued (at its pace: the queue holds at
	// most about MaxDelay of media once the sink is live) and says BYE.
	<-sent
	if lost != nil {
		return fmt.Errorf("%w: %w", ErrSourceLost, lost)
	}
	return nil
}

// publishSDP writes the session description of the tracks, unless it is
// the one written last.
func (s *Sink) publishSDP(log *slog.Logger, path string, tracks []*outTrack) error {
	name := path
	if name == "" {
		name = "moqbridge"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sdp, err := sessionSDP(name, s.sessionID, s.version, s.dest, s.cfg.TTL, tracks)
	if err != nil {
		return sdk.Permanent(err)
	}
	if s.lastSDP != nil && string(sdp) == string(s.lastSDP) {
		return nil
	}
	if s.lastSDP != nil {
		// The tracks changed: a new version of the description.
		s.version++
		if sdp, err = sessionSDP(name, s.sessionID, s.version, s.dest, s.cfg.TTL, tracks); err != nil {
			return sdk.Permanent(err)
		}
	}
	if f := s.cfg.SDPFile; f != "" && f != "-" {
		if err := writeFileAtomic(f, sdp); err != nil {
			return fmt.Errorf("rtp: writing the SDP file: %w", err)
		}
		log.Info("rtp: wrote the session description", "file", f)
	}
	s.lastSDP = sdp
	if s.cfg.OnSDP != nil {
		s.cfg.OnSDP(sdp)
	}
	return nil
}

// retire moves the counters of a Run's queue into the sink's.
func (s *Sink) retire(q *queue) {
	f, g, b := q.counters()
	s.mu.Lock()
	s.droppedFrames += f
	s.droppedGOPs += g
	s.beforeStart += b
	s.q = nil
	s.mu.Unlock()
}

// read moves the frames of il into q until every track ended or ctx
// ended; it never blocks on the network. It returns the first track that
// ended with an error (see ErrSourceLost).
func (s *Sink) read(ctx context.Context, log *slog.Logger, il *sdk.Interleaver, q *queue, tracks []*outTrack) (lost error) {
	hasVideo := tracks[0].video()
	last := make([]time.Duration, len(tracks))
	for {
		it, err := il.Next(ctx)
		if err != nil { // every track ended (io.EOF), or ctx
			return lost
		}
		o := tracks[it.Track]
		if it.Err != nil {
			if !sdk.Ended(it.Err) && lost == nil {
				log.Warn("rtp: track ended with an error", "track", o.t.Name, "err", it.Err)
				lost = fmt.Errorf("track %q: %w", o.t.Name, it.Err)
			}
			continue
		}
		// Due times never go back within a track: presentation times of
		// reordered frames (B-frames without decode times) are sent in
		// decode order, each when the latest before it was due.
		t := max(it.Frame.DecodeTime(), last[it.Track])
		last[it.Track] = t
		key := it.Frame.Keyframe && (o.video() || !hasVideo)
		q.push(item{track: it.Track, f: it.Frame, t: t, key: key})
	}
}

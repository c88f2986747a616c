package protocol

import (
	"context"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// probeMinChange is the relative change of the bandwidth estimate that is
// worth a new PROBE message (the reference publisher uses 25 %).
const probeMinChange = 0.25

// probeMinRTTChangeMs is the least RTT change worth a PROBE: on a fast path
// (1–2 ms) every millisecond of jitter would otherwise cross 25 %.
const probeMinRTTChangeMs = 5

// serveProbe answers a probe stream the peer opened (Lite03+): it sends the
// connection's bandwidth and RTT estimate whenever it moves enough. The
// stream is never reset: the reference client treats a reset probe stream
// as fatal to the whole connection.
//
// The estimates of every session of a Server are checked by one probe
// clock, the server's, so that a relay with many subscribers does not wake
// a goroutine per session twice a second; this goroutine only wakes to
// write a PROBE that is due. A session made by Dial has a clock of its own.
func (s *Session) serveProbe(str transport.Stream, r *wire.Reader) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	peerDone := make(chan struct{})
	s.spawn(func() {
		defer close(peerDone)
		defer cancel()
		// The opener sends nothing after the type; its FIN ends the probe.
		_, _ = r.ReadMessage(s.limits.MaxMessageSize)
	})
	ps := &probeState{s: s, due: make(chan wire.Probe, 1)}
	s.probes.add(ps)
	defer s.probes.remove(ps)
	var buf []byte
	for {
		var p wire.Probe
		select {
		case <-ctx.Done():
			if s.ctx.Err() == nil {
				_ = str.Close()
			}
			str.CancelRead(uint64(wire.CodeCancel))
			<-peerDone
			return
		case p = <-ps.due:
		}
		buf = wire.AppendProbe(buf[:0], s.version, p)
		if _, err := str.Write(buf); err != nil {
			str.CancelRead(uint64(wire.CodeCancel))
			<-peerDone
			return
		}
	}
}

// probeState is one probe stream on the shared probe clock: the estimate
// last handed to its writer, and where to hand the next one.
type probeState struct {
	s        *Session
	last     wire.Probe // guarded by probeClock.mu
	lastSent time.Time
	due      chan wire.Probe // capacity one: the newest due PROBE
}

// probeClock checks the estimates of every registered probe stream on one
// ticker, every probeInterval. Its goroutine runs only while streams are
// registered; the clock's owner (a Server, or a session made by Dial) calls
// close when it stops, which waits for the goroutine, so none outlives it.
type probeClock struct {
	mu      sync.Mutex
	streams map[*probeState]struct{}
	stop    chan struct{} // closed to end the running clock; nil when stopped
	closed  bool          // after close: no stream starts the clock again
	wg      sync.WaitGroup
}

// add registers ps and starts the clock if it is not running. After close
// it registers nothing: ps then never gets a PROBE, and its stream ends
// with its session, which its owner is closing.
func (c *probeClock) add(ps *probeState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.streams == nil {
		c.streams = make(map[*probeState]struct{})
	}
	c.streams[ps] = struct{}{}
	if c.stop == nil {
		stop := make(chan struct{})
		c.stop = stop
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.run(stop)
		}()
	}
}

func (c *probeClock) remove(ps *probeState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.streams, ps)
	if len(c.streams) == 0 && c.stop != nil {
		close(c.stop)
		c.stop = nil
	}
}

// close stops the clock for good and waits for its goroutine. Safe to call
// more than once.
func (c *probeClock) close() {
	c.mu.Lock()
	c.closed = true
	clear(c.streams)
	if c.stop != nil {
		close(c.stop)
		c.stop = nil
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *probeClock) run(stop chan struct{}) {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		// Under the lock, so that a clock started after this one stopped
		// never handles a stream at the same time; reading an estimate
		// and handing a PROBE over never block.
		now := time.Now()
		c.mu.Lock()
		for ps := range c.streams {
			p := ps.s.currentProbe()
			if !probeDue(ps.last, p, now.Sub(ps.lastSent)) {
				continue
			}
			ps.last, ps.lastSent = p, now
			// Replace a PROBE its writer has not taken yet: only the
			// newest estimate matters.
			select {
			case <-ps.due:
			default:
			}
			ps.due <- p
		}
		c.mu.Unlock()
	}
}

// currentProbe reads the transport's estimates.
func (s *Session) currentProbe() wire.Probe {
	st := s.conn.Stats()
	p := wire.Probe{BitrateBps: st.EstimatedBitrate}
	if s.version >= Lite04 && st.SmoothedRTT > 0 {
		p.RTTms = uint64(st.SmoothedRTT.Milliseconds())
		if p.RTTms == 0 {
			p.RTTms = 1 // 0 means unknown on the wire
		}
	}
	return p
}

// probeQuiet is the least time between two PROBEs. A congestion window
// over a sub-millisecond RTT swings by more than 25 % (and often by half)
// all the time, and each PROBE costs a packet and its acknowledgement;
// players adapt their bitrate over seconds anyway.
const probeQuiet = 2 * time.Second

// probeDue says whether estimate now is worth a PROBE, last having been
// sent since ago: the first one at once, then a move of 25 % (or 5 ms of
// RTT) at most every probeQuiet.
func probeDue(last, now wire.Probe, since time.Duration) bool {
	if !probeChanged(last, now) {
		return false
	}
	return last == (wire.Probe{}) || since >= probeQuiet
}

func probeChanged(last, now wire.Probe) bool {
	if last == (wire.Probe{}) {
		return now != last
	}
	moved := func(a, b, minAbs uint64) bool {
		if a == 0 {
			return b != 0
		}
		d := max(a, b) - min(a, b)
		return d >= minAbs && float64(d)/float64(a) >= probeMinChange
	}
	return moved(last.BitrateBps, now.BitrateBps, 1) || moved(last.RTTms, now.RTTms, probeMinRTTChangeMs)
}

// runProbeSubscriber opens the probe stream (writing only its type, as the
// reference client does) and records the PROBE messages the peer sends.
func (s *Session) runProbeSubscriber() {
	str, err := s.conn.OpenStream(s.ctx)
	if err != nil {
		return
	}
	stop := context.AfterFunc(s.ctx, func() { str.CancelRead(uint64(wire.CodeCancel)) })
	defer stop()
	if _, err := str.Write(wire.AppendStreamType(nil, wire.StreamProbe)); err != nil {
		return
	}
	r := wire.NewReader(str)
	for {
		body, err := r.ReadMessage(s.limits.MaxMessageSize)
		if err != nil {
			_ = str.Close()
			return
		}
		p, err := wire.DecodeProbe(s.version, body)
		if err != nil {
			s.log.Debug("moq ignoring malformed PROBE", "err", err)
			continue
		}
		s.probe.Store(&p)
	}
}

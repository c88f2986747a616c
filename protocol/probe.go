package protocol

import (
	"context"
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
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	var last wire.Probe
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			if s.ctx.Err() == nil {
				_ = str.Close()
			}
			str.CancelRead(uint64(wire.CodeCancel))
			<-peerDone
			return
		case <-tick.C:
		}
		p := s.currentProbe()
		if !probeChanged(last, p) {
			continue
		}
		last = p
		buf = wire.AppendProbe(buf[:0], s.version, p)
		if _, err := str.Write(buf); err != nil {
			str.CancelRead(uint64(wire.CodeCancel))
			<-peerDone
			return
		}
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

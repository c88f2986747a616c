package protocol

import (
	"time"

	"github.com/moqbridge/moqbridge/protocol/internal/transport"
)

// Liveness bounds how long a silent peer keeps its session, on every
// transport. Zero fields take DefaultLiveness.
type Liveness struct {
	// KeepAlive is how long a session may go without receiving anything
	// before it sends a keep-alive the peer must answer (a QUIC PING, a
	// WebSocket ping). It is capped at half of IdleTimeout.
	KeepAlive time.Duration
	// IdleTimeout ends a session from whose peer nothing at all (data,
	// acknowledgements, pongs) has been received for this long; the
	// session's error is then a net.Error whose Timeout() is true, and the
	// broadcasts it published leave the moq.Origin (a waiting backup takes
	// over). Over QUIC and WebTransport it is QUIC's max_idle_timeout, so
	// the smaller value of the two ends applies; quic-go counts it from the
	// first packet sent after the last one received and never below three
	// probe timeouts, so a silent peer is noticed between IdleTimeout and
	// KeepAlive+IdleTimeout after its last packet. Over WebSocket it counts
	// from the last message, ping or pong received, as seen at the next
	// keep-alive check, so there too a silent peer is noticed between
	// IdleTimeout and KeepAlive+IdleTimeout after it fell silent.
	IdleTimeout time.Duration
}

// DefaultLiveness notices a silent peer within 5–6 s: a 1 s keep-alive and a
// 5 s idle timeout.
//
// The reference stack (moq-native over quinn or quiche, and the qmux
// WebSocket keep-alive of moq-relay) uses a 30 s idle timeout and a 5 s
// keep-alive, which keeps a killed publisher's broadcast live for half a
// minute: its backup publisher waits, recorders and players stall, and
// clients of a restarted relay hang. moqbridge deliberately detects faster:
//
//   - A peer that has answered nothing for 5 s, while it is sent a
//     keep-alive after every second of silence, is not in a hiccup a live
//     stream rides out: players buffer a second or two and the relay drops
//     groups that lag more than Limits.MaxGroupLag (1 s), so viewers have
//     stalled long before; handing the path to a backup or reconnecting to
//     the live edge beats waiting. SRT's peer idle timeout, the nearest
//     live-media precedent, is 5 s as well.
//   - It still rides out what working networks do: a Wi-Fi roam or a
//     cellular handover (usually well under 2 s) loses keep-alives, and
//     QUIC retransmits an unanswered PING at each probe timeout, so several
//     tries fit before the deadline; quic-go never lets the idle timeout
//     drop below three probe timeouts, so it stretches by itself on very
//     long paths.
//   - A keep-alive costs at most one small packet and its acknowledgement
//     per second per idle session; sessions that carry media send none
//     (docs/benchmarks.md, "Idle sessions").
//
// Raise both on lossier networks (`moqbridge serve --idle-timeout
// --keep-alive`, ServerConfig.Liveness, WithLiveness). Because QUIC
// applies the smaller idle timeout of the two ends, a client that wants a
// longer one than its relay's cannot get it.
var DefaultLiveness = Liveness{KeepAlive: transport.DefaultKeepAlive, IdleTimeout: transport.DefaultIdleTimeout}

func (l Liveness) transport() transport.Liveness {
	return transport.Liveness{KeepAlive: l.KeepAlive, IdleTimeout: l.IdleTimeout}
}

// withDefaults fills zero fields from DefaultLiveness and caps the
// keep-alive at half the idle timeout.
func (l Liveness) withDefaults() Liveness {
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultLiveness.IdleTimeout
	}
	if l.KeepAlive <= 0 {
		l.KeepAlive = DefaultLiveness.KeepAlive
	}
	l.KeepAlive = min(l.KeepAlive, l.IdleTimeout/2)
	return l
}

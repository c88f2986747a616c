package protocol

import (
	"log/slog"
	"time"

	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// Version is a MOQ Lite protocol version as it appears on the wire.
type Version = wire.Version

// The MOQ Lite versions moqbridge speaks. Lite04 and Lite03 are chosen by
// ALPN / WebTransport protocol negotiation; Lite02 and Lite01 by the legacy
// SETUP exchange.
const (
	Lite01 = wire.Lite01
	Lite02 = wire.Lite02
	Lite03 = wire.Lite03
	Lite04 = wire.Lite04
)

// AllVersions lists every supported version in preference order.
var AllVersions = []Version{Lite04, Lite03, Lite02, Lite01}

// ErrorCode is a stream-reset or session-close code of MOQ Lite.
type ErrorCode = wire.ErrorCode

// Limits bound what one peer may make a session hold. A violation resets the
// offending stream (or, where the session itself is at stake, closes it) with
// the reference error code (wire.CodeBoundsExceeded for sizes and budgets)
// and one log line per second at most per session; other sessions are
// unaffected.
//
// Sizes a peer declares bound what it may send, never what is allocated up
// front: memory for a message or frame grows with the bytes that arrive, and
// what incomplete messages and frames hold counts against MaxSessionBuffer
// and MaxServerBuffer.
type Limits struct {
	// MaxMessageSize bounds one control message (SUBSCRIBE, ANNOUNCE, …).
	MaxMessageSize int
	// MaxFrameSize bounds one frame payload on a group stream.
	MaxFrameSize int
	// MaxGroupSize bounds the payload of one group received from a peer.
	// The latest group of a track stays cached whatever its size, so
	// without it one group stream sending frames for ever would hold
	// memory without bound; a group going over it is aborted and its
	// stream reset with CodeBoundsExceeded. Keep it above MaxFrameSize,
	// and raise it for publishers whose groups are long at a high bitrate
	// (a keyframe only every few minutes).
	MaxGroupSize int
	// MaxPathLength bounds a broadcast path or track name, in bytes.
	MaxPathLength int
	// MaxSubscriptions bounds the subscriptions a peer may hold open on this
	// session at once. Each one is a bidirectional stream, so MaxStreams
	// bounds them too.
	MaxSubscriptions int
	// MaxStreams bounds the streams a peer may have open at once, for
	// bidirectional and unidirectional streams separately: the QUIC and
	// WebTransport stream limits, and the streams a session serves at once
	// on any transport (a peer's further streams wait until one ends).
	MaxStreams int
	// MaxSessionBuffer bounds the bytes one session holds for messages and
	// frames it is still receiving (allocated as their bytes arrive,
	// released once they are complete or abandoned; complete frames count
	// against the track cache instead). A stream whose next bytes would go
	// over it is reset with CodeBoundsExceeded. Keep it above
	// MaxFrameSize, or frames of that size can never arrive.
	MaxSessionBuffer int
	// MaxServerBuffer bounds the same bytes summed over every session of a
	// Server, so that many peers together cannot exhaust the process; a
	// stream going over it is reset like one going over MaxSessionBuffer.
	// A session made with Dial has a budget of this size of its own.
	MaxServerBuffer int
	// MaxInflightGroups bounds the group streams one subscription has open
	// at once. Later groups wait for a stream (within the track cache: a
	// waiting group the cache evicts is skipped) rather than being reset:
	// the bound is on streams and memory, not on delivery.
	MaxInflightGroups int
	// MaxGroupLag is the latency a peer that cannot keep up may add: a
	// subscription that took no data for this long while data waited for
	// it loses every group but the newest, and one whose measured rate is
	// clearly below its track's keeps only the backlog it can send within
	// this long (see "Forwarding and overload" in the package
	// documentation). A peer that keeps up loses nothing, however long a
	// burst takes. A subscriber's max_latency (Lite03+) overrides it.
	MaxGroupLag time.Duration
}

// DefaultLimits are generous for media and small enough that a 2-core
// machine with a few GB of memory holds any peer, and several hostile peers
// together:
//
//   - MaxStreams 256: every open stream costs a goroutine and the
//     transport's stream state, some 8 KiB of stack and heap even when its
//     peer sends nothing more (TestMemoryAttack), so 2 × 256 streams keep
//     one session's worst case near 4 MiB, a quarter of what 2 × 1024 cost
//     (the reference relay measured 6.6× its RSS with 1024 instead of 100
//     streams, moq-dev/moq#3128). Honest peers need far fewer: a publisher
//     one unidirectional stream per group in flight (a few per track; a
//     burst beyond 256 waits for stream credit rather than being lost), a
//     subscriber one bidirectional stream per subscription.
//   - MaxSessionBuffer 64 MiB: four frames of the maximum size, far above
//     the frames an honest publisher has in flight at once.
//   - MaxServerBuffer 256 MiB: four sessions at their full budget, a
//     fraction of a few GB beside the track caches.
var DefaultLimits = Limits{
	MaxMessageSize:    1 << 20,
	MaxFrameSize:      16 << 20,
	MaxGroupSize:      64 << 20,
	MaxPathLength:     1024,
	MaxSubscriptions:  1024,
	MaxStreams:        256,
	MaxSessionBuffer:  64 << 20,
	MaxServerBuffer:   256 << 20,
	MaxInflightGroups: 16,
	MaxGroupLag:       time.Second,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxMessageSize > 0 {
		d.MaxMessageSize = l.MaxMessageSize
	}
	if l.MaxFrameSize > 0 {
		d.MaxFrameSize = l.MaxFrameSize
	}
	if l.MaxGroupSize > 0 {
		d.MaxGroupSize = l.MaxGroupSize
	}
	if l.MaxPathLength > 0 {
		d.MaxPathLength = l.MaxPathLength
	}
	if l.MaxSubscriptions > 0 {
		d.MaxSubscriptions = l.MaxSubscriptions
	}
	if l.MaxStreams > 0 {
		d.MaxStreams = l.MaxStreams
	}
	if l.MaxSessionBuffer > 0 {
		d.MaxSessionBuffer = l.MaxSessionBuffer
	}
	if l.MaxServerBuffer > 0 {
		d.MaxServerBuffer = l.MaxServerBuffer
	}
	if l.MaxInflightGroups > 0 {
		d.MaxInflightGroups = l.MaxInflightGroups
	}
	if l.MaxGroupLag > 0 {
		d.MaxGroupLag = l.MaxGroupLag
	}
	return d
}

// probeInterval is how often the shared probe clock checks whether a
// session's bandwidth estimate moved enough to be worth a PROBE message
// (see probeQuiet for how often one is sent). The reference checks every
// 100 ms per session; with hundreds of sessions per relay those wake-ups
// cost measurable CPU (docs/benchmarks.md), and a half-second is still well
// inside what an adaptive-bitrate player reacts on.
const probeInterval = 500 * time.Millisecond

func loggerOr(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

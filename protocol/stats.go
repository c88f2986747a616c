package protocol

import (
	"sync/atomic"

	"github.com/moqbridge/moqbridge/protocol/internal/transport"
)

// ServerStats are relay-wide counters, for metrics. Counts of sessions,
// bytes and frames are totals since the server started, over every session
// including the ones that ended; the Active fields and BroadcastsAnnounced
// are what holds now.
type ServerStats struct {
	// SessionsActive counts the sessions being served now, by transport.
	SessionsActive TransportCounts
	// SessionsAccepted counts the sessions that started (their MOQ setup
	// succeeded), by transport.
	SessionsAccepted TransportCounts
	// SessionsRefused counts connections refused by the server: a token
	// that does not authorize them (HTTP 401, or raw QUIC closed with
	// Unauthorized), a browser origin not allowed (HTTP 403), or a MOQ
	// setup that failed. Refusals by the admission budgets (MaxSessions,
	// MaxSessionsPerAddr, MaxPendingHandshakes) happen in the listener
	// before the server sees the connection and are not counted here.
	SessionsRefused uint64
	// StreamsActive counts the streams peers opened that are being served
	// now: subscriptions, announce interests and incoming group streams.
	StreamsActive uint64
	// SubscriptionsActive counts the subscriptions peers hold on the relay
	// now; UpstreamSubscriptionsActive those the relay holds on peers (one
	// per track a publisher feeds, however many subscribers it has).
	SubscriptionsActive, UpstreamSubscriptionsActive uint64
	// BytesReceived and BytesSent count the bytes of every session's
	// connection: QUIC packets (retransmissions included) for raw QUIC and
	// WebTransport, WebSocket message payload for the WebSocket fallback.
	BytesReceived, BytesSent uint64
	// FramesReceived and FramesSent count MOQ frames from publishers and
	// to subscribers.
	FramesReceived, FramesSent uint64
	// BroadcastsAnnounced counts the broadcasts live in the server's Origin
	// now, whoever published them (peers or in-process sources). It is
	// followed while Serve runs.
	BroadcastsAnnounced uint64
}

// TransportCounts are counts of sessions by transport.
type TransportCounts struct {
	QUIC, WebTransport, WebSocket uint64
}

// Total is the count over every transport.
func (c TransportCounts) Total() uint64 { return c.QUIC + c.WebTransport + c.WebSocket }

// serverCounters are the counters behind ServerStats. The atomics are
// updated once per session or broadcast, never per frame: the per-frame
// counts live in each session (sessionCounters) and are summed by Stats.
type serverCounters struct {
	accepted, active [numKinds]atomic.Int64
	refused          atomic.Uint64
	broadcasts       atomic.Int64

	// The totals of sessions that ended, guarded by Server.mu (the
	// session leaves Server.sessions and adds its totals here in one step,
	// so Stats never counts a session twice or not at all).
	endedBytesIn, endedBytesOut   uint64
	endedFramesIn, endedFramesOut uint64
}

// The transports in TransportCounts order.
const (
	kindQUIC = iota
	kindWebTransport
	kindWebSocket
	numKinds
)

func kindIndex(kind string) int {
	switch kind {
	case transport.KindWebTransport:
		return kindWebTransport
	case transport.KindWebSocket:
		return kindWebSocket
	}
	return kindQUIC
}

func countsOf(v *[numKinds]atomic.Int64) TransportCounts {
	get := func(i int) uint64 { return uint64(max(v[i].Load(), 0)) }
	return TransportCounts{QUIC: get(kindQUIC), WebTransport: get(kindWebTransport), WebSocket: get(kindWebSocket)}
}

// started counts a session that began, of transport kind.
func (c *serverCounters) started(kind string) {
	i := kindIndex(kind)
	c.accepted[i].Add(1)
	c.active[i].Add(1)
}

// ended moves a session that ended from the active counts into the
// totals. The caller holds Server.mu.
func (c *serverCounters) ended(sess *Session) {
	c.active[kindIndex(sess.Transport())].Add(-1)
	conn := sess.conn.Stats()
	st := sess.Stats()
	c.endedBytesIn += conn.BytesReceived
	c.endedBytesOut += conn.BytesSent
	c.endedFramesIn += st.FramesReceived
	c.endedFramesOut += st.FramesSent
}

// Stats returns the relay's counters. It costs a little per live session
// (their counters are read and summed), nothing on the forwarding path.
func (s *Server) Stats() ServerStats {
	c := &s.stats
	st := ServerStats{
		SessionsActive:      countsOf(&c.active),
		SessionsAccepted:    countsOf(&c.accepted),
		SessionsRefused:     c.refused.Load(),
		BroadcastsAnnounced: uint64(max(c.broadcasts.Load(), 0)),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.BytesReceived, st.BytesSent = c.endedBytesIn, c.endedBytesOut
	st.FramesReceived, st.FramesSent = c.endedFramesIn, c.endedFramesOut
	for sess := range s.sessions {
		conn := sess.conn.Stats()
		ss := sess.Stats()
		st.BytesReceived += conn.BytesReceived
		st.BytesSent += conn.BytesSent
		st.FramesReceived += ss.FramesReceived
		st.FramesSent += ss.FramesSent
		st.StreamsActive += uint64(len(sess.bidiSlots) + len(sess.uniSlots))
		sess.mu.Lock()
		st.SubscriptionsActive += uint64(len(sess.served))
		st.UpstreamSubscriptionsActive += uint64(len(sess.upstream))
		sess.mu.Unlock()
	}
	return st
}

// Package protocol implements MOQ Lite for moqbridge: sessions, client,
// server and relay. The data model they serve and fill (Origin, Broadcast,
// Track, Group, Frame) is package moq, which has no network code; protocol
// uses it through its exported API only.
//
// # Forwarding and overload
//
// A session answers each SUBSCRIBE by forwarding the track's groups, one
// unidirectional stream per group, opened in arrival order. Its groups are
// read from the moq.Origin as they arrive (moq.TrackReader.NextArrival), from the
// group that was the latest when the subscription came in, so the relay
// never holds a group back, never skips one that arrived after the
// subscription (a lower sequence arriving late included), and reads the
// upstream at network speed whatever one slow subscriber does. Only while
// every one of several subscribers of a track (and no in-process consumer)
// is behind, with more waiting for it than it takes in half the lag, so
// that the relay itself cannot carry the track at the publisher's rate,
// does it pause reading: QUIC flow control then slows the publisher to
// what the relay delivers, instead of every subscriber losing groups.
//
// A subscriber that takes data as fast as it is queued for it receives
// every group, whatever the size of a burst, as long as the track's cache
// holds it. Groups are dropped only on evidence that this subscriber
// cannot keep up, and then whole groups rather than the front of many:
//
//   - it stalled: something waited on it for Limits.MaxGroupLag (or the
//     subscriber's max_latency) without it taking any data. Every group but
//     the newest is reset.
//   - it is slower than its track: the rate at which it takes data,
//     measured only while data waited for it (never from an idle link or a
//     connection's first moments), is below the rate at which data was
//     queued for it over the last seconds, and its backlog would take
//     longer than the lag to send. The groups that could not be sent whole
//     within the lag are reset, oldest first, never the newest.
//   - a group still waiting for a stream was evicted from the track's
//     cache: waiting groups pin no more than the cache.
//
// The oldest unfinished group is sent first: by QUIC priorities on raw
// QUIC; on WebTransport and WebSocket, which have none, a later group
// writes only while the head is not writing. At most
// Limits.MaxInflightGroups groups have a stream at once per subscription;
// the rest wait for a slot, which bounds streams and memory, not delivery.
//
// Forwarding allocates nothing per frame in steady state. Frames received
// from the network live in pooled memory that a relay reuses once a group
// has left the cache and every forwarder has sent it, unless an in-process
// consumer also read the group (its frames then stay valid for as long as
// the consumer keeps them).
//
// # Clients and reconnection
//
// Dial makes one session. Connect makes a Client, which keeps a session to
// a relay: when the session ends it dials again with exponential backoff
// and jitter (Reconnect), serving the same publish moq.Origin and mirroring
// into the same consume moq.Origin, so broadcasts go on where they were. A
// session ending makes the broadcasts it fed end with its error, and an
// announced end lets the subscriptions finish by themselves, so a reader
// can tell a broadcast that was lost from one that finished.
// Session.WaitWanted tells a publisher whether the relay asks for its path
// at all (MOQ Lite has no message refusing an announcement).
//
// # The relay's HTTP side
//
// Beside the WebSocket fallback, a Server answers plain HTTP on its TCP
// port (ServerConfig.TCP) and over HTTP/3 on its UDP port, as the
// reference relay does; every response may be read cross-origin:
//
//   - GET /certificate.sha256: the certificate's SHA-256 in hex.
//   - GET /announced[/PREFIX]: the broadcasts live under PREFIX, one per
//     line relative to PREFIX, scoped by the jwt query parameter exactly
//     like the announcements of a session whose URL path is PREFIX (401
//     without a token that allows subscribing there).
//   - GET /fetch/BROADCAST/TRACK?group=latest|N&frame=chunked|N: one group
//     of a track, its frames concatenated (or frame N alone), streamed
//     as they come; it waits up to 30 s for a group that is not there
//     yet (504 then), 404 for what does not exist, scoped like a session
//     subscribing from BROADCAST.
//   - anything else: a landing page (404) with the URLs to connect to.
//
// ReloadCertificate swaps the certificate for new connections, and Stats
// reports relay-wide counters for metrics.
package protocol

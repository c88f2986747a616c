// Package protocol implements MOQ Lite for moqbridge: sessions, client,
// server and relay, and the in-process data model they all share.
//
// # Data model
//
// The model is the moq-lite one: Broadcast → Track → Group → Frame.
//
//   - A frame is an immutable byte slice, shared (never copied) by every
//     reader.
//   - A group is an ordered, append-only list of frames with a sequence
//     number, written through a GroupWriter and followed from frame 0 by any
//     number of GroupReaders.
//   - A track is a named stream of groups with a priority and a bounded
//     cache (CacheConfig). A TrackReader starts at the latest group, then
//     follows new groups in arrival order and never goes backwards in
//     sequence; a reader that falls behind skips to newer groups instead of
//     making the cache grow.
//   - A broadcast is a set of named tracks, optionally created on demand
//     (BroadcastWriter.HandleRequests) when backed by a remote peer.
//
// Everything meets in an Origin, a table of live broadcasts keyed by path
// that sources publish into and sinks, sessions and the relay consume from,
// with announcements of what appears and disappears.
//
// Every object has a writer half and a reader half so ownership is plain:
// one goroutine writes a track or group, any number read it, and a slow
// reader can neither block the writer or other readers nor pin memory
// beyond the cache budget. Waiting readers are woken through channels
// (never by polling), and the per-frame path allocates nothing in steady
// state. Each type's documentation says which goroutines may call what.
//
// # Forwarding and overload
//
// A session answers each SUBSCRIBE by forwarding the track's groups, one
// unidirectional stream per group, opened in group order. Its groups are
// read from the Origin as they arrive (TrackReader.NextArrival), so the
// relay never holds a group back, and the upstream is drained at network
// speed whatever the subscribers do. When a subscriber cannot take the
// track's rate, latency stays bounded by dropping, never by queueing:
//
//   - the oldest unfinished group is sent first: by QUIC priorities on raw
//     QUIC; on WebTransport and WebSocket, which have none, a later group
//     writes only while the head is not writing;
//   - a group still in flight Limits.MaxGroupLag (or the subscriber's
//     max_latency) after a newer group arrived is reset;
//   - a superseded group that, at the rate the subscriber has been taking
//     groups and behind the groups ahead of it, could not be sent whole
//     before that deadline is reset at once, before it takes bandwidth
//     from the group in flight, so a slow subscriber receives whole groups
//     rather than the first part of every group;
//   - at most Limits.MaxInflightGroups groups are in flight per
//     subscription.
//
// Forwarding allocates nothing per frame in steady state. Frames received
// from the network live in pooled memory that a relay reuses once a group
// has left the cache and every forwarder has sent it, unless an in-process
// consumer also read the group (its frames then stay valid for as long as
// the consumer keeps them).
package protocol

// Package moq is moqbridge's data model, the one every part meets in:
// Origin → Broadcast → Track → Group → Frame, with writer and reader halves,
// bounded caches and announcements. It has no network, TLS, HTTP or JWT
// code, so the media layer (sdk) and every source and sink build without
// the QUIC stack; package protocol carries the model over MOQ Lite
// sessions, and a relay is a protocol.Server serving an Origin.
//
// The model is the moq-lite one: Broadcast → Track → Group → Frame.
//
//   - A frame is an immutable byte slice, shared (never copied) by every
//     reader.
//   - A group is an ordered, append-only list of frames with a sequence
//     number, written through a GroupWriter and followed from frame 0 by any
//     number of GroupReaders.
//   - A track is a named stream of groups with a priority and a bounded
//     cache (CacheConfig). A TrackReader starts at the latest group
//     (Subscribe; players) or at the oldest cached one (SubscribeFrom with
//     FromOldest; recorders, pipelines), then follows new groups in
//     arrival order and never goes backwards in sequence; a reader that
//     falls behind skips to newer groups instead of making the cache grow.
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
// # For network receivers and forwarders
//
// A few methods exist for package protocol and anything like it: frames
// received from the network go straight into a group's pooled memory
// (GroupWriter.AllocFrame, GrowFrame, FinishFrame, WriteReceived,
// DoneReceiving); a forwarder marks its subscription
// (TrackReader.SetForwarding, SetBehind, Recycle) so the track paces its
// ingest on the forwarders (TrackWriter.PaceIngest); GroupReader.Size and
// Evicted tell it what waits. Applications do not need them.
package moq

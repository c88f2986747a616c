// Package moq is the MOQ remote source of moqbridge: it subscribes to
// broadcasts on a remote MOQ Lite relay (moql:// raw QUIC, https://
// WebTransport, ws:// and wss:// WebSocket, http:// development relays) and
// publishes them into the local Origin.
//
// # What it owns
//
//   - Source mirrors one remote broadcast at one local path. It implements
//     sdk.Source, and offers Publish, which puts the mirror straight into a
//     moq.Origin.
//   - PrefixSource mirrors every broadcast announced under a remote prefix,
//     each at a local path made from a template ("mirror/{path}"). It
//     implements sdk.Listener and offers Publish likewise.
//
// # MOQ to MOQ, unchanged
//
// The mirror works at the level of the data model (package moq), not of the
// media: a local broadcast whose tracks are created on demand
// (moq.BroadcastWriter.HandleRequests). When something local subscribes to a
// track, the same track is subscribed on the remote broadcast and its groups
// and frames are forwarded as they arrive, with their sequences, and the
// frames' bytes shared, never copied or decoded: the catalog, the hang
// legacy or cmaf containers and any track the catalog does not list pass
// through as they are. Only the remote tracks something local reads are
// fetched.
//
// Publish uses that local broadcast as it is. Run, the sdk.Source and
// sdk.Listener methods, receive an sdk.BroadcastWriter, which owns the
// catalog and the hang framing of what is written into it: they can only
// read the mirror back as media frames (sdk.BroadcastReader) and write them
// again, which rebuilds the catalog and the groups (video groups are still
// GOPs). Prefer Publish where an Origin is at hand.
//
// # Losses
//
// The connection is a protocol.Client: when the relay goes away or
// restarts it reconnects with Config.Backoff (exponential, jittered). The
// local broadcast outlives the loss: its tracks stay open, and when the
// remote broadcast is announced again each forwarded track subscribes
// again, from the remote's latest group, and goes on. Group sequences stay
// increasing: a remote publisher that restarted its sequences (from 0) is
// shifted to continue after the last group forwarded, so local readers,
// which never go backwards, keep reading. A remote track that ends while
// its broadcast stays live ends the local track (a new subscriber then
// fetches it again).
//
// Source keeps its local broadcast until its context ends, whether the
// remote broadcast comes back or not. PrefixSource ends a local broadcast
// when the remote one is ended by its relay (an announced end, while the
// session stays up for a second after it: a relay shutting down announces
// the end of its broadcasts too), and, after a loss of the connection,
// when it has not been announced again PrefixConfig.ReturnGrace after the
// reconnection.
//
// A first connection that fails is retried with the same backoff; errors no
// retry cures (a malformed URL, an untrusted certificate, a refused token, a
// relay that does not speak MOQ Lite) are returned as sdk.Permanent.
//
// This package does not own the relay side (package protocol) nor the
// pushing of local broadcasts to a relay (sinks/moq).
package moq

// Package bench owns moqbridge's end-to-end relay benchmarks: one publisher
// → relay → N subscribers on 127.0.0.1 over raw QUIC, under a paced media
// load and a saturating one, measuring delivered throughput, relay CPU per
// delivered byte, publish→receive latency, drops and relay allocations.
//
// The relay under test always runs in a child process so that its CPU time
// and allocations are its own: the harness re-executes the current binary
// with RoleEnv set, and that binary's TestMain hands control to RunRole
// before any test runs. Three relays are measured:
//
//   - RoleMOQRelay, the moqbridge MOQ Lite relay (protocol.Server);
//   - RoleQUICRelay, a bare quic-go relay that speaks no MOQ and only copies
//     every group stream of the publisher to every subscriber. It is the
//     ceiling the MOQ relay is compared against: same TLS, same QUIC
//     configuration, same overload policy, none of the MOQ work;
//   - the peer: a relay on github.com/okdaichi/gomoqt v0.9.0, the other Go
//     MOQ Lite implementation. It needs an older quic-go than this module,
//     so it is a module of its own (bench/gomoqt) whose binary the
//     benchmark builds (BuildGomoqt) and runs as the relay child and as a
//     second child with gomoqt's own publisher and subscribers, since gomoqt
//     speaks a dialect (ALPN "moq-00") moqbridge's peers do not.
//
// Publisher and subscribers live in the benchmark process (gomoqt's in
// their child), so the send time stamped into the first 8 bytes of every
// frame and the receive time come from the same clock. Results and the commands that produced them are in
// docs/benchmarks.md; the in-process data-model benchmarks live with the
// protocol package.
package bench

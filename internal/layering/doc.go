// Package layering holds the test that keeps moqbridge's layers apart; it
// has no other code. The rules, checked on the import graph that
// `go list -deps` reports for the packages' non-test code:
//
//   - An adapter (a package under sources/<kind> or sinks/<kind>) imports
//     no other adapter, directly or not: what a source and a sink of one
//     family share lives in internal/.
//   - The model (moq) imports no network code: no quic-go,
//     webtransport-go, WebSocket or JWT library, and none of net,
//     net/http or crypto/tls from the standard library.
//   - The media layer (sdk) imports no package of protocol.
//   - sdk and every source and sink build without quic-go,
//     webtransport-go, coder/websocket or a JWT library, except the MOQ
//     adapters (sources/moq, sinks/moq), for which MOQ over the network
//     is the protocol they adapt.
//
// A broken rule fails the test with the import chain that brings the
// forbidden package in.
package layering

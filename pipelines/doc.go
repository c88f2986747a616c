// Package pipelines runs moqbridge from a configuration: the YAML schema and
// its strict parsing (positions, did-you-mean, ${VAR} expansion), the
// registry of source and sink kinds, and the runner that supervises every
// pipeline (restarts with backoff, hot reload, graceful stop).
//
// A pipeline is only routing (see DESIGN.md): a source that publishes
// broadcasts into the runner's moq.Origin, or a From pattern that takes
// broadcasts already there, and the sinks that attach to every broadcast
// the pipeline yields. Sources and sinks never talk to each other; they
// meet in the Origin, so one slow or failing sink never stalls the source
// or another sink.
//
// Kinds are registered explicitly on a Registry (no init side effects):
// pipelines/builtin.Registry returns one holding every adapter moqbridge ships, and an SDK user
// adds their own kinds to it with AddSource and AddSink, then uses them
// from YAML exactly like the built-in ones.
//
// The package owns the config schema, validation, the registry, the
// supervision and reload of pipelines, and the shared RTMP listener the
// rtmp source kind routes through. It does not own the MOQ relay (package
// protocol), the media model (sdk, moq) or the adapters (sources/…,
// sinks/…), which it only wires.
package pipelines

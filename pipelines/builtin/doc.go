// Package builtin registers the adapters moqbridge ships as kinds of a
// pipelines.Registry: the sources fmp4 (a file, stdin or an HTTP stream),
// rtmp (the publishes of one application of the shared RTMP listener),
// rtmp_pull (a remote RTMP stream), rtp (an RTP sender an SDP describes),
// moq (a remote relay's broadcast, or every broadcast under a prefix) and
// demo (the embedded clip), and the sinks fmp4 (recording), rtmp
// (restreaming), rtp (sending RTP with an SDP) and moq (pushing to a
// remote relay).
//
// It owns each kind's options (their YAML keys, defaults and validation,
// which are the configuration reference) and the small adapters between
// those options and the constructors of sources/… and sinks/…; it does not
// own the adapters themselves, the config parsing or the runner (package
// pipelines).
//
// Registration is explicit: Registry returns a new registry holding every
// kind, Register adds them to an existing one (next to an SDK user's own
// kinds), and each kind is also available on its own (FMP4Source,
// RTMPSink, …) for a registry that wants only some.
package builtin

// Package e2e holds moqbridge's end-to-end media tests; it has no
// non-test code.
//
// The tests run whole pipelines: the fMP4 source (sources/fmp4) reads a
// clip into an sdk.BroadcastWriter, the broadcast travels through a
// protocol Origin (in-process, or a relay reached over raw QUIC), an
// sdk.BroadcastReader feeds the fMP4 recording sink (sinks/fmp4), and the
// recording is compared with the input:
//
//   - TestClipRoundTrip: every clip of sources/fmp4/testdata, in process.
//   - TestClipRoundTripOverNetwork: one clip through protocol.NewServer,
//     published and recorded by two protocol.Dial sessions.
//   - TestFFprobeRecordings and TestFFmpegLivePipe: ffprobe and ffmpeg
//     checks on the recordings, and a live ffmpeg pipe as the input. They
//     skip when ffmpeg or ffprobe is missing, unless
//     MOQBRIDGE_INTEROP=require, which makes a missing tool a failure.
//
// The pipelines are wired as the commands wire them: sdk.Publish runs the
// source into an Origin, sdk.Consume runs the sink on the broadcast it
// finds in an Origin (the same one in process; over the network each side
// has its own, joined by two protocol.Dial sessions through a relay). The
// source runs as fast as it reads, unsynchronised with the sink: the
// wiring subscribes the sink's tracks from their oldest cached group
// (moq.FromOldest), so the recording begins with the first keyframe even
// when the source is groups ahead by the time the sink has read the
// catalog; over the network the subscriptions carry start group 0, so the
// relay and the publisher serve them from their oldest cached group as
// well. One wait remains, not per frame: the source returns, and the
// broadcast ends, only once the sink has received every frame written
// (waitDelivered): in process, a track that has ended takes no new
// reader, and a sink may subscribe after the last frame.
package e2e

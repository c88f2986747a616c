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
// A subscription starts at the latest group, and the fast source can run
// ahead of a reader. The tests therefore run the source in lock step with
// the sink through exported API only: the source's Options.Progress
// callback, called after every box (fragmented input) or every sample
// (progressive input), blocks until the sink's Stats().Frames counts every
// frame written so far. The first group of each track is thus read before
// a second one exists, and no group can be evicted unread.
package e2e

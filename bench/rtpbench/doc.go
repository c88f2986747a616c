// Package rtpbench owns moqbridge's RTP benchmarks, the figures of the
// "RTP ingest and egress" section of docs/benchmarks.md:
//
//   - BenchmarkRTPRecord: one ffmpeg sends a pre-encoded clip (720p30
//     H.264 at 3 Mbit/s and Opus) over RTP in real time, as described by
//     the SDP it writes, to a UDP fan-out that forwards every datagram
//     (RTP and RTCP) to two receivers recording at the same time: (a)
//     moqbridge in this process, sources/rtp into an Origin and sinks/fmp4
//     out of it through the sdk wiring, and (b) `ffmpeg -protocol_whitelist
//     file,udp,rtp -i b.sdp -c copy -f mp4`, and a third at the same time,
//     (c) `moqbridge run -c` with an rtp → fmp4 pipeline in a child
//     process (built from the work tree, or BinaryEnv). It reports the CPU
//     seconds of each per minute of media and their ratios to ffmpeg's,
//     and checks that every recording holds every packet of the clip and
//     passes the checks of check-fmp4.sh.
//   - BenchmarkRTPSink: one broadcast (the same clip played in real time
//     by sources/fmp4) sent out by 1, then 20, sinks/rtp to a discard
//     receiver in a child process: the sinks' packets per CPU-second of
//     this process (its CPU in a window with the sinks less a window
//     without them) and CPU seconds per media minute per sink, every
//     datagram sent checked to have arrived.
//
// The fan-out runs as a child process (this test binary again, FanoutEnv
// set; RunFanout), so that the CPU time of this process while the sender
// runs is the in-process recorder's alone; the sending and the receiving
// ffmpeg and moqbridge run are child processes whose CPU time is what
// wait4 reports (from their start, so their start-up included). The clip is encoded
// once with ffmpeg into a cache directory (CacheEnv); the benchmarks skip
// without ffmpeg and ffprobe. Each is one fixed-length run whatever b.N
// is (-benchtime 1x), bounded in time, and stops every process it
// started. TestFanout, part of `go test ./...`, checks the fan-out
// without ffmpeg.
//
// Packets per second through the RTP source over loopback sockets are
// measured beside the source (sources/rtp, BenchmarkIngestSocket), as
// the ingest without sockets is (BenchmarkIngest).
package rtpbench

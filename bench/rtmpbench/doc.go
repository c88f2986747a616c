// Package rtmpbench owns moqbridge's RTMP ingest benchmarks, the figures
// of the "RTMP ingest" section of docs/benchmarks.md:
//
//   - BenchmarkRTMPRecord: one pre-encoded stream pushed by ffmpeg over
//     RTMP, recorded to fragmented MP4 by `moqbridge serve --rtmp` plus
//     `moqbridge record` and, in the same run and from the same input, by
//     `ffmpeg -listen 1 … -c copy -f mp4`; CPU seconds per media minute
//     and peak resident set of each, and both recordings checked (packet
//     counts equal to the input's, tools/check-fmp4.sh clean).
//   - BenchmarkRTMPLatency: an RTMP publisher (gortmplib) and a MOQ
//     subscriber in this process, `moqbridge serve --rtmp` in a child
//     process between them, all on 127.0.0.1: the time from each video
//     access unit leaving the publisher to the frame reaching the
//     subscriber, against the same writes over bare TCP and QUIC
//     loopback connections (the network of the two hops).
//   - BenchmarkRTMPPublishers: 100 RTMP publishers in this process, each a
//     real-time 720p stream, into one `moqbridge serve --rtmp` process:
//     its CPU and resident set at steady state, and every broadcast live.
//
// The benchmarks build the moqbridge binary from this module's work tree
// (go build; BinaryEnv names another) and run it as a child process, so
// what they measure is the command an operator runs; they need ffmpeg and
// ffprobe (they skip without), and generate their inputs with ffmpeg
// once, in a cache directory (CacheEnv). Each is one fixed-length run
// whatever b.N is (-benchtime 1x), bounded in time, and stops every
// process it started. CPU time and resident sets come from /proc (proc.go). TestHarnessSmoke runs as part of
// `go test ./...`: a few seconds of synthetic H.264 through an in-process
// relay, which checks the publisher, subscriber and frame matching the
// latency benchmark relies on, without ffmpeg.
package rtmpbench

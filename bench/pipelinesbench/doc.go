// Package pipelinesbench owns the benchmark of moqbridge's config
// pipelines, the figures of the "Config pipelines" section of
// docs/benchmarks.md.
//
// BenchmarkPipelines runs N pipelines in this process, as `moqbridge run`
// does (pipelines.Parse of a generated YAML file, the built-in kinds,
// pipelines.Runner with the built-in relay on loopback and metrics.Metrics
// as its Observer): each pipeline an fmp4 source looping a test clip in
// real time into the relay's Origin at bench/pNNN, and an fmp4 sink
// recording that broadcast to a temporary directory. After a warm-up it
// measures a fixed window: the process's CPU per minute of media, its peak
// resident set (VmHWM, reset at the window's start), its goroutines, and
// the p50 and p99 of moqbridge_frame_latency_seconds over the window, read
// from the metrics registry as a scraper reads it. N is 50, and 1 for
// scale.
//
// Like the other benchmarks of bench/, it is one fixed-length run whatever
// b.N is (-benchtime 1x), logs the code it measures (commit, files that
// differ from it) and the machine's load, and never fails on speed: it
// fails only when the pipelines do not run (no media recorded). The
// measurement itself is in this package's non-test code (Measure), which
// TestSmoke runs for a few seconds as part of `go test ./...`.
package pipelinesbench

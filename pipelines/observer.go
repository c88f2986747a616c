package pipelines

import (
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

// Observer is told what the runner's pipelines do, for metrics (package
// metrics implements it). Its methods are called from many goroutines and
// must not block. The stats functions stay valid until the matching
// ...Ended call and may be called at any time until then.
type Observer interface {
	// SourceUp reports whether a pipeline's source is running (a From
	// pipeline is up while it runs).
	SourceUp(pipeline string, up bool)
	// Restarted counts a restart of a part of a pipeline: "source" or
	// the sink's label ("sinks[0].fmp4").
	Restarted(pipeline, part string)
	// BroadcastStarted and BroadcastEnded bracket a broadcast a
	// pipeline's source publishes; stats reads its writer's counters by
	// track name.
	BroadcastStarted(pipeline, path string, stats func() map[string]sdk.TrackStats)
	BroadcastEnded(pipeline, path string)
	// SinkStarted and SinkEnded bracket one sink on one broadcast; stats
	// reads its reader's counters by track name, and extra, when the sink
	// has more (reconnects, dropped access units: a StatsReporter), its
	// own; extra is nil for a sink without.
	SinkStarted(pipeline, part, path string, stats func() map[string]sdk.TrackStats, extra func() SinkCounters)
	SinkEnded(pipeline, part, path string)
	// Latency records how long a frame took from its source's write to a
	// sink's read (sdk.BroadcastReader.SetLatencyObserver), for every
	// frame a sink reads that was written after it subscribed (one cached
	// before has no write time): it must be quick.
	Latency(pipeline, path, track string, d time.Duration)
}

// SinkCounters are what a sink counts beyond its reader's TrackStats.
type SinkCounters struct {
	Reconnects    uint64
	DroppedFrames uint64 // access units the sink dropped (a slow destination)
	DroppedGroups uint64
	Connected     bool
}

// StatsReporter is implemented by sinks that have SinkCounters.
type StatsReporter interface {
	Counters() SinkCounters
}

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) SourceUp(string, bool)                                             {}
func (NopObserver) Restarted(string, string)                                          {}
func (NopObserver) BroadcastStarted(string, string, func() map[string]sdk.TrackStats) {}
func (NopObserver) BroadcastEnded(string, string)                                     {}
func (NopObserver) SinkStarted(string, string, string, func() map[string]sdk.TrackStats, func() SinkCounters) {
}
func (NopObserver) SinkEnded(string, string, string)              {}
func (NopObserver) Latency(string, string, string, time.Duration) {}

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
	// track name, and source, when the source counts what it receives
	// (packets, losses: a SourceStatsReporter), its own; source is nil
	// for a source without. A source's counters start from zero each
	// time the supervisor makes it again: they cover one broadcast.
	BroadcastStarted(pipeline, path string, stats func() map[string]sdk.TrackStats, source func() SourceCounters)
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

// SourceCounters are what a source counts of its input beyond its
// writer's TrackStats: the packets it received and what became of them.
// A source fills those its input has (an RTP source all of them; one that
// reads a reliable stream, such as RTMP, none or a few) and leaves the
// others zero. They are totals since the source was made.
type SourceCounters struct {
	InputPackets uint64 // packets received (RTP packets)
	InputBytes   uint64 // their payload bytes
	// LostPackets are packets that never came: given up on once the
	// source stopped waiting for them.
	LostPackets uint64
	// DuplicatePackets came twice; LatePackets came after they were
	// given up on (and counted as lost).
	DuplicatePackets uint64
	LatePackets      uint64
	// InvalidPackets are datagrams the source could not use: not of the
	// format or the sender it expects.
	InvalidPackets uint64
	// DroppedFrames are access units the source received (some of) but
	// did not publish: damaged by a loss, or skipped while the video
	// waited for a keyframe.
	DroppedFrames uint64
	// SenderRestarts count senders that started over: a new RTP SSRC or
	// sequence.
	SenderRestarts uint64
}

// Add returns the sum of two readings, as for sdk.TrackStats: the totals
// of a source's runs.
func (c SourceCounters) Add(o SourceCounters) SourceCounters {
	return SourceCounters{
		InputPackets:     c.InputPackets + o.InputPackets,
		InputBytes:       c.InputBytes + o.InputBytes,
		LostPackets:      c.LostPackets + o.LostPackets,
		DuplicatePackets: c.DuplicatePackets + o.DuplicatePackets,
		LatePackets:      c.LatePackets + o.LatePackets,
		InvalidPackets:   c.InvalidPackets + o.InvalidPackets,
		DroppedFrames:    c.DroppedFrames + o.DroppedFrames,
		SenderRestarts:   c.SenderRestarts + o.SenderRestarts,
	}
}

// SourceStatsReporter is implemented by sources (the sdk.Source a
// SourceKind's NewSource makes) that have SourceCounters.
type SourceStatsReporter interface {
	SourceCounters() SourceCounters
}

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) SourceUp(string, bool)         {}
func (NopObserver) Restarted(string, string)      {}
func (NopObserver) BroadcastEnded(string, string) {}
func (NopObserver) BroadcastStarted(string, string, func() map[string]sdk.TrackStats, func() SourceCounters) {
}
func (NopObserver) SinkStarted(string, string, string, func() map[string]sdk.TrackStats, func() SinkCounters) {
}
func (NopObserver) SinkEnded(string, string, string)              {}
func (NopObserver) Latency(string, string, string, time.Duration) {}

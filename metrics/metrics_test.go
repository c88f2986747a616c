package metrics

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

const (
	sourceFrames  = "moqbridge_source_frames_total"
	sourceBytes   = "moqbridge_source_bytes_total"
	sourceGroups  = "moqbridge_source_groups_total"
	sourceSkipped = "moqbridge_source_skipped_groups_total"
	sourceDropped = "moqbridge_source_dropped_frames_total"
)

// TestSourceCounters follows a pipeline's broadcasts through the Observer
// and checks the exposed values after every step: counters read at scrape
// time, a broadcast's last values kept once it ends, a new broadcast at the
// same path adding to them, a track that leaves the writer's Stats keeping
// its values, and a new track under an old name adding to the old one's.
func TestSourceCounters(t *testing.T) {
	m := New()
	h := Admin(m, nil)
	src := newFakeStats(map[string]sdk.TrackStats{
		"video": {Groups: 2, Frames: 60, Bytes: 60000, Dropped: 3},
		"audio": {Groups: 1, Frames: 50, Bytes: 5000},
	})
	m.SourceUp("cam", true)
	m.BroadcastStarted("cam", "live/cam", src.Stats, nil)
	expect(t, testkit.ScrapeMetrics(t, h), map[string]float64{series(nameRestarts, "pipeline", "cam", "part", "source"): 0}, nameRestarts)

	all := []string{sourceFrames, sourceBytes, sourceGroups, sourceSkipped, sourceDropped, nameActiveBroadcasts, nameSourceUp}
	want := func(vf, vb, vg, vd, af, ab, ag float64, active float64, up float64) map[string]float64 {
		v := func(track string) []string { return []string{"pipeline", "cam", "path", "live/cam", "track", track} }
		return map[string]float64{
			series(sourceFrames, v("video")...):             vf,
			series(sourceBytes, v("video")...):              vb,
			series(sourceGroups, v("video")...):             vg,
			series(sourceSkipped, v("video")...):            0,
			series(sourceDropped, v("video")...):            vd,
			series(sourceFrames, v("audio")...):             af,
			series(sourceBytes, v("audio")...):              ab,
			series(sourceGroups, v("audio")...):             ag,
			series(sourceSkipped, v("audio")...):            0,
			series(sourceDropped, v("audio")...):            0,
			series(nameActiveBroadcasts, "pipeline", "cam"): active,
			series(nameSourceUp, "pipeline", "cam"):         up,
		}
	}
	expect(t, testkit.ScrapeMetrics(t, h), want(60, 60000, 2, 3, 50, 5000, 1, 1, 1), all...)

	// The counters move on; the writer then closes, which empties its
	// Stats: the last values read stay.
	src.set(map[string]sdk.TrackStats{
		"video": {Groups: 3, Frames: 90, Bytes: 90000, Dropped: 3},
		"audio": {Groups: 2, Frames: 100, Bytes: 10000},
	})
	expect(t, testkit.ScrapeMetrics(t, h), want(90, 90000, 3, 3, 100, 10000, 2, 1, 1), all...)
	src.set(map[string]sdk.TrackStats{"audio": {Groups: 2, Frames: 101, Bytes: 10100}})
	m.SourceUp("cam", false)
	m.BroadcastEnded("cam", "live/cam")
	calls := src.callCount()
	expect(t, testkit.ScrapeMetrics(t, h), want(90, 90000, 3, 3, 101, 10100, 2, 0, 0), all...)
	if src.callCount() != calls {
		t.Error("stats read after BroadcastEnded")
	}

	// The source restarts at the same path: its new broadcast counts from
	// zero and adds to the totals.
	m.Restarted("cam", "source")
	m.SourceUp("cam", true)
	src2 := newFakeStats(map[string]sdk.TrackStats{"video": {Groups: 1, Frames: 10, Bytes: 1000}})
	m.BroadcastStarted("cam", "live/cam", src2.Stats, nil)
	expect(t, testkit.ScrapeMetrics(t, h), want(100, 91000, 4, 3, 101, 10100, 2, 1, 1), all...)

	// A new video track under the same name (a new SPS): its counters
	// start again, and add to what the closed one counted.
	src2.set(map[string]sdk.TrackStats{"video": {Groups: 1, Frames: 5, Bytes: 500}})
	expect(t, testkit.ScrapeMetrics(t, h), want(105, 91500, 5, 3, 101, 10100, 2, 1, 1), all...)
	m.BroadcastEnded("cam", "live/cam")
	expect(t, testkit.ScrapeMetrics(t, h), want(105, 91500, 5, 3, 101, 10100, 2, 0, 1), all...)
	expect(t, testkit.ScrapeMetrics(t, h), map[string]float64{series(nameRestarts, "pipeline", "cam", "part", "source"): 1}, nameRestarts)

	// Ending what is not running changes nothing.
	m.BroadcastEnded("cam", "live/cam")
	m.BroadcastEnded("other", "x")
	expect(t, testkit.ScrapeMetrics(t, h), want(105, 91500, 5, 3, 101, 10100, 2, 0, 1), all...)
}

// TestSinkCounters checks a sink's counters: per track from its reader,
// per sink from its own counters plus the reader's dropped frames, the
// active sinks, and restarts folded into the totals.
func TestSinkCounters(t *testing.T) {
	m := New()
	h := Admin(m, nil)
	const sink = "sinks[1].moq"
	reader := newFakeStats(map[string]sdk.TrackStats{
		"video": {Groups: 4, Frames: 120, Bytes: 120000, Skipped: 2, Truncated: 1, Invalid: 1, Dropped: 1},
	})
	var mu sync.Mutex
	extra := pipelines.SinkCounters{Reconnects: 2, DroppedFrames: 7, DroppedGroups: 1, Connected: true}
	counters := func() pipelines.SinkCounters {
		mu.Lock()
		defer mu.Unlock()
		return extra
	}
	m.SinkStarted("obs", sink, "live/a", reader.Stats, counters)
	m.SinkStarted("obs", "sinks[0].fmp4", "live/a", nil, nil)

	perTrack := []string{"moqbridge_sink_frames_total", "moqbridge_sink_bytes_total", "moqbridge_sink_groups_total",
		"moqbridge_sink_skipped_groups_total", "moqbridge_sink_truncated_groups_total", "moqbridge_sink_invalid_frames_total"}
	perSink := []string{"moqbridge_sink_dropped_frames_total", "moqbridge_sink_dropped_groups_total", "moqbridge_sink_reconnects_total"}
	tl := []string{"pipeline", "obs", "sink", sink, "path", "live/a", "track", "video"}
	sl := []string{"pipeline", "obs", "sink", sink, "path", "live/a"}
	fl := []string{"pipeline", "obs", "sink", "sinks[0].fmp4", "path", "live/a"}
	got := testkit.ScrapeMetrics(t, h)
	expect(t, got, map[string]float64{
		series(perTrack[0], tl...): 120,
		series(perTrack[1], tl...): 120000,
		series(perTrack[2], tl...): 4,
		series(perTrack[3], tl...): 2,
		series(perTrack[4], tl...): 1,
		series(perTrack[5], tl...): 1,
	}, perTrack...)
	expect(t, got, map[string]float64{
		series(perSink[0], sl...): 8, // 7 of the sink's, 1 of the reader's
		series(perSink[1], sl...): 1,
		series(perSink[2], sl...): 2,
		series(perSink[0], fl...): 0,
		series(perSink[1], fl...): 0,
		series(perSink[2], fl...): 0,
	}, perSink...)
	expect(t, got, map[string]float64{
		series(nameActiveSinks, "pipeline", "obs", "sink", sink):            1,
		series(nameActiveSinks, "pipeline", "obs", "sink", "sinks[0].fmp4"): 1,
	}, nameActiveSinks)
	// Only the sink with counters of its own has a connection.
	expect(t, got, map[string]float64{series(nameSinkConnected, sl...): 1}, nameSinkConnected)

	// The sink fails and restarts: a new instance counts from zero.
	mu.Lock()
	extra.Reconnects = 3
	mu.Unlock()
	m.SinkEnded("obs", sink, "live/a")
	m.Restarted("obs", sink)
	got = testkit.ScrapeMetrics(t, h)
	expect(t, got, map[string]float64{
		series(nameActiveSinks, "pipeline", "obs", "sink", sink):            0,
		series(nameActiveSinks, "pipeline", "obs", "sink", "sinks[0].fmp4"): 1,
	}, nameActiveSinks)
	expect(t, got, map[string]float64{series(perSink[2], sl...): 3, series(perSink[2], fl...): 0}, perSink[2])
	expect(t, got, nil, nameSinkConnected)

	reader2 := newFakeStats(map[string]sdk.TrackStats{"video": {Groups: 1, Frames: 30, Bytes: 30000}})
	m.SinkStarted("obs", sink, "live/a", reader2.Stats, func() pipelines.SinkCounters { return pipelines.SinkCounters{Reconnects: 1} })
	got = testkit.ScrapeMetrics(t, h)
	expect(t, got, map[string]float64{series(perTrack[0], tl...): 150}, perTrack[0])
	expect(t, got, map[string]float64{series(nameSinkConnected, sl...): 0}, nameSinkConnected)
	expect(t, got, map[string]float64{
		series(perSink[0], sl...): 8,
		series(perSink[1], sl...): 1,
		series(perSink[2], sl...): 4,
		series(perSink[0], fl...): 0,
		series(perSink[1], fl...): 0,
		series(perSink[2], fl...): 0,
	}, perSink...)
	expect(t, got, map[string]float64{
		series(nameRestarts, "pipeline", "obs", "part", sink):            1,
		series(nameRestarts, "pipeline", "obs", "part", "sinks[0].fmp4"): 0,
	}, nameRestarts)
	m.SinkEnded("obs", sink, "live/a")
	m.SinkEnded("obs", "sinks[0].fmp4", "live/a")
}

// TestRelay checks the relay's metrics as SetRelay's function reports
// them, read at every scrape.
func TestRelay(t *testing.T) {
	m := New()
	h := Admin(m, nil)
	names := []string{nameRelaySessions, nameRelayAccepted, nameRelayRefused, nameRelayStreams, nameRelaySubscriptions,
		nameRelayUpstream, nameRelayBytesIn, nameRelayBytesOut, nameRelayFramesIn, nameRelayFramesOut, nameRelayBroadcasts}
	expect(t, testkit.ScrapeMetrics(t, h), nil, names...) // no relay, no relay metrics
	stats := protocol.ServerStats{
		SessionsActive:      protocol.TransportCounts{QUIC: 2, WebTransport: 1, WebSocket: 0},
		SessionsAccepted:    protocol.TransportCounts{QUIC: 5, WebTransport: 3, WebSocket: 1},
		SessionsRefused:     4,
		StreamsActive:       9,
		SubscriptionsActive: 6, UpstreamSubscriptionsActive: 2,
		BytesReceived: 1 << 20, BytesSent: 3 << 20,
		FramesReceived: 1000, FramesSent: 2500,
		BroadcastsAnnounced: 3,
	}
	m.SetRelay(func() protocol.ServerStats { return stats })
	expect(t, testkit.ScrapeMetrics(t, h), map[string]float64{
		series(nameRelaySessions, "transport", "quic"):         2,
		series(nameRelaySessions, "transport", "webtransport"): 1,
		series(nameRelaySessions, "transport", "websocket"):    0,
		series(nameRelayAccepted, "transport", "quic"):         5,
		series(nameRelayAccepted, "transport", "webtransport"): 3,
		series(nameRelayAccepted, "transport", "websocket"):    1,
		series(nameRelayRefused):                               4,
		series(nameRelayStreams):                               9,
		series(nameRelaySubscriptions):                         6,
		series(nameRelayUpstream):                              2,
		series(nameRelayBytesIn):                               1 << 20,
		series(nameRelayBytesOut):                              3 << 20,
		series(nameRelayFramesIn):                              1000,
		series(nameRelayFramesOut):                             2500,
		series(nameRelayBroadcasts):                            3,
	}, names...)
}

// TestLatencyHistogram checks the buckets, count and sum of the latency
// histogram, by pipeline and track over paths.
func TestLatencyHistogram(t *testing.T) {
	m := New()
	h := Admin(m, nil)
	m.Latency("p", "live/a", "video", 300*time.Microsecond)
	m.Latency("p", "live/b", "video", 2*time.Millisecond)
	m.Latency("p", "live/a", "video", 20*time.Second) // above the last bucket
	m.Latency("p", "live/a", "audio", -time.Millisecond)
	got := testkit.ScrapeMetrics(t, h)
	want := make(map[string]float64)
	bounds := []string{"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
		"0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
	for i, le := range bounds {
		video := 0.0
		if i >= 2 { // 0.3 ms
			video++
		}
		if i >= 4 { // 2 ms
			video++
		}
		if le == "+Inf" {
			video++
		}
		want[series(nameLatency+"_bucket", "pipeline", "p", "track", "video", "le", le)] = video
		want[series(nameLatency+"_bucket", "pipeline", "p", "track", "audio", "le", le)] = 1 // clamped to 0
	}
	want[series(nameLatency+"_count", "pipeline", "p", "track", "video")] = 3
	want[series(nameLatency+"_sum", "pipeline", "p", "track", "video")] = 0.0003 + 0.002 + 20
	want[series(nameLatency+"_count", "pipeline", "p", "track", "audio")] = 1
	want[series(nameLatency+"_sum", "pipeline", "p", "track", "audio")] = 0
	expect(t, got, want, nameLatency+"_bucket", nameLatency+"_count", nameLatency+"_sum")
}

func TestLatencyAllocs(t *testing.T) {
	m := New()
	m.Latency("p", "live/a", "video", time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() { m.Latency("p", "live/a", "video", time.Millisecond) }); n != 0 {
		t.Errorf("Latency: %v allocations, want 0", n)
	}
}

// TestForgetPipeline drops every series of a removed pipeline and keeps
// the others'.
func TestForgetPipeline(t *testing.T) {
	m := New()
	h := Admin(m, nil)
	for _, p := range []string{"old", "kept"} {
		m.SourceUp(p, true)
		m.Restarted(p, "source")
		m.Latency(p, "x", "video", time.Millisecond)
		src := newFakeStats(map[string]sdk.TrackStats{"video": {Frames: 1}})
		m.BroadcastStarted(p, "x", src.Stats, nil)
		m.BroadcastEnded(p, "x")
		m.SinkStarted(p, "sinks[0].fmp4", "x", src.Stats, nil)
		m.SinkEnded(p, "sinks[0].fmp4", "x")
	}
	m.ForgetPipeline("old")
	for k := range testkit.ScrapeMetrics(t, h) {
		if strings.Contains(k, `pipeline="old"`) {
			t.Errorf("after ForgetPipeline: %s", k)
		}
	}
	got := testkit.ScrapeMetrics(t, h)
	for _, k := range []string{
		series(nameSourceUp, "pipeline", "kept"),
		series(nameRestarts, "pipeline", "kept", "part", "source"),
		series(nameLatency+"_count", "pipeline", "kept", "track", "video"),
		series(sourceFrames, "pipeline", "kept", "path", "x", "track", "video"),
		series("moqbridge_sink_frames_total", "pipeline", "kept", "sink", "sinks[0].fmp4", "path", "x", "track", "video"),
	} {
		if got[k] != 1 {
			t.Errorf("%s = %v, want 1", k, got[k])
		}
	}
	// The pipeline comes back: its latency histogram is made anew.
	m.Latency("old", "x", "video", time.Millisecond)
	if got := testkit.ScrapeMetrics(t, h)[series(nameLatency+"_count", "pipeline", "old", "track", "video")]; got != 1 {
		t.Errorf("latency count of a pipeline forgotten and back: %v, want 1", got)
	}
}

// TestCountersNeverGoBack scrapes while broadcasts and sinks start, count
// and end on other goroutines: no counter ever reads lower than it did.
func TestCountersNeverGoBack(t *testing.T) {
	m := New()
	h := Admin(m, nil)
	const rounds = 200
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			path := fmt.Sprintf("live/%d", w)
			for i := range rounds {
				f := newFakeStats(map[string]sdk.TrackStats{"v": {Frames: 1, Bytes: 10}})
				m.BroadcastStarted("p", path, f.Stats, nil)
				m.SinkStarted("p", "sinks[0].fmp4", path, f.Stats, func() pipelines.SinkCounters {
					return pipelines.SinkCounters{Reconnects: uint64(i % 3)}
				})
				f.set(map[string]sdk.TrackStats{"v": {Frames: 2, Bytes: 20}})
				m.SinkEnded("p", "sinks[0].fmp4", path)
				m.BroadcastEnded("p", path)
			}
		})
	}
	last := make(map[string]float64)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		for k, v := range family(testkit.ScrapeMetrics(t, h), sourceFrames, "moqbridge_sink_frames_total", "moqbridge_sink_bytes_total", "moqbridge_sink_reconnects_total") {
			if v < last[k] {
				t.Fatalf("%s went from %v to %v", k, last[k], v)
			}
			last[k] = v
		}
	}
	for w := range 2 {
		k := series(sourceFrames, "pipeline", "p", "path", fmt.Sprintf("live/%d", w), "track", "v")
		if last[k] != 2*rounds {
			t.Errorf("%s = %v at the end, want %d", k, last[k], 2*rounds)
		}
	}
}

func TestSourcesUp(t *testing.T) {
	m := New()
	if err := m.SourcesUp(); err != nil {
		t.Errorf("no pipeline: %v", err)
	}
	m.SourceUp("b", false)
	m.SourceUp("a", false)
	m.SourceUp("c", true)
	err := m.SourcesUp()
	if err == nil || err.Error() != "source not up: a, b" {
		t.Errorf("SourcesUp = %v", err)
	}
	m.SourceUp("a", true)
	m.ForgetPipeline("b")
	if err := m.SourcesUp(); err != nil {
		t.Errorf("all up: %v", err)
	}
}

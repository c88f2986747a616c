package metrics

import (
	"maps"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// collector reads the counters of the pipelines and the relay at scrape
// time.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.m.descs {
		ch <- d
	}
}

// pipelineSnapshot is a pipeline's state copied under Metrics.mu, so the
// stats functions are called without holding it.
type pipelineSnapshot struct {
	name        string
	up, upKnown bool
	broadcasts  []*liveBroadcast
	sinks       []*liveSink
	sinkLabels  []string
	source      map[pathTrack]sdk.TrackStats
	sourceInput map[string]pipelines.SourceCounters
	sink        map[sinkPathTrack]sdk.TrackStats
	sinkExtra   map[sinkPath]sinkCounts
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	// The totals and the list of live broadcasts and sinks are copied in
	// one step: a broadcast that ends meanwhile is either still listed
	// (and reports its final values, see liveBroadcast) or already in the
	// totals, never both nor neither.
	m.mu.Lock()
	snaps := make([]pipelineSnapshot, 0, len(m.pipelines))
	for name, p := range m.pipelines {
		s := pipelineSnapshot{
			name: name, up: p.up, upKnown: p.upKnown,
			broadcasts:  append([]*liveBroadcast(nil), p.broadcasts...),
			sinks:       append([]*liveSink(nil), p.sinks...),
			source:      maps.Clone(p.sourceTotals),
			sourceInput: maps.Clone(p.sourceInput),
			sink:        maps.Clone(p.sinkTotals),
			sinkExtra:   maps.Clone(p.sinkExtra),
		}
		for l := range p.sinkLabels {
			s.sinkLabels = append(s.sinkLabels, l)
		}
		snaps = append(snaps, s)
	}
	relay := m.relay
	m.mu.Unlock()

	for _, s := range snaps {
		c.collectPipeline(ch, s)
	}
	if relay != nil {
		c.collectRelay(ch, relay())
	}
}

func (c collector) collectPipeline(ch chan<- prometheus.Metric, s pipelineSnapshot) {
	if s.upKnown {
		c.gauge(ch, nameSourceUp, boolValue(s.up), s.name)
	}
	c.gauge(ch, nameActiveBroadcasts, float64(len(s.broadcasts)), s.name)
	active := make(map[string]int, len(s.sinkLabels))
	for _, l := range s.sinkLabels {
		active[l] = 0
	}

	for _, b := range s.broadcasts {
		tracks, input, hasInput := b.read(false)
		for track, st := range tracks {
			k := pathTrack{b.path, track}
			s.source[k] = s.source[k].Add(st)
		}
		if hasInput {
			s.sourceInput[b.path] = s.sourceInput[b.path].Add(input)
		}
	}
	for path, in := range s.sourceInput {
		c.counter(ch, nameSourcePackets, in.InputPackets, s.name, path)
		c.counter(ch, nameSourceInputBytes, in.InputBytes, s.name, path)
		c.counter(ch, nameSourceLost, in.LostPackets, s.name, path)
		c.counter(ch, nameSourceDuplicates, in.DuplicatePackets, s.name, path)
		c.counter(ch, nameSourceLate, in.LatePackets, s.name, path)
		c.counter(ch, nameSourceInvalid, in.InvalidPackets, s.name, path)
		c.counter(ch, nameSourceInputDropped, in.DroppedFrames, s.name, path)
		c.counter(ch, nameSourceRestarts, in.SenderRestarts, s.name, path)
	}
	for k, st := range s.source {
		labels := []string{s.name, k.path, k.track}
		c.counter(ch, nameSourceFrames, st.Frames, labels...)
		c.counter(ch, nameSourceBytes, st.Bytes, labels...)
		c.counter(ch, nameSourceGroups, st.Groups, labels...)
		c.counter(ch, nameSourceSkipped, st.Skipped, labels...)
		c.counter(ch, nameSourceDropped, st.Dropped, labels...)
	}

	connected := make(map[sinkPath]bool)
	for _, sk := range s.sinks {
		active[sk.sink]++
		tracks, extra := sk.read(false)
		for track, st := range tracks {
			k := sinkPathTrack{sk.sink, sk.path, track}
			s.sink[k] = s.sink[k].Add(st)
		}
		k := sinkPath{sk.sink, sk.path}
		s.sinkExtra[k] = s.sinkExtra[k].add(extra)
		if has, up := sk.connection(); has {
			// Two instances at once (one ending, its restart starting)
			// count as connected if either is.
			connected[k] = connected[k] || up
		}
	}
	for k, up := range connected {
		c.gauge(ch, nameSinkConnected, boolValue(up), s.name, k.sink, k.path)
	}
	for k, st := range s.sink {
		labels := []string{s.name, k.sink, k.path, k.track}
		c.counter(ch, nameSinkFrames, st.Frames, labels...)
		c.counter(ch, nameSinkBytes, st.Bytes, labels...)
		c.counter(ch, nameSinkGroups, st.Groups, labels...)
		c.counter(ch, nameSinkSkipped, st.Skipped, labels...)
		c.counter(ch, nameSinkTruncated, st.Truncated, labels...)
		c.counter(ch, nameSinkInvalid, st.Invalid, labels...)
	}
	for k, e := range s.sinkExtra {
		labels := []string{s.name, k.sink, k.path}
		c.counter(ch, nameSinkDropped, e.droppedFrames, labels...)
		c.counter(ch, nameSinkDroppedGroups, e.droppedGroups, labels...)
		c.counter(ch, nameSinkReconnects, e.reconnects, labels...)
	}
	for sink, n := range active {
		c.gauge(ch, nameActiveSinks, float64(n), s.name, sink)
	}
}

func (c collector) collectRelay(ch chan<- prometheus.Metric, st protocol.ServerStats) {
	for transport, n := range byTransport(st.SessionsActive) {
		c.gauge(ch, nameRelaySessions, float64(n), transport)
	}
	for transport, n := range byTransport(st.SessionsAccepted) {
		c.counter(ch, nameRelayAccepted, n, transport)
	}
	c.counter(ch, nameRelayRefused, st.SessionsRefused)
	c.gauge(ch, nameRelayStreams, float64(st.StreamsActive))
	c.gauge(ch, nameRelaySubscriptions, float64(st.SubscriptionsActive))
	c.gauge(ch, nameRelayUpstream, float64(st.UpstreamSubscriptionsActive))
	c.counter(ch, nameRelayBytesIn, st.BytesReceived)
	c.counter(ch, nameRelayBytesOut, st.BytesSent)
	c.counter(ch, nameRelayFramesIn, st.FramesReceived)
	c.counter(ch, nameRelayFramesOut, st.FramesSent)
	c.gauge(ch, nameRelayBroadcasts, float64(st.BroadcastsAnnounced))
}

// byTransport are a relay's session counts by the transport label values.
func byTransport(n protocol.TransportCounts) map[string]uint64 {
	return map[string]uint64{"quic": n.QUIC, "webtransport": n.WebTransport, "websocket": n.WebSocket}
}

func (c collector) counter(ch chan<- prometheus.Metric, name string, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(c.m.descs[name], prometheus.CounterValue, float64(v), labels...)
}

func (c collector) gauge(ch chan<- prometheus.Metric, name string, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(c.m.descs[name], prometheus.GaugeValue, v, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

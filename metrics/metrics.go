// Package metrics exposes what moqbridge does to Prometheus and serves the
// admin endpoints (/metrics, /healthz, /readyz).
//
// Metrics implements pipelines.Observer: the runner tells it which
// broadcasts and sinks run, and hands it functions that read their
// counters (sdk.TrackStats, pipelines.SinkCounters, and a source's own
// pipelines.SourceCounters: an RTP source's packets and losses). Those are read when
// Prometheus scrapes, by a custom collector, so counting costs nothing per
// frame here; the one per-frame call is Latency, which observes a
// histogram without allocating. The relay's own counters come the same way
// through SetRelay.
//
// Counters of broadcasts and sinks that end do not go backwards: when one
// ends, its last values are folded into a total per label set, which later
// instances with the same labels (a sink restarted, a broadcast published
// again at the same path) add to. Series therefore live as long as the
// process, or until ForgetPipeline drops a removed pipeline's.
//
// The package owns the metric names and their reference, docs/metrics.md,
// which a test checks against the registry. It does not own the counting
// itself (sdk, moq, protocol and the adapters count; pipelines reports).
package metrics

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// Metrics holds moqbridge's metrics in a registry of its own, with the Go
// runtime and process collectors. It implements pipelines.Observer; its
// methods are safe for concurrent use and never block on I/O.
type Metrics struct {
	reg      *prometheus.Registry
	descs    map[string]*prometheus.Desc // by name, for the collector
	restarts *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	mu        sync.Mutex
	pipelines map[string]*pipelineState
	relay     func() protocol.ServerStats

	// The latency histograms by label values, so that Latency, called for
	// every frame, neither allocates nor goes through the vector's lookup.
	latMu        sync.RWMutex
	latObservers map[latencyKey]prometheus.Observer
}

var _ pipelines.Observer = (*Metrics)(nil)

type latencyKey struct{ pipeline, track string }

// pipelineState is what Metrics knows of one pipeline. Guarded by
// Metrics.mu.
type pipelineState struct {
	up, upKnown bool
	broadcasts  []*liveBroadcast
	sinks       []*liveSink
	sinkLabels  map[string]bool // every sink label seen, for active_sinks 0

	// The last values of the broadcasts and sinks that ended.
	sourceTotals map[pathTrack]sdk.TrackStats
	sourceInput  map[string]pipelines.SourceCounters // by path, for sources that have them
	sinkTotals   map[sinkPathTrack]sdk.TrackStats
	sinkExtra    map[sinkPath]sinkCounts
}

type pathTrack struct{ path, track string }

type sinkPath struct{ sink, path string }

type sinkPathTrack struct{ sink, path, track string }

// sinkCounts are a sink's counters not kept per track.
type sinkCounts struct {
	droppedFrames, droppedGroups, reconnects uint64
}

func (a sinkCounts) add(b sinkCounts) sinkCounts {
	return sinkCounts{a.droppedFrames + b.droppedFrames, a.droppedGroups + b.droppedGroups, a.reconnects + b.reconnects}
}

// sourceWentDown reports whether a counter of b is below a's: a reading
// that started over.
func sourceWentDown(a, b pipelines.SourceCounters) bool {
	return b.InputPackets < a.InputPackets || b.InputBytes < a.InputBytes || b.LostPackets < a.LostPackets ||
		b.DuplicatePackets < a.DuplicatePackets || b.LatePackets < a.LatePackets || b.InvalidPackets < a.InvalidPackets ||
		b.DroppedFrames < a.DroppedFrames || b.SenderRestarts < a.SenderRestarts
}

// trackCounters turns successive readings of per-track counters into
// totals that never go backwards: a track missing from a reading keeps its
// last values (a BroadcastWriter's Stats leaves out the tracks closed, and
// all of them once the writer is closed), and a track whose counters went
// down (a new track under a closed one's name) adds to what the old one
// counted.
type trackCounters struct {
	base, last map[string]sdk.TrackStats
}

func (c *trackCounters) update(cur map[string]sdk.TrackStats) {
	if c.last == nil {
		c.base, c.last = make(map[string]sdk.TrackStats), make(map[string]sdk.TrackStats)
	}
	for track, st := range cur {
		if prev, ok := c.last[track]; ok && wentDown(prev, st) {
			c.base[track] = c.base[track].Add(prev)
		}
		c.last[track] = st
	}
}

// totals returns the counters of every track seen, in a new map.
func (c *trackCounters) totals() map[string]sdk.TrackStats {
	out := make(map[string]sdk.TrackStats, len(c.last))
	for track, st := range c.last {
		out[track] = c.base[track].Add(st)
	}
	return out
}

func wentDown(a, b sdk.TrackStats) bool {
	return b.Groups < a.Groups || b.Frames < a.Frames || b.Bytes < a.Bytes || b.Dropped < a.Dropped ||
		b.Skipped < a.Skipped || b.Truncated < a.Truncated || b.Invalid < a.Invalid
}

// liveBroadcast is a broadcast between BroadcastStarted and
// BroadcastEnded. Its mutex orders a scrape reading stats against the end,
// after which stats is not called again.
type liveBroadcast struct {
	path   string
	ending bool // claimed by a BroadcastEnded call; guarded by Metrics.mu

	mu       sync.Mutex
	stats    func() map[string]sdk.TrackStats // nil once ended
	counters trackCounters
	// The source's own counters, for a source that has them (hasSource):
	// read by source until the end, like stats.
	source     func() pipelines.SourceCounters
	hasSource  bool
	sourceBase pipelines.SourceCounters // of earlier readings when the source's went down
	sourceLast pipelines.SourceCounters
}

// read returns the broadcast's counters: current while it runs, the last
// ones once it ended; and its source's, if it has them (has). end also
// stops reading them.
func (b *liveBroadcast) read(end bool) (tracks map[string]sdk.TrackStats, source pipelines.SourceCounters, has bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stats != nil {
		b.counters.update(b.stats())
	}
	if b.source != nil {
		cur := b.source()
		if sourceWentDown(b.sourceLast, cur) {
			b.sourceBase = b.sourceBase.Add(b.sourceLast)
		}
		b.sourceLast = cur
	}
	if end {
		b.stats, b.source = nil, nil
	}
	return b.counters.totals(), b.sourceBase.Add(b.sourceLast), b.hasSource
}

// liveSink is a sink between SinkStarted and SinkEnded, like
// liveBroadcast.
type liveSink struct {
	sink, path string
	ending     bool // guarded by Metrics.mu

	mu        sync.Mutex
	stats     func() map[string]sdk.TrackStats // nil once ended
	extra     func() pipelines.SinkCounters    // nil once ended or if none
	counters  trackCounters
	extraBase sinkCounts // of earlier readings when the sink's went down
	extraLast sinkCounts
	connected bool // at the last reading, for a sink with extra
}

// connection reports whether the sink has a connection (SinkCounters)
// and whether it is up, as of the last reading.
func (s *liveSink) connection() (has, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.extra != nil, s.connected
}

// read returns the sink's counters: current while it runs, the last ones
// once it ended. end also stops reading them.
func (s *liveSink) read(end bool) (map[string]sdk.TrackStats, sinkCounts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stats != nil {
		s.counters.update(s.stats())
	}
	if s.extra != nil {
		e := s.extra()
		cur := sinkCounts{droppedFrames: e.DroppedFrames, droppedGroups: e.DroppedGroups, reconnects: e.Reconnects}
		if cur.droppedFrames < s.extraLast.droppedFrames || cur.droppedGroups < s.extraLast.droppedGroups || cur.reconnects < s.extraLast.reconnects {
			s.extraBase = s.extraBase.add(s.extraLast)
		}
		s.extraLast = cur
		s.connected = e.Connected
	}
	if end {
		s.stats, s.extra = nil, nil
		s.connected = false
	}
	tracks := s.counters.totals()
	c := s.extraBase.add(s.extraLast)
	// TrackStats.Dropped counts access units dropped on the way to the
	// sink: with the sink's own, they are its dropped frames.
	for _, st := range tracks {
		c.droppedFrames += st.Dropped
	}
	return tracks, c
}

// New returns Metrics with a new registry holding moqbridge's metrics and
// the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg:          prometheus.NewRegistry(),
		descs:        make(map[string]*prometheus.Desc),
		pipelines:    make(map[string]*pipelineState),
		latObservers: make(map[latencyKey]prometheus.Observer),
	}
	for _, d := range allDefs() {
		switch d.name {
		case nameRestarts:
			m.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: d.name, Help: d.help}, d.labels)
		case nameLatency:
			m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: d.name, Help: d.help, Buckets: latencyBuckets()}, d.labels)
		default:
			m.descs[d.name] = d.desc()
		}
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.restarts,
		m.latency,
		collector{m},
	)
	return m
}

// Registry returns the registry the metrics are in, for more collectors
// or a handler of one's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetRelay makes the relay's counters part of the metrics: stats is called
// at every scrape (a relay restarted by a reload is another Server: read
// the current one there). nil leaves them out.
func (m *Metrics) SetRelay(stats func() protocol.ServerStats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relay = stats
}

// pipelineLocked returns the state of a pipeline, made on first use. The
// caller holds m.mu.
func (m *Metrics) pipelineLocked(name string) *pipelineState {
	p := m.pipelines[name]
	if p == nil {
		p = &pipelineState{
			sinkLabels:   make(map[string]bool),
			sourceTotals: make(map[pathTrack]sdk.TrackStats),
			sourceInput:  make(map[string]pipelines.SourceCounters),
			sinkTotals:   make(map[sinkPathTrack]sdk.TrackStats),
			sinkExtra:    make(map[sinkPath]sinkCounts),
		}
		m.pipelines[name] = p
	}
	return p
}

// SourceUp records whether a pipeline's source runs.
func (m *Metrics) SourceUp(pipeline string, up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pipelineLocked(pipeline)
	p.up, p.upKnown = up, true
	// The restart counter is exposed from 0, so that the first restart
	// shows as an increase.
	m.restarts.WithLabelValues(pipeline, "source")
}

// Restarted counts a restart of a part ("source" or a sink's label).
func (m *Metrics) Restarted(pipeline, part string) {
	m.restarts.WithLabelValues(pipeline, part).Inc()
}

// BroadcastStarted records a broadcast of a pipeline's source; stats and
// source are read at every scrape until BroadcastEnded. source may be nil
// (a source without SourceCounters: no moqbridge_source_… input series
// for it).
func (m *Metrics) BroadcastStarted(pipeline, path string, stats func() map[string]sdk.TrackStats, source func() pipelines.SourceCounters) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pipelineLocked(pipeline)
	p.broadcasts = append(p.broadcasts, &liveBroadcast{path: path, stats: stats, source: source, hasSource: source != nil})
}

// BroadcastEnded folds the last counters of the pipeline's broadcast at
// path (the oldest one, if several were started there) into the path's
// totals, its source's too: a source the supervisor makes again counts
// from zero, and adds to them. stats and source are called once more
// during the call, never after.
func (m *Metrics) BroadcastEnded(pipeline, path string) {
	m.mu.Lock()
	p := m.pipelines[pipeline]
	var b *liveBroadcast
	if p != nil {
		for _, x := range p.broadcasts {
			if x.path == path && !x.ending {
				b = x
				b.ending = true
				break
			}
		}
	}
	m.mu.Unlock()
	if b == nil {
		return
	}
	final, source, hasSource := b.read(true) // outside m.mu: stats takes the writer's locks
	m.mu.Lock()
	defer m.mu.Unlock()
	p.broadcasts = slices.DeleteFunc(p.broadcasts, func(x *liveBroadcast) bool { return x == b })
	for track, st := range final {
		k := pathTrack{path, track}
		p.sourceTotals[k] = p.sourceTotals[k].Add(st)
	}
	if hasSource {
		p.sourceInput[path] = p.sourceInput[path].Add(source)
	}
}

// SinkStarted records one sink on one broadcast; stats and extra are read
// at every scrape until SinkEnded. extra may be nil.
func (m *Metrics) SinkStarted(pipeline, part, path string, stats func() map[string]sdk.TrackStats, extra func() pipelines.SinkCounters) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pipelineLocked(pipeline)
	p.sinkLabels[part] = true
	m.restarts.WithLabelValues(pipeline, part)
	p.sinks = append(p.sinks, &liveSink{sink: part, path: path, stats: stats, extra: extra})
}

// SinkEnded folds the last counters of the sink into its totals, like
// BroadcastEnded.
func (m *Metrics) SinkEnded(pipeline, part, path string) {
	m.mu.Lock()
	p := m.pipelines[pipeline]
	var s *liveSink
	if p != nil {
		for _, x := range p.sinks {
			if x.sink == part && x.path == path && !x.ending {
				s = x
				s.ending = true
				break
			}
		}
	}
	m.mu.Unlock()
	if s == nil {
		return
	}
	tracks, extra := s.read(true)
	m.mu.Lock()
	defer m.mu.Unlock()
	p.sinks = slices.DeleteFunc(p.sinks, func(x *liveSink) bool { return x == s })
	for track, st := range tracks {
		k := sinkPathTrack{part, path, track}
		p.sinkTotals[k] = p.sinkTotals[k].Add(st)
	}
	k := sinkPath{part, path}
	p.sinkExtra[k] = p.sinkExtra[k].add(extra)
}

// Latency observes how long a frame took from its source's write to a
// sink's read, in the pipeline's histogram for the track (path is not a
// label: a histogram per broadcast would multiply the series by the
// buckets). It allocates nothing once the track was seen.
func (m *Metrics) Latency(pipeline, path, track string, d time.Duration) {
	k := latencyKey{pipeline, track}
	m.latMu.RLock()
	o := m.latObservers[k]
	m.latMu.RUnlock()
	if o == nil {
		m.latMu.Lock()
		if o = m.latObservers[k]; o == nil {
			o = m.latency.WithLabelValues(pipeline, track)
			m.latObservers[k] = o
		}
		m.latMu.Unlock()
	}
	o.Observe(max(d, 0).Seconds())
}

// ForgetPipeline drops every series of a pipeline: call it once a
// pipeline was removed (a reload without it) and has stopped, so that its
// series do not stay until the process ends. A pipeline of the same name
// that starts later begins from zero, which Prometheus takes as a counter
// reset.
func (m *Metrics) ForgetPipeline(pipeline string) {
	m.mu.Lock()
	delete(m.pipelines, pipeline)
	m.mu.Unlock()
	m.latMu.Lock()
	for k := range m.latObservers {
		if k.pipeline == pipeline {
			delete(m.latObservers, k)
		}
	}
	m.latMu.Unlock()
	m.restarts.DeletePartialMatch(prometheus.Labels{labelPipeline: pipeline})
	m.latency.DeletePartialMatch(prometheus.Labels{labelPipeline: pipeline})
}

// SourcesUp returns nil when the source of every pipeline that reported
// one is up, else an error naming those that are not, in name order: a
// ready function for Admin. A pipeline counts from its first SourceUp
// until ForgetPipeline.
func (m *Metrics) SourcesUp() error {
	m.mu.Lock()
	var down []string
	for name, p := range m.pipelines {
		if p.upKnown && !p.up {
			down = append(down, name)
		}
	}
	m.mu.Unlock()
	if len(down) == 0 {
		return nil
	}
	slices.Sort(down)
	return fmt.Errorf("source not up: %s", strings.Join(down, ", "))
}

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Label names.
const (
	labelPipeline  = "pipeline"
	labelPath      = "path"
	labelTrack     = "track"
	labelSink      = "sink"
	labelPart      = "part"
	labelTransport = "transport"
)

// metricDef describes one metric family: the registry's descriptors and
// docs/metrics.md are both made from it, so the two cannot drift apart
// (TestMetricsDoc checks the document against the registry).
type metricDef struct {
	name   string
	kind   string // "counter", "gauge" or "histogram"
	labels []string
	help   string
}

// Metric names.
const (
	nameSourceUp           = "moqbridge_source_up"
	nameRestarts           = "moqbridge_restarts_total"
	nameActiveBroadcasts   = "moqbridge_active_broadcasts"
	nameActiveSinks        = "moqbridge_active_sinks"
	nameSourceFrames       = "moqbridge_source_frames_total"
	nameSourceBytes        = "moqbridge_source_bytes_total"
	nameSourceGroups       = "moqbridge_source_groups_total"
	nameSourceSkipped      = "moqbridge_source_skipped_groups_total"
	nameSourceDropped      = "moqbridge_source_dropped_frames_total"
	nameSourcePackets      = "moqbridge_source_packets_total"
	nameSourceInputBytes   = "moqbridge_source_received_bytes_total"
	nameSourceLost         = "moqbridge_source_lost_packets_total"
	nameSourceDuplicates   = "moqbridge_source_duplicate_packets_total"
	nameSourceLate         = "moqbridge_source_late_packets_total"
	nameSourceInvalid      = "moqbridge_source_invalid_packets_total"
	nameSourceInputDropped = "moqbridge_source_discarded_frames_total"
	nameSourceRestarts     = "moqbridge_source_sender_restarts_total"
	nameSinkFrames         = "moqbridge_sink_frames_total"
	nameSinkBytes          = "moqbridge_sink_bytes_total"
	nameSinkGroups         = "moqbridge_sink_groups_total"
	nameSinkSkipped        = "moqbridge_sink_skipped_groups_total"
	nameSinkTruncated      = "moqbridge_sink_truncated_groups_total"
	nameSinkInvalid        = "moqbridge_sink_invalid_frames_total"
	nameSinkDropped        = "moqbridge_sink_dropped_frames_total"
	nameSinkDroppedGroups  = "moqbridge_sink_dropped_groups_total"
	nameSinkReconnects     = "moqbridge_sink_reconnects_total"
	nameSinkConnected      = "moqbridge_sink_connected"
	nameLatency            = "moqbridge_frame_latency_seconds"
	nameRelaySessions      = "moqbridge_relay_sessions"
	nameRelayAccepted      = "moqbridge_relay_sessions_accepted_total"
	nameRelayRefused       = "moqbridge_relay_sessions_refused_total"
	nameRelayStreams       = "moqbridge_relay_streams"
	nameRelaySubscriptions = "moqbridge_relay_subscriptions"
	nameRelayUpstream      = "moqbridge_relay_upstream_subscriptions"
	nameRelayBytesIn       = "moqbridge_relay_received_bytes_total"
	nameRelayBytesOut      = "moqbridge_relay_sent_bytes_total"
	nameRelayFramesIn      = "moqbridge_relay_received_frames_total"
	nameRelayFramesOut     = "moqbridge_relay_sent_frames_total"
	nameRelayBroadcasts    = "moqbridge_relay_broadcasts"
)

// allDefs lists every family moqbridge defines, in the order of
// docs/metrics.md.
func allDefs() []metricDef {
	return []metricDef{
		{nameSourceUp, "gauge", []string{labelPipeline},
			"1 while the pipeline's source runs (a from pipeline is up while it runs), 0 while it is down or waiting to restart."},
		{nameRestarts, "counter", []string{labelPipeline, labelPart},
			`Restarts of a part of a pipeline after a failure: part is "source" or the sink's label ("sinks[0].fmp4").`},
		{nameActiveBroadcasts, "gauge", []string{labelPipeline},
			"Broadcasts the pipeline's source publishes now (0 for a from pipeline, whose broadcasts other sources publish)."},
		{nameActiveSinks, "gauge", []string{labelPipeline, labelSink},
			"Instances of the sink running now, one per broadcast it is attached to."},
		{nameSourceFrames, "counter", []string{labelPipeline, labelPath, labelTrack},
			"Frames (access units) the source wrote into the track."},
		{nameSourceBytes, "counter", []string{labelPipeline, labelPath, labelTrack},
			"Payload bytes of the frames the source wrote (codec payload, no container)."},
		{nameSourceGroups, "counter", []string{labelPipeline, labelPath, labelTrack},
			"Groups the source started in the track (a video group is a GOP)."},
		{nameSourceSkipped, "counter", []string{labelPipeline, labelPath, labelTrack},
			"Groups missing from the sequence the source read, for a source that reads MOQ (0 for the others)."},
		{nameSourceDropped, "counter", []string{labelPipeline, labelPath, labelTrack},
			"Frames the source dropped: video before the track's first keyframe."},
		{nameSourcePackets, "counter", []string{labelPipeline, labelPath},
			"Packets the source received (RTP packets), over all its media; only for sources that count packets (rtp)."},
		{nameSourceInputBytes, "counter", []string{labelPipeline, labelPath},
			"Payload bytes of the packets the source received; only for sources that count packets (rtp)."},
		{nameSourceLost, "counter", []string{labelPipeline, labelPath},
			"Packets the source never got: still missing when it stopped waiting for them (the rtp source's reorder_window)."},
		{nameSourceDuplicates, "counter", []string{labelPipeline, labelPath},
			"Packets the source received twice."},
		{nameSourceLate, "counter", []string{labelPipeline, labelPath},
			"Packets that came after the source had counted them as lost (a reorder_window too short for the network)."},
		{nameSourceInvalid, "counter", []string{labelPipeline, labelPath},
			"Datagrams the source could not use: not RTP of the announced payload type nor RTCP, or from an excluded sender."},
		{nameSourceInputDropped, "counter", []string{labelPipeline, labelPath},
			"Access units the source received (in part) but did not publish: damaged by a lost packet, or skipped while the video waited for a keyframe after a loss or a sender's start. Not in moqbridge_source_frames_total."},
		{nameSourceRestarts, "counter", []string{labelPipeline, labelPath},
			"Times a sender started over: a new RTP SSRC or sequence on a media."},
		{nameSinkFrames, "counter", []string{labelPipeline, labelSink, labelPath, labelTrack},
			"Frames (access units) the sink read from the track."},
		{nameSinkBytes, "counter", []string{labelPipeline, labelSink, labelPath, labelTrack},
			"Payload bytes of the frames the sink read (codec payload, no container)."},
		{nameSinkGroups, "counter", []string{labelPipeline, labelSink, labelPath, labelTrack},
			"Groups the sink started reading."},
		{nameSinkSkipped, "counter", []string{labelPipeline, labelSink, labelPath, labelTrack},
			"Groups the sink never got: it fell behind and the track's cache let them go, or they were lost upstream."},
		{nameSinkTruncated, "counter", []string{labelPipeline, labelSink, labelPath, labelTrack},
			"Groups that ended early for the sink: aborted upstream, or cut at an undecodable frame."},
		{nameSinkInvalid, "counter", []string{labelPipeline, labelSink, labelPath, labelTrack},
			"MOQ frames of the track the sink could not decode."},
		{nameSinkDropped, "counter", []string{labelPipeline, labelSink, labelPath},
			"Frames (access units) the sink dropped, over all tracks, for a destination too slow to take them."},
		{nameSinkDroppedGroups, "counter", []string{labelPipeline, labelSink, labelPath},
			"Groups the sink dropped whole, over all tracks, for a destination too slow to take them."},
		{nameSinkReconnects, "counter", []string{labelPipeline, labelSink, labelPath},
			"Times the sink reconnected to its destination (a remote relay, an RTMP server) without restarting."},
		{nameSinkConnected, "gauge", []string{labelPipeline, labelSink, labelPath},
			"1 while the sink is connected to its destination, 0 while it reconnects; only for sinks with a connection (moq, rtmp)."},
		{nameLatency, "histogram", []string{labelPipeline, labelTrack},
			"Time from a frame's write into its track (by a source of this process, or its arrival here from the network) to a sink of the pipeline reading it, over all paths and sinks."},
		{nameRelaySessions, "gauge", []string{labelTransport},
			`MOQ sessions the relay serves now, by transport ("quic", "webtransport", "websocket").`},
		{nameRelayAccepted, "counter", []string{labelTransport},
			"MOQ sessions that started (their setup succeeded), by transport."},
		{nameRelayRefused, "counter", nil,
			"Connections the relay refused: a token that does not authorize them, a browser origin not allowed, a failed MOQ setup."},
		{nameRelayStreams, "gauge", nil,
			"Streams peers opened that the relay serves now: subscriptions, announce interests, incoming groups."},
		{nameRelaySubscriptions, "gauge", nil,
			"Subscriptions peers hold on the relay now."},
		{nameRelayUpstream, "gauge", nil,
			"Subscriptions the relay holds on its peers now (one per track a publisher feeds, however many subscribers it has)."},
		{nameRelayBytesIn, "counter", nil,
			"Bytes received on every session's connection (QUIC packets, WebSocket payload)."},
		{nameRelayBytesOut, "counter", nil,
			"Bytes sent on every session's connection (QUIC packets with retransmissions, WebSocket payload)."},
		{nameRelayFramesIn, "counter", nil,
			"MOQ frames received from publishers."},
		{nameRelayFramesOut, "counter", nil,
			"MOQ frames sent to subscribers."},
		{nameRelayBroadcasts, "gauge", nil,
			"Broadcasts announced in the relay's origin now, whoever publishes them."},
	}
}

func (d metricDef) desc() *prometheus.Desc {
	return prometheus.NewDesc(d.name, d.help, d.labels, nil)
}

// latencyBuckets are the upper bounds of the latency histogram, in
// seconds: from 0.1 ms (a frame handed over in memory) to 10 s (a sink far
// behind), 1-2.5-5 per decade.
func latencyBuckets() []float64 {
	return []float64{
		0.0001, 0.00025, 0.0005,
		0.001, 0.0025, 0.005,
		0.01, 0.025, 0.05,
		0.1, 0.25, 0.5,
		1, 2.5, 5, 10,
	}
}

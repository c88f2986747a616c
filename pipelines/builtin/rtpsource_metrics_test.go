package builtin

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/metrics"
	"github.com/moqbridge/moqbridge/pipelines"
)

// h264SDP is a session description of one H.264 media sent to port on
// loopback, its parameter sets in band, as ffmpeg writes it.
func h264SDP(port int) string {
	return fmt.Sprintf("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nt=0 0\n"+
		"m=video %d RTP/AVP 96\nc=IN IP4 127.0.0.1\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1\n", port)
}

// lossySender sends H.264 over RTP to a port on loopback at 30 frames a
// second, a keyframe every 10 frames, and leaves out one packet of a
// keyframe: the second of its fragments.
type lossySender struct {
	conn   *net.UDPConn
	ssrc   uint32
	frames int // frames to send
	lose   int // the frame (a keyframe) that loses a packet; -1: none
	sent   int // packets sent, once send returned
}

// h264 parameter sets the source can parse (Baseline, 320x240).
var (
	metricsSPS, _ = hex.DecodeString("6742c00dd90141fb0110000003001000000303c0f142a480")
	metricsPPS, _ = hex.DecodeString("68cb83cb20")
)

func newLossySender(t *testing.T, port int, ssrc uint32, frames, lose int) *lossySender {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lossySender{conn: c, ssrc: ssrc, frames: frames, lose: lose}
}

// send sends the frames, then returns (or returns once ctx ends).
func (s *lossySender) send(ctx context.Context) error {
	seq := uint16(s.ssrc)
	enc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, SSRC: &s.ssrc, InitialSequenceNumber: &seq, PayloadMaxSize: 1200}
	if err := enc.Init(); err != nil {
		return err
	}
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i := range s.frames {
		key := i%10 == 0
		slice := make([]byte, 300)
		if key {
			slice = make([]byte, 4000) // four fragments
		}
		for j := range slice {
			slice[j] = byte(1 + (i+j)%250) // no start code inside
		}
		slice[0], slice[1] = 0x41, 0x88 // a P slice, first_mb_in_slice 0
		au := [][]byte{slice}
		if key {
			slice[0] = 0x65 // an IDR slice
			au = [][]byte{metricsSPS, metricsPPS, slice}
		}
		pkts, err := enc.Encode(au)
		if err != nil {
			return err
		}
		for k, p := range pkts {
			if i == s.lose && k == 1 {
				continue
			}
			p.Timestamp = s.ssrc + uint32(i*3000)
			b, err := p.Marshal()
			if err != nil {
				return err
			}
			// A refused datagram (nobody listening yet) is what a sender
			// on a network sees too: it keeps sending.
			_, _ = s.conn.Write(b)
			s.sent++
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// TestRTPSourceMetrics: through the runner, an rtp pipeline fed by a
// sender that loses a packet of a keyframe shows in /metrics the packets
// received, the loss, and the frames it cost (the damaged keyframe and
// the frames skipped up to the next one). The sender stopping ends the
// broadcast and the supervisor makes the source again; a second sender
// then adds to the counters, which never go backwards.
func TestRTPSourceMetrics(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	dir := t.TempDir()
	port := testkit.FreeUDPPorts(t, 2)
	file := writeConfig(t, dir, `
server: {enabled: false}
admin: {listen: ""}
pipelines:
  cam:
    source:
      rtp:
        timeout: 400ms
        track_wait: 100ms
        sdp: |
`+indent(h264SDP(port), "          ")+`
    path: live/cam
    restart: {min: 50ms, max: 200ms}
`)
	cfg, err := pipelines.Load(file, Registry())
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	admin := metrics.Admin(m, nil)
	lb := testLog(t)
	runner := pipelines.NewRunner(Registry(), pipelines.RunnerOptions{Logger: lb.Logger(), Observer: m})
	run := start(t, func(ctx context.Context) error { return runner.Run(ctx, cfg) })
	live := func() bool {
		_, err := runner.Origin().Consume("live/cam")
		return err == nil
	}
	const labels = `{path="live/cam",pipeline="cam"}`
	value := func(got map[string]float64, name string) float64 { return got[name+labels] }

	if err := testkit.WaitUDPBound(ctx, port); err != nil {
		t.Fatal(err)
	}

	// 40 frames, the keyframe of frame 20 missing a fragment.
	lossy := newLossySender(t, port, 0x1111, 40, 20)
	sender := start(t, lossy.send)
	waitFor(t, ctx, "the broadcast", live)
	var first map[string]float64
	waitFor(t, ctx, "the loss in /metrics", func() bool {
		first = testkit.ScrapeMetrics(t, admin)
		return value(first, "moqbridge_source_lost_packets_total") > 0 && value(first, "moqbridge_source_discarded_frames_total") > 0
	})
	if n := value(first, "moqbridge_source_lost_packets_total"); n != 1 {
		t.Errorf("lost packets %v, want 1", n)
	}
	// The damaged keyframe, and the 9 frames after it that waited for the
	// next keyframe (those not received yet at the scrape aside).
	if n := value(first, "moqbridge_source_discarded_frames_total"); n < 1 || n > 10 {
		t.Errorf("discarded frames %v, want 1 to 10", n)
	}
	if n := value(first, "moqbridge_source_packets_total"); n < 20 {
		t.Errorf("packets %v, want at least the 20 frames' before the loss", n)
	}
	for _, name := range []string{"moqbridge_source_received_bytes_total", "moqbridge_source_duplicate_packets_total",
		"moqbridge_source_late_packets_total", "moqbridge_source_invalid_packets_total", "moqbridge_source_sender_restarts_total"} {
		if _, ok := first[name+labels]; !ok {
			t.Errorf("/metrics lacks %s%s", name, labels)
		}
	}

	// The sender sends its last frames, then is silent past the timeout:
	// the broadcast ends, the source is made again; what the first one
	// counted stays.
	if err := sender.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the broadcast to end", func() bool { return !live() })
	lb.WaitLogContext(t, ctx, "pipeline: source input went silent", "no packets for 400ms")
	afterEnd := testkit.ScrapeMetrics(t, admin)
	t.Logf("first sender: %d packets sent, one left out; counted: packets %v, lost %v, discarded frames %v, sender restarts %v",
		lossy.sent, value(afterEnd, "moqbridge_source_packets_total"), value(afterEnd, "moqbridge_source_lost_packets_total"),
		value(afterEnd, "moqbridge_source_discarded_frames_total"), value(afterEnd, "moqbridge_source_sender_restarts_total"))
	if n := value(afterEnd, "moqbridge_source_packets_total"); n > float64(lossy.sent) {
		t.Errorf("packets %v, but %d were sent", n, lossy.sent)
	}
	for _, name := range []string{"moqbridge_source_packets_total", "moqbridge_source_lost_packets_total", "moqbridge_source_discarded_frames_total"} {
		if value(afterEnd, name) < value(first, name) {
			t.Errorf("%s went from %v to %v once the source ended", name, value(first, name), value(afterEnd, name))
		}
	}

	// A second sender, without loss, on the new source: its packets add
	// to the first one's.
	if err := testkit.WaitUDPBound(ctx, port); err != nil {
		t.Fatal(err)
	}
	sender = start(t, newLossySender(t, port, 0x2222, 30, -1).send)
	waitFor(t, ctx, "the second sender's packets in /metrics", func() bool {
		return value(testkit.ScrapeMetrics(t, admin), "moqbridge_source_packets_total") > value(afterEnd, "moqbridge_source_packets_total")
	})
	if err := sender.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	final := testkit.ScrapeMetrics(t, admin)
	for _, name := range []string{"moqbridge_source_lost_packets_total", "moqbridge_source_discarded_frames_total"} {
		if value(final, name) < value(afterEnd, name) {
			t.Errorf("%s went from %v to %v after the source restarted", name, value(afterEnd, name), value(final, name))
		}
	}
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

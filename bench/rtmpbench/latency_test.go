package rtmpbench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/bench"
)

// The latency run: 40 s of recordInput's video published in real time,
// measured from 4 s of media on (gortmplib's 2 s track analysis in the
// relay holds the first frames back, then replays them at once).
const (
	latencyLength = 40 * time.Second
	latencyWarmup = 4 * time.Second
)

// BenchmarkRTMPLatency measures the latency the relay adds between an
// RTMP publisher and a MOQ subscriber: recordInput's H.264 access units,
// 30 per second, written by a gortmplib client into `moqbridge serve
// --rtmp` (a child process), read back by a MOQ subscriber (protocol
// client, sdk reader) over QUIC, both in this process and on 127.0.0.1.
// Each frame's latency is from just before its RTMP write to its
// ReadFrame returning; frames are matched by timestamp and checked byte
// for byte. The network baselines are the same frames, by size and pace,
// written over a bare TCP loopback connection (the RTMP hop) and over a
// bare quic-go stream on loopback (the MOQ hop); a frame's latency beyond
// the network is its latency less its baselines. One fixed run whatever
// b.N is.
func BenchmarkRTMPLatency(b *testing.B) {
	in, m, serve := prepareServe(b, recordInput)
	defer serve.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*latencyLength+time.Minute)
	defer cancel()
	b.Logf("%s; input %s (video only); load average before: %s", binaryNote(), in, bench.LoadAverage())
	b.ResetTimer()

	st0, err := readProc(serve.pid())
	if err != nil {
		b.Fatal(err)
	}
	busy0, self0, start := bench.MachineBusy(), bench.SelfCPU(), time.Now()
	res, err := measureLatency(ctx, latencyConfig{
		rtmpAddr: serve.rtmpAddr,
		moqURL:   serve.quicURL,
		fp:       serve.fp,
		path:     "live/latency",
		media:    m,
		length:   latencyLength,
		warmup:   latencyWarmup,
	})
	if err != nil {
		b.Fatal(err)
	}
	wall := time.Since(start)
	st1, err := readProc(serve.pid())
	if err != nil {
		b.Fatal(err)
	}
	serveCPU, benchCPU := st1.CPU-st0.CPU, bench.SelfCPU()-self0
	other := bench.MachineBusy() - busy0 - serveCPU - benchCPU
	tcpBase, err := tcpBaseline(ctx, m, res.sizes)
	if err != nil {
		b.Fatal(err)
	}
	quicBase, err := quicBaseline(ctx, m, res.sizes)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()

	var e2e, keys, tcp, quicLat, network, addedTCP, added []time.Duration
	for idx, d := range res.measured {
		e2e = append(e2e, d)
		if res.key[idx] {
			keys = append(keys, d)
		}
		t, okT := tcpBase[idx]
		q, okQ := quicBase[idx]
		if okT && okQ {
			tcp, quicLat, network = append(tcp, t), append(quicLat, q), append(network, t+q)
			addedTCP, added = append(addedTCP, d-t), append(added, d-t-q)
		}
	}
	row := func(name string, d []time.Duration) string {
		return fmt.Sprintf("  %-38s p50 %7.3f ms  p90 %7.3f ms  p99 %7.3f ms  max %7.3f ms  (%d frames)", name,
			ms(percentile(d, 0.5)), ms(percentile(d, 0.9)), ms(percentile(d, 0.99)), ms(percentile(d, 1)), len(d))
	}
	b.ReportMetric(ms(percentile(e2e, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(e2e, 0.99)), "p99-ms")
	b.ReportMetric(ms(percentile(tcp, 0.5)), "tcp-p50-ms")
	b.ReportMetric(ms(percentile(tcp, 0.99)), "tcp-p99-ms")
	b.ReportMetric(ms(percentile(quicLat, 0.5)), "quic-p50-ms")
	b.ReportMetric(ms(percentile(quicLat, 0.99)), "quic-p99-ms")
	b.ReportMetric(ms(percentile(addedTCP, 0.5)), "beyond-tcp-p50-ms")
	b.ReportMetric(ms(percentile(addedTCP, 0.99)), "beyond-tcp-p99-ms")
	b.ReportMetric(ms(percentile(added, 0.5)), "beyond-both-p50-ms")
	b.ReportMetric(ms(percentile(added, 0.99)), "beyond-both-p99-ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("RTMP publish → MOQ subscriber on 127.0.0.1, %d video frames sent, measured from %v of media:\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n"+
		"  serve %.3f cores, this process (publisher, subscriber) %.3f cores, other load %.2f cores; publisher at most %v behind its schedule",
		res.sent, latencyWarmup, row("RTMP → relay → MOQ", e2e), row("  of which keyframes", keys),
		row("TCP loopback, same sizes and pace", tcp), row("QUIC loopback, same sizes and pace", quicLat),
		row("TCP + QUIC (the two hops' network)", network), row("beyond TCP (per frame)", addedTCP),
		row("beyond TCP + QUIC (per frame)", added),
		serveCPU.Seconds()/wall.Seconds(), benchCPU.Seconds()/wall.Seconds(), other.Seconds()/wall.Seconds(), res.maxLate.Round(time.Microsecond))
	if s := serve.stderr.String(); s != "" {
		b.Logf("serve's stderr (the last %d KiB):\n%s", bench.TailSize>>10, s)
	}
	if res.corrupt != 0 || res.unmatched != 0 || res.missing != 0 {
		b.Errorf("%d frames altered, %d matched no frame sent, %d missing", res.corrupt, res.unmatched, res.missing)
	}
	if len(added) != len(e2e) {
		b.Errorf("the TCP baseline measured %d of the %d frames", len(added), len(e2e))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

package pipelinesbench

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/bench"
)

// The load of BenchmarkPipelines.
const (
	// benchWarmup lets the sources start, the recorders open their files
	// and the relay's track caches fill (the clip is small: a few seconds
	// reach the steady resident set).
	benchWarmup = 10 * time.Second
	// benchWindow is the measured span.
	benchWindow = 30 * time.Second
)

// clip is the test clip every source loops: 1 s of 160x96 H.264 (30 fps,
// B-frames) and AAC, about 136 kbit/s, fragmented at keyframes.
var clip = filepath.Join("..", "..", "sources", "fmp4", "testdata", "h264_aac_bframes.mp4")

// BenchmarkPipelines runs 1 file → relay → recording pipeline in this
// process, then 50, each for a warm-up and a fixed window (see the package
// doc), and logs what the window cost. One fixed run whatever b.N is. The
// small run goes first so that its resident set is not the memory the
// large one leaves for the runtime to return.
func BenchmarkPipelines(b *testing.B) {
	abs, err := filepath.Abs(clip)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("pipelines=%d", n), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), benchWarmup+benchWindow+2*time.Minute)
			defer cancel()
			b.Logf("code %s; %s, GOMAXPROCS %d; load average before: %s", bench.Revision("../.."), runtime.Version(), runtime.GOMAXPROCS(0), bench.LoadAverage())
			b.ResetTimer()
			res, err := Measure(ctx, Config{Pipelines: n, Clip: abs, Dir: b.TempDir(), Warmup: benchWarmup, Window: benchWindow})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.Log(report(res))
			b.ReportMetric(res.CPUPerMediaMinute(), "cpu-s/media-min")
			b.ReportMetric(float64(res.PeakRSS)/(1<<20), "peak-MiB")
			b.ReportMetric(float64(res.Goroutines), "goroutines")
			b.ReportMetric(res.Latency.Quantile(0.99)*1000, "p99-ms")
		})
	}
}

// report is the log of one run, a line per figure.
func report(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d pipelines, window %.1f s (%.1f media minutes)\n", r.Pipelines, r.Wall.Seconds(), r.MediaMinutes())
	fmt.Fprintf(&b, "  CPU: %.2f s in the window, %.3f cores, %.3f CPU-s per media minute; other load %.2f cores\n",
		r.CPU.Seconds(), r.Cores(), r.CPUPerMediaMinute(), r.OtherCPU.Seconds()/r.Wall.Seconds())
	fmt.Fprintf(&b, "  memory: peak resident set %.1f MiB in the window, %.1f MiB at its end\n", float64(r.PeakRSS)/(1<<20), float64(r.RSS)/(1<<20))
	fmt.Fprintf(&b, "  goroutines: %d at most in the window (%d before the runner started; %.1f per pipeline)\n",
		r.Goroutines, r.GoroutinesBefore, float64(r.Goroutines-r.GoroutinesBefore)/float64(r.Pipelines))
	fmt.Fprintf(&b, "  frames in the window: %d written by the sources, %d read by the recorders\n", r.SourceFrames, r.SinkFrames)
	fmt.Fprintf(&b, "  frame latency (moqbridge_frame_latency_seconds, %.0f frames): p50 %.2f ms, p99 %.2f ms\n",
		r.Latency.Count(), r.Latency.Quantile(0.5)*1000, r.Latency.Quantile(0.99)*1000)
	fmt.Fprintf(&b, "  recordings: %d files, %.1f MiB", r.Recordings, float64(r.RecordedBytes)/(1<<20))
	return b.String()
}

// TestSmoke runs Measure on two pipelines for a few seconds: media flows,
// and every figure is there.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	abs, err := filepath.Abs(clip)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Measure(ctx, Config{Pipelines: 2, Clip: abs, Dir: t.TempDir(), Warmup: time.Second, Window: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(report(res))
	if res.CPU <= 0 || res.PeakRSS == 0 || res.Goroutines <= res.GoroutinesBefore || res.Recordings != 2 {
		t.Errorf("result %+v", res)
	}
	// Two clips in real time: about 2 × 77 frames a second are written
	// and recorded.
	if res.SourceFrames < 100 || res.SinkFrames < 100 {
		t.Errorf("%d frames written, %d recorded in 2 s", res.SourceFrames, res.SinkFrames)
	}
	if res.Latency.Count() == 0 || math.IsNaN(res.Latency.Quantile(0.99)) {
		t.Errorf("latency %v", res.Latency)
	}
}

// TestQuantile: quantiles interpolate within a bucket, as Prometheus'
// histogram_quantile does, and Sub takes an earlier reading away.
func TestQuantile(t *testing.T) {
	h := Histogram{{0.001, 10}, {0.01, 90}, {0.1, 100}, {math.Inf(1), 100}}
	for _, c := range []struct{ q, want float64 }{
		{0.05, 0.0005},                 // half of the first bucket, from 0
		{0.5, 0.001 + 0.009*40.0/80.0}, // rank 50: 40 of the second bucket's 80
		{0.99, 0.01 + 0.09*9.0/10.0},
		{1, 0.1},
	} {
		if got := h.Quantile(c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := (Histogram{{0.1, 1}, {math.Inf(1), 5}}).Quantile(0.99); got != 0.1 {
		t.Errorf("a quantile in +Inf = %v, want the highest finite bound", got)
	}
	if got := (Histogram{}).Quantile(0.5); !math.IsNaN(got) {
		t.Errorf("no observations: %v", got)
	}
	d := h.Sub(Histogram{{0.001, 10}, {0.01, 10}, {0.1, 10}, {math.Inf(1), 10}})
	if d.Count() != 90 || d[0].Cumulative != 0 || d[1].Cumulative != 80 {
		t.Errorf("Sub: %v", d)
	}
	s := parseScrape(strings.NewReader(`# HELP x
moqbridge_frame_latency_seconds_bucket{pipeline="a",track="v",le="0.001"} 3
moqbridge_frame_latency_seconds_bucket{pipeline="a",track="v",le="+Inf"} 4
moqbridge_frame_latency_seconds_bucket{pipeline="b",track="v",le="0.001"} 1
moqbridge_frame_latency_seconds_bucket{pipeline="b",track="v",le="+Inf"} 2
moqbridge_sink_frames_total{pipeline="a",sink="sinks[0].fmp4",path="p",track="v"} 7
moqbridge_source_frames_total{pipeline="a",path="p",track="v"} 8
`))
	if s.sinkFrames != 7 || s.sourceFrames != 8 || s.latency.Count() != 6 || s.latency[0].Cumulative != 4 {
		t.Errorf("parseScrape: %+v", s)
	}
}

package pipelinesbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/bench"
	"github.com/moqbridge/moqbridge/metrics"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/pipelines/builtin"
)

// Config is one run of Measure.
type Config struct {
	// Pipelines is how many file → relay → recording pipelines run.
	Pipelines int
	// Clip is the MP4 file every source loops in real time.
	Clip string
	// Dir is where the recordings go (one subdirectory per broadcast).
	Dir string
	// Warmup runs before the window: the sources start, the recorders
	// open their files, the relay's caches fill.
	Warmup time.Duration
	// Window is the measured span.
	Window time.Duration
}

// Result is what Measure found over its window.
type Result struct {
	Pipelines int
	// Wall is the window's length as measured.
	Wall time.Duration
	// CPU is this process's user + system time over the window (every
	// pipeline, the relay, the runtime; the benchmark's own sampling is
	// a few reads of /proc a second).
	CPU time.Duration
	// OtherCPU is the machine's busy time over the window less CPU: other
	// processes sharing the machine.
	OtherCPU time.Duration
	// PeakRSS is VmHWM over the window (reset at its start), RSS is VmRSS
	// at its end, in bytes.
	PeakRSS, RSS uint64
	// Goroutines is the most goroutines seen in the window (sampled every
	// second), GoroutinesBefore how many there were before the runner
	// started.
	Goroutines, GoroutinesBefore int
	// SourceFrames and SinkFrames are the frames the sources wrote and the
	// recorders read in the window (moqbridge_source_frames_total and
	// moqbridge_sink_frames_total).
	SourceFrames, SinkFrames uint64
	// Latency is moqbridge_frame_latency_seconds over the window, every
	// pipeline and track together.
	Latency Histogram
	// Recordings and RecordedBytes are the files the recorders left and
	// their size, after the runner stopped.
	Recordings    int
	RecordedBytes int64
}

// MediaMinutes is the media the pipelines carried in the window: each
// source plays its clip in real time.
func (r Result) MediaMinutes() float64 { return float64(r.Pipelines) * r.Wall.Minutes() }

// CPUPerMediaMinute is the process's CPU seconds per minute of media.
func (r Result) CPUPerMediaMinute() float64 { return r.CPU.Seconds() / r.MediaMinutes() }

// Cores is the process's CPU over the window as a number of cores.
func (r Result) Cores() float64 { return r.CPU.Seconds() / r.Wall.Seconds() }

// pipelinesYAML is the configuration of n pipelines: the relay on
// loopback, each pipeline an fmp4 source looping clip in real time at
// bench/pNNN and an fmp4 sink recording it under dir.
func pipelinesYAML(n int, clip, dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server: {listen: 127.0.0.1:0, tcp: \"off\"}\nadmin: {listen: \"\"}\nlog: {level: warn}\npipelines:\n")
	for i := range n {
		fmt.Fprintf(&b, "  p%03d:\n    source: {fmp4: {file: %q, loop: true}}\n    path: bench/p%03d\n    sinks: [fmp4: {dir: %q}]\n", i, clip, i, dir)
	}
	return b.String()
}

// Measure runs cfg's pipelines in this process, as `moqbridge run` would
// run the same YAML, and measures them over the window after the warm-up.
func Measure(ctx context.Context, cfg Config) (Result, error) {
	// What an earlier run in this process left goes back to the system
	// first, so that it does not count in this one's resident set.
	debug.FreeOSMemory()
	res := Result{Pipelines: cfg.Pipelines, GoroutinesBefore: runtime.NumGoroutine()}
	reg := builtin.Registry()
	pc, err := pipelines.Parse([]byte(pipelinesYAML(cfg.Pipelines, cfg.Clip, cfg.Dir)), "pipelinesbench.yaml", reg)
	if err != nil {
		return res, fmt.Errorf("the benchmark's config: %w", err)
	}
	logs := &bench.TailBuffer{}
	m := metrics.New()
	runner := pipelines.NewRunner(reg, pipelines.RunnerOptions{
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Observer: m,
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx, pc) }()
	stopped := false
	stopRunner := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop()
		return <-done
	}
	defer func() { _ = stopRunner() }()

	// Every source up, then the warm-up.
	for deadline := time.Now().Add(30 * time.Second); runner.Ready() != nil; {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return res, fmt.Errorf("the pipelines did not come up: %v%s", runner.Ready(), logs.Note("runner"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := bench.Sleep(ctx, cfg.Warmup); err != nil {
		return res, err
	}

	// The window.
	if err := resetPeakRSS(); err != nil {
		return res, fmt.Errorf("reset the peak resident set: %w", err)
	}
	before := scrape(m)
	cpu0, busy0, began := bench.SelfCPU(), bench.MachineBusy(), time.Now()
	for end := began.Add(cfg.Window); time.Now().Before(end); {
		if err := bench.Sleep(ctx, min(time.Second, time.Until(end))); err != nil {
			return res, err
		}
		res.Goroutines = max(res.Goroutines, runtime.NumGoroutine())
	}
	res.CPU, res.Wall = bench.SelfCPU()-cpu0, time.Since(began)
	res.OtherCPU = bench.MachineBusy() - busy0 - res.CPU
	after := scrape(m)
	res.RSS, res.PeakRSS, err = memStatus()
	if err != nil {
		return res, err
	}
	res.SourceFrames = uint64(after.sourceFrames - before.sourceFrames)
	res.SinkFrames = uint64(after.sinkFrames - before.sinkFrames)
	res.Latency = after.latency.Sub(before.latency)

	if err := stopRunner(); err != nil {
		return res, fmt.Errorf("the runner: %w%s", err, logs.Note("runner"))
	}
	err = filepath.WalkDir(cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".mp4") {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		res.Recordings++
		res.RecordedBytes += fi.Size()
		return nil
	})
	if err != nil {
		return res, err
	}
	if res.SinkFrames == 0 || res.Recordings < cfg.Pipelines {
		return res, fmt.Errorf("the pipelines carried no media: %d frames recorded in the window, %d files%s", res.SinkFrames, res.Recordings, logs.Note("runner"))
	}
	return res, nil
}

// snapshot is what one scrape of /metrics says that Measure uses.
type snapshot struct {
	sourceFrames, sinkFrames float64
	latency                  Histogram
}

// scrape reads m's /metrics in the text format, as Prometheus would.
func scrape(m *metrics.Metrics) snapshot {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	metrics.Admin(m, nil).ServeHTTP(rec, req)
	return parseScrape(rec.Body)
}

// parseScrape sums, over every series, the frame counters and the latency
// histogram's buckets of an exposition in the text format.
func parseScrape(r io.Reader) snapshot {
	var s snapshot
	cum := map[float64]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line+" ", "{ ")]
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			continue
		}
		switch name {
		case "moqbridge_source_frames_total":
			s.sourceFrames += v
		case "moqbridge_sink_frames_total":
			s.sinkFrames += v
		case "moqbridge_frame_latency_seconds_bucket":
			_, rest, ok := strings.Cut(line, `le="`)
			if !ok {
				continue
			}
			le, _, _ := strings.Cut(rest, `"`)
			bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses too
			if err != nil {
				continue
			}
			cum[bound] += v
		}
	}
	for bound, c := range cum {
		s.latency = append(s.latency, Bucket{UpperBound: bound, Cumulative: c})
	}
	slices.SortFunc(s.latency, func(a, b Bucket) int { return compareFloat(a.UpperBound, b.UpperBound) })
	return s
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Bucket is one bucket of a Prometheus histogram: how many observations
// were at most UpperBound.
type Bucket struct {
	UpperBound float64
	Cumulative float64
}

// Histogram is a cumulative histogram, buckets by increasing bound, the
// last one +Inf.
type Histogram []Bucket

// Count is the number of observations.
func (h Histogram) Count() float64 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].Cumulative
}

// Sub returns h less an earlier reading of the same histogram: the
// observations made in between.
func (h Histogram) Sub(earlier Histogram) Histogram {
	prev := map[float64]float64{}
	for _, b := range earlier {
		prev[b.UpperBound] = b.Cumulative
	}
	out := make(Histogram, len(h))
	for i, b := range h {
		out[i] = Bucket{UpperBound: b.UpperBound, Cumulative: b.Cumulative - prev[b.UpperBound]}
	}
	return out
}

// Quantile estimates the q-quantile as Prometheus' histogram_quantile
// does: linearly within the bucket it falls in (from 0 for the first). One
// that falls in the +Inf bucket is reported as the highest finite bound;
// NaN without observations.
func (h Histogram) Quantile(q float64) float64 {
	total := h.Count()
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range h {
		if b.Cumulative >= rank {
			if math.IsInf(b.UpperBound, 1) {
				return lower
			}
			if b.Cumulative == below {
				return b.UpperBound
			}
			return lower + (b.UpperBound-lower)*(rank-below)/(b.Cumulative-below)
		}
		lower, below = b.UpperBound, b.Cumulative
	}
	return lower
}

// resetPeakRSS makes VmHWM start again from the resident set now.
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// memStatus reads VmRSS and VmHWM of /proc/self/status, in bytes.
func memStatus() (rss, hwm uint64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/self/status: %s", line)
		}
		kib, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/self/status: %s", line)
		}
		if name == "VmRSS" {
			rss = kib << 10
		} else {
			hwm = kib << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, errors.New("/proc/self/status: no VmRSS or VmHWM")
	}
	return rss, hwm, nil
}

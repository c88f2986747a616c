package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// relayLoads are the loads of BenchmarkRelay with their warm-up (skipped:
// subscribers joining, the cached group a late joiner catches up on) and
// measurement window.
var relayLoads = []struct {
	load           Load
	warmup, window time.Duration
}{
	{Media, 2 * time.Second, 6 * time.Second}, // warm-up: one whole group
	{Max, time.Second, 5 * time.Second},
}

var relaySubscribers = []int{1, 10, 100}

// BenchmarkRelay runs 1 publisher → relay → N subscribers for every load,
// N and relay (moqbridge, gomoqt, bare quic-go), each as one fixed-length
// run whatever b.N is (run it with -benchtime 1x). The figures are custom
// metrics; the standard ns/op is suppressed and B/op, allocs/op (with
// -benchmem) describe this process, not the relay. After the matrix it
// logs the three relays side by side, with ratios to the bare relay of the
// same run. The gomoqt relay is built from bench/gomoqt when its first row
// runs; if that fails, its rows are skipped with the reason. With -count,
// go test runs each row that many times in a row; the table then has one
// block per repetition.
func BenchmarkRelay(b *testing.B) {
	gomoqt := &gomoqtBuild{parent: b}
	results := make(map[string][]Result)
	for _, lr := range relayLoads {
		for _, n := range relaySubscribers {
			for _, kind := range RelayKinds {
				name := fmt.Sprintf("%s/%s/subs=%d", lr.load.Name, kind, n)
				b.Run(name, func(b *testing.B) {
					cfg := Config{Relay: kind, Load: lr.load, Subscribers: n}
					if kind == Gomoqt {
						cfg.GomoqtBinary = gomoqt.binary(b)
					}
					results[name] = append(results[name], benchRelay(b, cfg, lr.warmup, lr.window))
				})
			}
		}
	}
	if s := comparison(results, RelayKinds); s != "" {
		b.Log("moqbridge, gomoqt and bare quic-go relays side by side (×bare: ratio to the bare relay of this run):\n" + s)
	}
}

// BenchmarkRelayQUICVersion runs the rows of BenchmarkRelay with 100
// subscribers for the gomoqt relay (quic-go v0.58.0), the bare relay built
// on the same quic-go (bench/gomoqt's bare-relay) and the bare relay of
// this module (quic-go v0.64.1): what separates the first from the last
// is gomoqt's design and quic-go's version, what separates the middle one
// from the last is quic-go's version alone. The bare058 relay is loaded by
// this process's bare publisher and subscribers, as the bare one is.
func BenchmarkRelayQUICVersion(b *testing.B) {
	const n = 100
	kinds := []RelayKind{Gomoqt, Bare058, Bare}
	gomoqt := &gomoqtBuild{parent: b}
	results := make(map[string][]Result)
	for _, lr := range relayLoads {
		for _, kind := range kinds {
			name := fmt.Sprintf("%s/%s/subs=%d", lr.load.Name, kind, n)
			b.Run(name, func(b *testing.B) {
				cfg := Config{Relay: kind, Load: lr.load, Subscribers: n}
				if kind != Bare {
					cfg.GomoqtBinary = gomoqt.binary(b)
				}
				results[name] = append(results[name], benchRelay(b, cfg, lr.warmup, lr.window))
			})
		}
	}
	if s := comparison(results, kinds); s != "" {
		b.Log("gomoqt and the bare relay on quic-go v0.58.0 against the bare relay on v0.64.1 (×bare):\n" + s)
	}
}

// gomoqtBuild builds the gomoqt contender once per benchmark, into the
// parent benchmark's temporary directory, when a row first needs it.
type gomoqtBuild struct {
	parent *testing.B
	once   sync.Once
	path   string
	err    error
}

// binary returns the contender's binary, or skips b with the reason it
// could not be built.
func (g *gomoqtBuild) binary(b *testing.B) string {
	g.once.Do(func() {
		start := time.Now()
		g.path, g.err = BuildGomoqt(g.parent.TempDir())
		if g.err != nil {
			// On stderr too: a skipped benchmark says why only with -v.
			fmt.Fprintf(os.Stderr, "bench: gomoqt rows skipped, the contender did not build: %v\n", g.err)
		} else {
			g.parent.Logf("built the gomoqt contender in %v", time.Since(start).Round(time.Millisecond))
		}
	})
	if g.err != nil {
		b.Skipf("gomoqt contender not built: %v", g.err)
	}
	return g.path
}

// allocLoads are the loads of BenchmarkRelayAllocs with their warm-up.
// Steady state begins once the relay's track cache (16 MiB by default) is
// full and evicts a group for every group that arrives: until then every
// payload byte received is new memory. That takes about 22 s at the media
// load's 6 Mbit/s. The long load has groups of the max load's size in ten
// times as many frames (600 of 6 KiB): allocations that come per group
// show as a tenth per frame there, allocations per frame would not shrink.
var allocLoads = []struct {
	load   Load
	warmup time.Duration
}{
	{Media, 25 * time.Second},
	{Max, 2 * time.Second},
	{Load{Name: "long", FrameSize: 6 << 10, KeyframeSize: 6 << 10, FramesPerGroup: 600}, 2 * time.Second},
}

// BenchmarkRelayAllocs counts what the relay allocates in steady state per
// delivered frame and per delivered group, split by owner: the moqbridge
// protocol code, quic-go, the benchmark's own code (the bare relay; the
// child's stats reporting), the runtime. The relay child records every
// allocation (see AllocsEnv), which slows it down: take throughput and CPU
// from BenchmarkRelay, allocation counts from here.
func BenchmarkRelayAllocs(b *testing.B) {
	const window = 5 * time.Second
	for _, al := range allocLoads {
		for _, n := range []int{1, 10} {
			for _, kind := range []RelayKind{MOQ, Bare} {
				b.Run(fmt.Sprintf("%s/%s/subs=%d", al.load.Name, kind, n), func(b *testing.B) {
					cfg := Config{Relay: kind, Load: al.load, Subscribers: n, ExactAllocs: true}
					res := benchRelay(b, cfg, al.warmup, window)
					b.ReportMetric(res.OwnerAllocsPerFrame(OwnerProtocol), "protocol-allocs/frame")
					b.ReportMetric(res.OwnerAllocsPerFrame(OwnerQUIC), "quic-allocs/frame")
					b.ReportMetric(res.OwnerAllocsPerFrame(OwnerBench), "bench-allocs/frame")
					b.ReportMetric(res.OwnerAllocsPerFrame(OwnerOther), "runtime-allocs/frame")
					if groups := res.Groups + res.IncompleteGroups; groups > 0 {
						b.ReportMetric(float64(res.RelayAllocsBy[OwnerProtocol])/float64(groups), "protocol-allocs/group")
					}
				})
			}
		}
	}
}

// idleLoad is a trickle, 2 frames of 1 kB per second: what the relay
// spends then is the fixed cost of keeping subscribers connected (timers,
// keep-alives, control streams), not forwarding.
var idleLoad = Load{Name: "idle", FrameSize: 1000, KeyframeSize: 1000, FramesPerGroup: 10, FPS: 2}

// BenchmarkRelayIdle measures that fixed cost with 100 subscribers, as
// relay CPU per second per subscriber, for the three relays.
func BenchmarkRelayIdle(b *testing.B) {
	const n = 100
	gomoqt := &gomoqtBuild{parent: b}
	for _, kind := range RelayKinds {
		b.Run(fmt.Sprintf("%s/subs=%d", kind, n), func(b *testing.B) {
			cfg := Config{Relay: kind, Load: idleLoad, Subscribers: n}
			if kind == Gomoqt {
				cfg.GomoqtBinary = gomoqt.binary(b)
			}
			res := benchRelay(b, cfg, 2*time.Second, 10*time.Second)
			b.ReportMetric(res.RelayCPU.Seconds()*1e6/res.Wall.Seconds()/n, "relay-us/s/sub")
		})
	}
}

// benchRelay starts one run, measures it and reports its figures.
func benchRelay(b *testing.B, cfg Config, warmup, window time.Duration) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := Start(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(run.Close)
	b.ResetTimer()
	res, err := run.Measure(ctx, warmup, window)
	b.StopTimer()
	// Stop now rather than at cleanup, so this run's teardown does not
	// compete for the CPU with the next run.
	run.Close()
	if err != nil {
		b.Fatal(err)
	}
	if res.Corrupt > 0 {
		b.Errorf("%d frames arrived altered", res.Corrupt)
	}
	report(b, cfg, res)
	return res
}

func report(b *testing.B, cfg Config, res Result) {
	b.ReportMetric(0, "ns/op") // one run per benchmark: ns/op means nothing
	b.ReportMetric(res.DeliveredMbps(), "Mbit/s")
	b.ReportMetric(res.PublishedMbps(), "pub-Mbit/s")
	b.ReportMetric(res.CPUPerGB(), "relay-CPU-s/GB")
	b.ReportMetric(res.RelayCores(), "relay-cores")
	b.ReportMetric(res.BenchCores(), "bench-cores")
	b.ReportMetric(res.OtherCores(), "other-cores")
	b.ReportMetric(ms(res.P50), "p50-ms")
	b.ReportMetric(ms(res.P99), "p99-ms")
	b.ReportMetric(ms(res.Max), "max-ms")
	b.ReportMetric(float64(res.Frames), "frames")
	b.ReportMetric(float64(lostFrames(cfg, res)), "frames-lost")
	b.ReportMetric(float64(res.Groups), "groups")
	b.ReportMetric(float64(res.RelayGroupsDropped), "groups-dropped")
	b.ReportMetric(float64(res.IncompleteGroups), "groups-incomplete")
	b.ReportMetric(res.AllocsPerFrame(), "relay-allocs/frame")
	b.ReportMetric(float64(res.RelayHeap)/(1<<20), "relay-heap-MiB")
	b.ReportMetric(mib(res.RelayRSS), "relay-RSS-MiB")
	b.ReportMetric(mib(res.SubscriberRSS), "sub-RSS-MiB")
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// lostFrames estimates the frames some subscriber never got: every
// subscriber should receive every published frame. Frames in flight at the
// window's edges make it approximate, hence the floor at zero.
func lostFrames(cfg Config, res Result) uint64 {
	want := uint64(cfg.Subscribers) * res.PublishedFrames
	if res.Frames >= want {
		return 0
	}
	return want - res.Frames
}

// comparison tabulates every relay of kinds against the bare one of the
// same repetition, for every load and N the bare relay ran.
func comparison(results map[string][]Result, kinds []RelayKind) string {
	var sb strings.Builder
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "load\tN\trelay\trun\tMbit/s\t×bare\trelay CPU s/GB\t×bare\trelay RSS MiB\tgroups reset\tincomplete at subs\tp99 ms\tsub RSS MiB\tbench cores\tother cores\t")
	rows := 0
	for _, lr := range relayLoads {
		for _, n := range relaySubscribers {
			name := func(k RelayKind) string { return fmt.Sprintf("%s/%s/subs=%d", lr.load.Name, k, n) }
			for i, bare := range results[name(Bare)] {
				for _, kind := range kinds {
					if i >= len(results[name(kind)]) {
						continue
					}
					res := results[name(kind)][i]
					fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.0f\t%.1f %%\t%d\t%.1f\t%.0f\t%.2f\t%.2f\t\n",
						lr.load.Name, n, kind, i+1, res.DeliveredMbps(), ratio(res.DeliveredMbps(), bare.DeliveredMbps()),
						res.CPUPerGB(), ratio(res.CPUPerGB(), bare.CPUPerGB()), mib(res.RelayRSS),
						100*res.GroupsResetShare(), res.IncompleteGroups, ms(res.P99), mib(res.SubscriberRSS),
						res.BenchCores(), res.OtherCores())
					rows++
				}
			}
		}
	}
	if rows == 0 || w.Flush() != nil {
		return ""
	}
	return sb.String()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

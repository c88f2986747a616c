package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestHarnessSmoke runs the harness briefly against the moq and bare
// relays with one subscriber: every frame must arrive byte-exact and every
// figure the benchmark reports must have been measured.
func TestHarnessSmoke(t *testing.T) {
	for _, kind := range []RelayKind{MOQ, Bare} {
		t.Run(string(kind), func(t *testing.T) {
			smoke(t, Config{Relay: kind, Load: smokeLoad, Subscribers: 1})
		})
	}
}

// gomoqtSmokeEnv, set to 1, makes TestGomoqtSmoke run: it builds the
// gomoqt contender (bench/gomoqt), which takes a while on a cold build
// cache and needs its module's dependencies, so `go test ./...` leaves it
// out.
const gomoqtSmokeEnv = "MOQBRIDGE_BENCH_GOMOQT"

// TestGomoqtSmoke does for the gomoqt contender, and for the bare relay on
// its quic-go, what TestHarnessSmoke does for the other relays, with two
// subscribers.
func TestGomoqtSmoke(t *testing.T) {
	if os.Getenv(gomoqtSmokeEnv) != "1" {
		t.Skipf("set %s=1 to build and smoke-test the gomoqt contender", gomoqtSmokeEnv)
	}
	bin, err := BuildGomoqt(t.TempDir())
	if err != nil {
		t.Skipf("the gomoqt contender did not build: %v", err)
	}
	for _, kind := range []RelayKind{Gomoqt, Bare058} {
		t.Run(string(kind), func(t *testing.T) {
			smoke(t, Config{Relay: kind, Load: smokeLoad, Subscribers: 2, GomoqtBinary: bin})
		})
	}
}

// smokeLoad has small, fast groups so a one-second window sees several
// complete ones.
var smokeLoad = Load{Name: "smoke", FrameSize: 3000, KeyframeSize: 12_000, FramesPerGroup: 10, FPS: 100}

func smoke(t *testing.T, cfg Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(run.Close)
	res, err := run.Measure(ctx, 200*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Corrupt != 0 {
		t.Errorf("%d frames arrived altered", res.Corrupt)
	}
	if lost := lostFrames(cfg, res); float64(lost) > 0.05*float64(res.Frames) {
		t.Errorf("%d of %d frames lost", lost, uint64(cfg.Subscribers)*res.PublishedFrames)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"frames", float64(res.Frames)},
		{"complete groups", float64(res.Groups)},
		{"delivered Mbit/s", res.DeliveredMbps()},
		{"relay CPU per GB", res.CPUPerGB()},
		{"relay allocations per frame", res.AllocsPerFrame()},
		{"relay RSS", float64(res.RelayRSS)},
		{"subscriber process RSS", float64(res.SubscriberRSS)},
		{"load generator CPU", float64(res.BenchCPU)},
		{"p50 latency", ms(res.P50)},
		{"p99 latency", ms(res.P99)},
	} {
		if f.v <= 0 {
			t.Errorf("%s = %v, want > 0", f.name, f.v)
		}
	}
	t.Logf("%s: %.1f Mbit/s, %d frames, %d groups, p50 %.2f ms, p99 %.2f ms, %.1f relay CPU-s/GB, %.1f allocs/frame, relay RSS %.0f MiB, subscriber process RSS %.0f MiB",
		cfg.Relay, res.DeliveredMbps(), res.Frames, res.Groups, ms(res.P50), ms(res.P99), res.CPUPerGB(), res.AllocsPerFrame(), mib(res.RelayRSS), mib(res.SubscriberRSS))
}

// TestAllocAttribution: a relay child started with ExactAllocs reports its
// allocations per owner, and they add up to its whole allocation count.
func TestAllocAttribution(t *testing.T) {
	load := Load{Name: "smoke", FrameSize: 3000, KeyframeSize: 12_000, FramesPerGroup: 10, FPS: 100}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := Start(ctx, Config{Relay: MOQ, Load: load, Subscribers: 1, ExactAllocs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(run.Close)
	res, err := run.Measure(ctx, 200*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, n := range res.RelayAllocsBy {
		sum += n
	}
	if res.RelayAllocsBy[OwnerProtocol] == 0 || res.RelayAllocsBy[OwnerQUIC] == 0 {
		t.Errorf("allocations by owner %v: protocol and quic-go should both have some", res.RelayAllocsBy)
	}
	// MemStats counts what the profile does, plus the profile reading's own
	// allocations made after it; allow for those.
	if sum > res.RelayMallocs || float64(sum) < 0.9*float64(res.RelayMallocs) {
		t.Errorf("allocations by owner add up to %d, the relay counted %d", sum, res.RelayMallocs)
	}
	t.Logf("per frame: protocol %.2f, quic-go %.2f, bench %.2f, runtime %.2f (all: %.2f)",
		res.OwnerAllocsPerFrame(OwnerProtocol), res.OwnerAllocsPerFrame(OwnerQUIC), res.OwnerAllocsPerFrame(OwnerBench),
		res.OwnerAllocsPerFrame(OwnerOther), res.AllocsPerFrame())
}

// TestFrameCheck: the byte check accepts exactly the frame that was
// stamped.
func TestFrameCheck(t *testing.T) {
	l := Load{FrameSize: 100, KeyframeSize: 400, FramesPerGroup: 3}
	sent := time.Unix(0, 1_700_000_000_123_456_789)
	frame := func(seq uint64, idx int) []byte {
		p := make([]byte, l.frameSize(idx))
		stamp(p, seq, idx, sent)
		return p
	}
	if got, ok := l.check(frame(7, 1), 7, 1); !ok || !got.Equal(sent) {
		t.Fatalf("check(stamped frame) = %v, %v; want %v, true", got, ok, sent)
	}
	flipped := frame(7, 0)
	flipped[len(flipped)-1] ^= 1
	for name, c := range map[string]struct {
		p        []byte
		seq      uint64
		idx      int
		wantPass bool
	}{
		"keyframe":         {frame(7, 0), 7, 0, true},
		"flipped byte":     {flipped, 7, 0, false},
		"other group":      {frame(8, 1), 7, 1, false},
		"other index":      {frame(7, 2), 7, 1, false},
		"truncated":        {frame(7, 1)[:99], 7, 1, false},
		"beyond the group": {frame(7, 1), 7, 3, false},
	} {
		if _, ok := l.check(c.p, c.seq, c.idx); ok != c.wantPass {
			t.Errorf("%s: check passed = %v, want %v", name, ok, c.wantPass)
		}
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	if p := percentile(s, 0.5); p != 50 {
		t.Errorf("p50 = %v, want 50", p)
	}
	if p := percentile(s, 0.99); p != 99 {
		t.Errorf("p99 = %v, want 99", p)
	}
	if p := percentile(nil, 0.99); p != 0 {
		t.Errorf("p99 of nothing = %v, want 0", p)
	}
}

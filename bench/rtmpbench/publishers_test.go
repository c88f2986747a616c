package rtmpbench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/bench"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// The load of BenchmarkRTMPPublishers.
const (
	publishers = 100
	// publisherRamp spreads the publishers' connections.
	publisherRamp = 5 * time.Second
	// publisherSettle runs after the last publisher connected, before the
	// window: gortmplib's 2 s analysis, then the relay's track caches
	// filling to their 30 s (moq's default MaxAge), so that the resident
	// set of the window is the steady one.
	publisherSettle = 40 * time.Second
	// publisherWindow is the measurement window.
	publisherWindow = 30 * time.Second
	// liveCheck is how long each broadcast is watched after the window;
	// liveBatch broadcasts at a time.
	liveCheck = 3 * time.Second
	liveBatch = 25
)

// BenchmarkRTMPPublishers runs 100 RTMP publishers (gortmplib clients in
// this process), each publishing publisherInput (720p30 H.264 at 2.5
// Mbit/s and AAC, read once into memory and looped) in real time, into
// one `moqbridge serve --rtmp` process. It reports serve's CPU (cores)
// and resident set over a window at steady state, and checks that the
// relay announces all 100 broadcasts and, after the window, that each
// delivers live video to a MOQ subscriber. One fixed run whatever b.N is.
func BenchmarkRTMPPublishers(b *testing.B) {
	in, m, serve := prepareServe(b, publisherInput)
	defer serve.stop()
	total := publisherRamp + publisherSettle + publisherWindow + publishers/liveBatch*liveCheck + 30*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), total+time.Minute)
	defer cancel()
	b.Logf("%s; input %s, %d publishers; load average before: %s", binaryNote(), in, publishers, bench.LoadAverage())
	b.ResetTimer()

	origin := moq.NewOrigin()
	defer origin.Close()
	sess, err := protocol.Dial(ctx, serve.quicURL, protocol.WithFingerprint(serve.fp), protocol.WithConsume(origin),
		protocol.WithAnnounceInterest("live"))
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()

	pubCtx, stopPublishers := context.WithCancel(ctx)
	defer stopPublishers()
	paths := make([]string, publishers)
	stats := make([]pubStats, publishers)
	errs := make([]error, publishers)
	late := &maxDuration{}
	var wg sync.WaitGroup
	defer wg.Wait()
	began := time.Now()
	for i := range publishers {
		paths[i] = fmt.Sprintf("live/p%03d", i)
		wg.Go(func() {
			select {
			case <-time.After(time.Duration(i) * publisherRamp / publishers):
			case <-pubCtx.Done():
				return
			}
			stats[i], errs[i] = publishRTMP(pubCtx, serve.rtmpAddr, "live", fmt.Sprintf("p%03d", i), m,
				pubOptions{length: total, late: late})
		})
	}
	// Every broadcast announced.
	if err := waitAnnounced(ctx, origin, paths, publisherRamp+20*time.Second); err != nil {
		b.Fatalf("%v%s", err, serve.stderr.Note(""))
	}
	b.Logf("all %d broadcasts announced %v after the first publisher connected", publishers, time.Since(began).Round(100*time.Millisecond))

	// Steady state: resident set sampled while the caches fill.
	var series []string
	settleEnd := began.Add(publisherRamp + publisherSettle)
	for time.Now().Before(settleEnd) {
		time.Sleep(min(5*time.Second, time.Until(settleEnd)))
		if st, err := readProc(serve.pid()); err == nil {
			series = append(series, fmt.Sprintf("%.0fs %.0f", time.Since(began).Seconds(), mib(st.RSS)))
		}
	}
	if err := resetPeak(serve.pid()); err != nil {
		b.Logf("cannot reset serve's peak RSS (%v): the peak is since its start", err)
	}
	st0, err := readProc(serve.pid())
	if err != nil {
		b.Fatal(err)
	}
	late.reset()
	busy0, self0, start := bench.MachineBusy(), bench.SelfCPU(), time.Now()
	for end := start.Add(publisherWindow); time.Now().Before(end); {
		time.Sleep(min(5*time.Second, time.Until(end)))
		if st, err := readProc(serve.pid()); err == nil {
			series = append(series, fmt.Sprintf("%.0fs %.0f", time.Since(began).Seconds(), mib(st.RSS)))
		}
	}
	st1, err := readProc(serve.pid())
	if err != nil {
		b.Fatal(err)
	}
	wall := time.Since(start)
	serveCPU, benchCPU := st1.CPU-st0.CPU, bench.SelfCPU()-self0
	other := bench.MachineBusy() - busy0 - serveCPU - benchCPU
	windowLate := late.reset()
	b.StopTimer()
	announced := countAnnounced(origin, paths)

	// Every broadcast live: its video reaches a MOQ subscriber, in
	// batches, after the window so as not to load serve during it.
	var dead []string
	for lo := 0; lo < publishers; lo += liveBatch {
		var mu sync.Mutex
		var lwg sync.WaitGroup
		for _, p := range paths[lo:min(lo+liveBatch, publishers)] {
			lwg.Go(func() {
				if n, err := liveFrames(ctx, origin, p); err != nil || n < 30 {
					mu.Lock()
					dead = append(dead, fmt.Sprintf("%s (%d frames in the last 1.5 s; %v)", p, n, err))
					mu.Unlock()
				}
			})
		}
		lwg.Wait()
	}
	stopPublishers()
	wg.Wait()
	var failed []string
	var maxLate time.Duration
	var bytes uint64
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", paths[i], err))
		}
		maxLate = max(maxLate, stats[i].maxLate)
		bytes += stats[i].bytes
	}

	cores := serveCPU.Seconds() / wall.Seconds()
	b.ReportMetric(cores, "serve-cores")
	b.ReportMetric(mib(st1.RSS), "serve-rss-MiB")
	b.ReportMetric(mib(st1.HWM), "serve-peak-MiB")
	b.ReportMetric(float64(announced), "announced")
	b.ReportMetric(float64(publishers-len(dead)), "live")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d RTMP publishers (720p30 2.5 Mbit/s + AAC, real time) into one serve, %v window at steady state:\n"+
		"  serve: %.3f cores (%.2f ms of CPU per publisher-second), RSS %.0f MiB at the end, peak %.0f MiB in the window\n"+
		"  serve RSS every 5 s, the window the last 30 s (time since the first publisher: MiB): %s\n"+
		"  this process (publishers, one MOQ session): %.3f cores; other load %.2f cores; in the window publishers at most %v behind schedule (over the whole run %v); %.1f Mbit/s sent in all\n"+
		"  announced by the relay: %d of %d; delivering live video afterwards: %d of %d",
		publishers, publisherWindow, cores, serveCPU.Seconds()*1000/wall.Seconds()/publishers, mib(st1.RSS), mib(st1.HWM),
		strings.Join(series, ", "), benchCPU.Seconds()/wall.Seconds(), other.Seconds()/wall.Seconds(),
		windowLate.Round(time.Millisecond), maxLate.Round(time.Millisecond), float64(bytes)*8/time.Since(began).Seconds()/1e6,
		announced, publishers, publishers-len(dead), publishers)
	if s := serve.stderr.String(); s != "" {
		b.Logf("serve's stderr (the last %d KiB):\n%s", bench.TailSize>>10, s)
	}
	if len(failed) > 0 {
		b.Errorf("%d publishers failed: %s%s", len(failed), strings.Join(failed, "; "), serve.stderr.Note(""))
	}
	if announced != publishers {
		b.Errorf("the relay announces %d of %d broadcasts", announced, publishers)
	}
	if len(dead) > 0 {
		b.Errorf("%d broadcasts not live: %s", len(dead), strings.Join(dead, "; "))
	}
}

// waitAnnounced waits until origin (fed by a session's announcements)
// has every path, for up to wait.
func waitAnnounced(ctx context.Context, origin *moq.Origin, paths []string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		n := countAnnounced(origin, paths)
		if n == len(paths) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d broadcasts announced after %v", n, len(paths), wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// countAnnounced counts the paths origin has a broadcast at.
func countAnnounced(origin *moq.Origin, paths []string) int {
	n := 0
	for _, p := range paths {
		if _, err := origin.Consume(p); err == nil {
			n++
		}
	}
	return n
}

// liveFrames subscribes to the video of the broadcast at path for
// liveCheck and counts the frames that arrived in its last 1.5 s: the
// subscription starts with what the relay holds of the current group, at
// once, so only frames arriving later show the broadcast live.
func liveFrames(ctx context.Context, origin *moq.Origin, path string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, liveCheck)
	defer cancel()
	from := time.Now().Add(liveCheck - 1500*time.Millisecond)
	n := 0
	err := subscribe(ctx, origin, path, moq.FromLatest, func(sdk.Frame) {
		if time.Now().After(from) {
			n++
		}
	})
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return n, err
}

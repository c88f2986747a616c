package rtpbench

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/bench"
	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	rtpsink "github.com/moqbridge/moqbridge/sinks/rtp"
	fmp4src "github.com/moqbridge/moqbridge/sources/fmp4"
)

// The windows of BenchmarkRTPSink.
const (
	sinkWarmup = 3 * time.Second  // after the sinks start, before the window
	sinkWindow = 10 * time.Second // each measured span
)

// sinkPath is the broadcast the RTP sinks send.
const sinkPath = "bench/out"

// BenchmarkRTPSink sends one broadcast out through N RTP sinks
// (sinks/rtp, through sdk.Consume) to a discard receiver in a child
// process (the fan-out without receivers, counting datagrams). The
// broadcast is recordClip played in real time by sources/fmp4 (remuxed to
// MP4), so each sink sends 720p30 H.264 at 3 Mbit/s and Opus as the
// sink paces them: in real time. It measures this process's CPU over a
// window without sinks, then over one with them: the difference is the
// sinks', reported per packet sent (packets per CPU-second) and per minute
// of media of each sink. Every packet the sinks sent must reach the
// receiver, and no frame may be dropped in the window (each sink starts
// at the newest keyframe, skipping what the broadcast's cache held
// before it: that is not counted). N is 1, and 20 for the cost per packet under more load. One
// fixed run whatever b.N is.
func BenchmarkRTPSink(b *testing.B) {
	testkit.NeedFFmpeg(b)
	mkv, err := ensureClip(recordClip)
	if err != nil {
		b.Fatal(err)
	}
	clip := filepath.Join(b.TempDir(), "clip.mp4")
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", mkv,
		"-c", "copy", "-f", "mp4", clip).CombinedOutput(); err != nil {
		b.Fatalf("remuxing the clip to MP4: %v\n%s", err, out)
	}
	// The code was compiled when the run began: its revision is taken
	// now, not as the work tree moves during the run.
	rev := bench.Revision("../..")
	for _, n := range []int{1, 20} {
		b.Run(fmt.Sprintf("sinks=%d", n), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*sinkWindow+sinkWarmup+time.Minute)
			defer cancel()
			b.Logf("code %s; load average before: %s", rev, bench.LoadAverage())
			res, err := measureSinks(ctx, clip, n)
			if err != nil {
				b.Fatal(err)
			}
			cpu := res.cpu - res.baseline
			b.ReportMetric(float64(res.packets)/res.wall.Seconds(), "packets/s")
			b.ReportMetric(float64(res.packets)/cpu.Seconds(), "packets/cpu-s")
			b.ReportMetric(cpu.Seconds()/(float64(n)*res.wall.Minutes()), "cpu-s/media-min/sink")
			b.ReportMetric(0, "ns/op")
			b.Logf("%d RTP sinks, window %.1f s: %d packets sent (%.0f/s, %.1f Mbit/s), %d frames, %d sender reports\n"+
				"  this process: %.3f CPU-s in the window, %.3f in the window without sinks (the source) → the sinks %.3f CPU-s: %.0f packets per CPU-second, %.3f CPU-s per media minute per sink\n"+
				"  receiver: %d datagrams in all, %d sent in all; frames dropped in the window %d, send errors %d; other load %.2f cores",
				n, res.wall.Seconds(), res.packets, float64(res.packets)/res.wall.Seconds(), float64(res.bytes)*8/res.wall.Seconds()/1e6,
				res.frames, res.reports, res.cpu.Seconds(), res.baseline.Seconds(), cpu.Seconds(),
				float64(res.packets)/cpu.Seconds(), cpu.Seconds()/(float64(n)*res.wall.Minutes()),
				res.received, res.sentAll, res.dropped, res.sendErrors, res.other.Seconds()/res.wall.Seconds())
			if res.received != res.sentAll || res.sendErrors != 0 || res.dropped != 0 {
				b.Errorf("the receiver got %d datagrams of %d sent; %d frames dropped, %d send errors", res.received, res.sentAll, res.dropped, res.sendErrors)
			}
		})
	}
}

// sinkResult is one measurement of measureSinks.
type sinkResult struct {
	wall            time.Duration // the window with sinks (the one without is as long)
	cpu, baseline   time.Duration // this process's CPU in the window with sinks, and in the one without
	other           time.Duration // the rest of the machine in the window with sinks
	packets, bytes  uint64        // RTP packets and bytes the sinks sent in the window
	frames, reports uint64        // frames and RTCP sender reports in the window
	sentAll         uint64        // every datagram the sinks sent, RTP and RTCP, from their start
	received        uint64        // every datagram the receiver got
	dropped         uint64        // frames the sinks skipped to stay live in the window
	sendErrors      uint64
}

// measureSinks plays clip into an Origin, measures a window, then starts
// n RTP sinks sending it to the discard receiver and measures a window
// after the warm-up.
func measureSinks(ctx context.Context, clip string, n int) (sinkResult, error) {
	var res sinkResult
	logs := &bench.TailBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bases, err := freeUDPRuns(n, 4)
	if err != nil {
		return res, err
	}
	var listen []netip.AddrPort
	for _, p := range bases {
		for q := p; q < p+4; q++ {
			listen = append(listen, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(q)))
		}
	}
	recv, err := startFanout(ctx, listen, nil)
	if err != nil {
		return res, err
	}
	recvStopped := false
	defer func() {
		if !recvStopped {
			_, _ = recv.stop()
		}
	}()

	origin := moq.NewOrigin()
	defer origin.Close()
	src, err := fmp4src.Open(clip, fmp4src.Options{Loop: true})
	if err != nil {
		return res, err
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	wg.Go(func() { _ = sdk.Publish(runCtx, origin, sinkPath, src, sdk.PublishOptions{}) })
	if _, err := sdk.WaitBroadcast(ctx, origin, sinkPath, 10*time.Second); err != nil {
		return res, fmt.Errorf("the clip's broadcast: %w", err)
	}
	if err := bench.Sleep(ctx, sinkWarmup); err != nil {
		return res, err
	}
	cpu0, start := bench.SelfCPU(), time.Now()
	if err := bench.Sleep(ctx, sinkWindow); err != nil {
		return res, err
	}
	res.baseline = time.Duration(float64(bench.SelfCPU()-cpu0) * float64(sinkWindow) / float64(time.Since(start)))

	sinks := make([]*rtpsink.Sink, n)
	errs := make(chan error, n)
	for i, p := range bases {
		s, err := rtpsink.New(rtpsink.Config{Dest: fmt.Sprintf("127.0.0.1:%d", p), Logger: logger})
		if err != nil {
			return res, err
		}
		sinks[i] = s
		wg.Go(func() {
			if err := sdk.Consume(runCtx, origin, sinkPath, s, sdk.ConsumeOptions{}); err != nil {
				errs <- err
			}
		})
	}
	if err := bench.Sleep(ctx, sinkWarmup); err != nil {
		return res, err
	}
	sum := func() rtpsink.Stats {
		var t rtpsink.Stats
		for _, s := range sinks {
			st := s.Stats()
			t.Packets += st.Packets
			t.Bytes += st.Bytes
			t.Frames += st.Frames
			t.SenderReports += st.SenderReports
			t.DroppedFrames += st.DroppedFrames
			t.SendErrors += st.SendErrors
		}
		return t
	}
	before, busy0 := sum(), bench.MachineBusy()
	cpu0, start = bench.SelfCPU(), time.Now()
	if err := bench.Sleep(ctx, sinkWindow); err != nil {
		return res, err
	}
	res.cpu, res.wall = bench.SelfCPU()-cpu0, time.Since(start)
	after := sum()
	res.other = bench.MachineBusy() - busy0 - res.cpu
	res.baseline = time.Duration(float64(res.baseline) * float64(res.wall) / float64(sinkWindow))
	res.packets, res.bytes = after.Packets-before.Packets, after.Bytes-before.Bytes
	res.frames, res.reports = after.Frames-before.Frames, after.SenderReports-before.SenderReports
	res.dropped = after.DroppedFrames - before.DroppedFrames

	// Stop the sinks (each sends a last report and a BYE), then count
	// what the receiver got of everything sent.
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		return res, fmt.Errorf("an RTP sink: %w%s", err, logs.Note("sinks"))
	}
	final := sum()
	res.sentAll = final.Packets + final.SenderReports
	res.sendErrors = final.SendErrors
	time.Sleep(200 * time.Millisecond) // the last datagrams into the receiver's sockets
	counts, _ := recv.stop()
	recvStopped = true
	for _, d := range counts.Datagrams {
		res.received += d
	}
	return res, nil
}

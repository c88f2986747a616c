package rtpbench

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/bench"
	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sinks/fmp4"
	"github.com/moqbridge/moqbridge/sources/rtp"
)

// SecondsEnv sets the media length of BenchmarkRTPRecord in seconds
// (default 20; 60 for the figures of docs/benchmarks.md).
const SecondsEnv = "MOQBRIDGE_RTPBENCH_SECONDS"

// recordClip is BenchmarkRTPRecord's input: 720p30 H.264 at 3 Mbit/s and
// 96 kbit/s Opus; its length is SecondsEnv's.
var recordClip = clipSpec{width: 1280, height: 720, fps: 30, videoKbps: 3000, seconds: 20}

// sourceTimeout is the RTP source's Timeout in the benchmark: the
// broadcast, and with it the recording, ends this long after the sender's
// last packet.
const sourceTimeout = 2 * time.Second

// recordPath is the broadcast the in-process recorder writes.
const recordPath = "bench/rtp"

// recorder is what one receiver cost and recorded.
type recorder struct {
	name string
	cpu  time.Duration
	file string
}

// recordResult is one run of BenchmarkRTPRecord.
type recordResult struct {
	moqbridge, ffmpeg recorder
	sender, fanout    time.Duration // CPU of the sending ffmpeg and of the fan-out (not counted)
	counts            FanoutCounts
	source            []rtp.MediaStats
	wall              time.Duration
	other             time.Duration // CPU the rest of the machine used meanwhile
}

// BenchmarkRTPRecord sends the clip with one ffmpeg over RTP (H.264 +
// Opus, real time) to a UDP fan-out (a child process) that forwards every
// datagram, RTP and RTCP, to two receivers recording at the same time
// from the same SDP: (a) moqbridge in this process, sources/rtp published
// into an Origin through sdk.Publish and recorded by sinks/fmp4 through
// sdk.Consume; (b) `ffmpeg -protocol_whitelist file,udp,rtp -i b.sdp -c
// copy -f mp4 -movflags +frag_keyframe+empty_moov`. It reports each
// one's CPU seconds per minute of media — (a) this process's user +
// system time over the run, (b) the receiving ffmpeg's — and their ratio,
// and checks both recordings: packets against the clip's, and the checks
// of check-fmp4.sh (testkit.CheckFMP4). One fixed run whatever b.N is.
func BenchmarkRTPRecord(b *testing.B) {
	testkit.NeedFFmpeg(b)
	spec := recordClip
	if v := os.Getenv(SecondsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			b.Fatalf("%s=%q: want a number of seconds, at least 2", SecondsEnv, v)
		}
		spec.seconds = n
	}
	clip, err := ensureClip(spec)
	if err != nil {
		b.Fatal(err)
	}
	inVideo, inAudio, err := streamPackets(clip)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(spec.seconds)*time.Second+2*time.Minute)
	defer cancel()
	dir := b.TempDir()
	sdp, err := senderSDP(ctx, clip, dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("code %s; clip %s: %d video, %d audio packets; load average before: %s",
		bench.Revision("../.."), clip, inVideo, inAudio, loadAverage())
	b.ResetTimer()
	res, err := recordRTP(ctx, clip, sdp, dir)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}

	minutes := float64(inVideo) / float64(spec.fps) / 60
	perMin := func(d time.Duration) float64 { return d.Seconds() / minutes }
	ratio := res.moqbridge.cpu.Seconds() / res.ffmpeg.cpu.Seconds()
	b.ReportMetric(perMin(res.moqbridge.cpu), "moqbridge-cpu-s/min")
	b.ReportMetric(perMin(res.ffmpeg.cpu), "ffmpeg-cpu-s/min")
	b.ReportMetric(ratio, "moqbridge/ffmpeg-cpu")
	b.ReportMetric(0, "ns/op")
	b.Logf("RTP → fMP4, %.2f media minutes, both receivers at once (wall %v, other load %.2f cores):\n"+
		"  %-34s %6.3f CPU-s/media-min\n  %-34s %6.3f CPU-s/media-min\n"+
		"  moqbridge / ffmpeg CPU: %.2f\n"+
		"  not counted: sending ffmpeg %.3f, fan-out %.3f CPU-s/media-min",
		minutes, res.wall.Round(100*time.Millisecond), res.other.Seconds()/res.wall.Seconds(),
		res.moqbridge.name, perMin(res.moqbridge.cpu), res.ffmpeg.name, perMin(res.ffmpeg.cpu), ratio,
		perMin(res.sender), perMin(res.fanout))
	c := res.counts
	b.Logf("sent (datagrams into the fan-out): video %d RTP + %d RTCP, audio %d RTP + %d RTCP; forwarded %d, send errors %d",
		c.Datagrams[0], c.Datagrams[1], c.Datagrams[2], c.Datagrams[3], c.Forwarded, c.SendErrors)
	for i, s := range res.source {
		b.Logf("moqbridge source, media %d: %+v", i, s)
	}
	if want := 2 * (c.Datagrams[0] + c.Datagrams[1] + c.Datagrams[2] + c.Datagrams[3]); c.Forwarded != want || c.SendErrors != 0 {
		b.Errorf("the fan-out forwarded %d datagrams (%d send errors), want %d", c.Forwarded, c.SendErrors, want)
	}
	for i, s := range res.source {
		if s.Packets != c.Datagrams[2*i] || s.Lost+s.Damaged+s.Skipped+s.Invalid != 0 {
			b.Errorf("moqbridge source, media %d: %d packets of %d sent, %d lost, %d damaged, %d skipped, %d invalid",
				i, s.Packets, c.Datagrams[2*i], s.Lost, s.Damaged, s.Skipped, s.Invalid)
		}
	}
	for _, r := range []recorder{res.moqbridge, res.ffmpeg} {
		v, a, err := streamPackets(r.file)
		switch {
		case err != nil:
			b.Errorf("%s: %v", r.name, err)
		case v != inVideo || a != inAudio:
			b.Errorf("%s: %d video and %d audio packets, the clip %d and %d", r.name, v, a, inVideo, inAudio)
		default:
			b.Logf("%s: %d video and %d audio packets, as the clip", r.name, v, a)
		}
		for _, stream := range []string{"v:0", "a:0"} {
			b.Logf("%s %s: %+v", r.name, stream, testkit.CheckFMP4(b, r.file, stream))
		}
	}
}

// recordRTP runs the two receivers, the fan-out and the sender once.
func recordRTP(ctx context.Context, clip, sdp, dir string) (recordResult, error) {
	var res recordResult
	logs := &bench.TailBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// (a) moqbridge: the source listens on free ports now; it runs once
	// the others are ready.
	src, err := rtp.New(rtp.Config{SDP: sdp, Listen: []string{"127.0.0.1:0", "127.0.0.1:0"}, Timeout: sourceTimeout, Logger: logger})
	if err != nil {
		return res, err
	}
	if err := src.Listen(); err != nil {
		return res, err
	}
	defer src.Close()
	var toMoqbridge []netip.AddrPort
	for _, a := range src.Addrs() {
		toMoqbridge = append(toMoqbridge, a.RTP, a.RTCP)
	}

	// (b) ffmpeg: its ports are in its copy of the SDP.
	ports, err := freeUDPPairs(2)
	if err != nil {
		return res, err
	}
	bSDP, err := sdpWithPorts(sdp, ports)
	if err != nil {
		return res, err
	}
	sdpFile := filepath.Join(dir, "b.sdp")
	if err := os.WriteFile(sdpFile, []byte(bSDP), 0o644); err != nil {
		return res, err
	}
	var toFFmpeg []netip.AddrPort
	for _, p := range ports {
		for _, q := range []int{p, p + 1} {
			toFFmpeg = append(toFFmpeg, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(q)))
		}
	}

	fan, err := startFanout(ctx, [][]netip.AddrPort{toMoqbridge, toFFmpeg})
	if err != nil {
		return res, err
	}
	fanStopped := false
	defer func() {
		if !fanStopped {
			_, _ = fan.stop()
		}
	}()

	busy0, self0, start := bench.MachineBusy(), bench.SelfCPU(), time.Now()
	res.ffmpeg = recorder{name: "ffmpeg -i b.sdp -c copy", file: filepath.Join(dir, "ffmpeg.mp4")}
	rec := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-protocol_whitelist", "file,udp,rtp", "-i", sdpFile,
		"-c", "copy", "-f", "mp4", "-movflags", "+frag_keyframe+empty_moov", res.ffmpeg.file)
	recErr := &bench.TailBuffer{}
	rec.Stdout, rec.Stderr = recErr, recErr
	rec.Cancel = func() error { return rec.Process.Signal(os.Interrupt) }
	rec.WaitDelay = processTimeout
	if err := rec.Start(); err != nil {
		return res, err
	}
	recWaited := false
	defer func() {
		if !recWaited {
			_ = rec.Process.Kill()
			_ = rec.Wait()
		}
	}()
	for deadline := time.Now().Add(processTimeout); !udpBound(ports[0]) || !udpBound(ports[1]); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the receiving ffmpeg did not listen on %v%s", ports, recErr.Note(""))
		}
	}

	origin := moq.NewOrigin()
	defer origin.Close()
	sink := fmp4.New(fmp4.Config{Dir: filepath.Join(dir, "moqbridge"), Path: recordPath, Logger: logger})
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	published, recorded := make(chan error, 1), make(chan error, 1)
	go func() { published <- sdk.Publish(runCtx, origin, recordPath, src, sdk.PublishOptions{}) }()
	go func() { recorded <- sdk.Consume(runCtx, origin, recordPath, sink, sdk.ConsumeOptions{}) }()
	waitBoth := func() (errPub, errRec error) { return <-published, <-recorded }

	send := exec.CommandContext(ctx, "ffmpeg", senderArgs(clip, fan.inputs, "", "1")...)
	sendErr := &bench.TailBuffer{}
	send.Stdout, send.Stderr = sendErr, sendErr
	if err := send.Run(); err != nil {
		stopRun()
		_, _ = waitBoth()
		return res, fmt.Errorf("sending ffmpeg: %w%s", err, sendErr.Note(""))
	}
	res.sender = exitCPU(send.ProcessState)

	// The fan-out has nothing left to forward once the loopback sockets
	// drained; a moment later its counts are final.
	time.Sleep(300 * time.Millisecond)
	res.counts, res.fanout = fan.stop()
	fanStopped = true

	// The source ends sourceTimeout after the last packet, then the
	// broadcast, then the recording.
	errPub, errRec := waitBoth()
	res.moqbridge = recorder{name: "moqbridge (rtp source → fmp4 sink)", cpu: bench.SelfCPU() - self0}
	res.source = src.Stats()
	if errPub == nil || sdk.IsPermanent(errPub) || !strings.Contains(errPub.Error(), "no packets") {
		return res, fmt.Errorf("moqbridge source: %v, want the end of a silent sender%s", errPub, logs.Note("moqbridge"))
	}
	if errRec != nil {
		return res, fmt.Errorf("moqbridge recording: %w%s", errRec, logs.Note("moqbridge"))
	}
	if files := sink.Files(); len(files) != 1 {
		return res, fmt.Errorf("moqbridge recorded %v, want one file%s", files, logs.Note("moqbridge"))
	} else {
		res.moqbridge.file = files[0]
	}

	// ffmpeg ends its recording at an interrupt, as at Ctrl-C.
	_ = rec.Process.Signal(os.Interrupt)
	werr := rec.Wait()
	recWaited = true
	if werr != nil && !isInterrupted(rec.ProcessState) {
		return res, fmt.Errorf("receiving ffmpeg: %w%s", werr, recErr.Note(""))
	}
	res.ffmpeg.cpu = exitCPU(rec.ProcessState)
	res.wall = time.Since(start)
	res.other = bench.MachineBusy() - busy0 - res.moqbridge.cpu - res.ffmpeg.cpu - res.sender - res.fanout
	return res, nil
}

// isInterrupted reports whether ffmpeg exited because of the interrupt
// (ffmpeg exits 255 after a signal).
func isInterrupted(ps *os.ProcessState) bool {
	return ps != nil && ps.ExitCode() == 255
}

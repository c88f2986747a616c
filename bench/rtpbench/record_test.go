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

// recordPath is the broadcast the moqbridge recorders write.
const recordPath = "bench/rtp"

// BinaryEnv names a moqbridge binary for the process variant of
// BenchmarkRTPRecord instead of building one from this module's work tree
// (go build, the default); "off" leaves the variant out.
const BinaryEnv = "MOQBRIDGE_RTPBENCH_BIN"

// recorder is what one receiver cost and recorded.
type recorder struct {
	name string
	cpu  time.Duration
	file string
}

// recordResult is one run of BenchmarkRTPRecord.
type recordResult struct {
	moqbridge, ffmpeg recorder
	process           *recorder     // `moqbridge run -c`, when it ran
	sender, fanout    time.Duration // CPU of the sending ffmpeg and of the fan-out (not counted)
	counts            FanoutCounts
	source            []rtp.MediaStats
	wall              time.Duration
	other             time.Duration // CPU the rest of the machine used meanwhile
}

// BenchmarkRTPRecord sends the clip with one ffmpeg over RTP (H.264 +
// Opus, real time) to a UDP fan-out (a child process) that forwards every
// datagram, RTP and RTCP, to receivers recording at the same time from
// the same SDP: (a) moqbridge in this process, sources/rtp published
// into an Origin through sdk.Publish and recorded by sinks/fmp4 through
// sdk.Consume; (b) `ffmpeg -protocol_whitelist file,udp,rtp -i b.sdp -c
// copy -f mp4 -movflags +frag_keyframe+empty_moov`; (c) `moqbridge run
// -c` with one pipeline, an rtp source and an fmp4 sink (left out when
// BinaryEnv is "off"). It reports each one's CPU seconds per minute of
// media — (a) this process's user + system time over the run, (b) and (c)
// the child's — and their ratios to ffmpeg's, and checks every recording:
// packets against the clip's, and the checks of check-fmp4.sh
// (testkit.CheckFMP4). One fixed run whatever b.N is.
func BenchmarkRTPRecord(b *testing.B) {
	testkit.NeedFFmpeg(b)
	// The code this test binary was compiled from, as near to its build
	// as can be: the work tree may move during the run.
	rev := bench.Revision("../..")
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
	bin, err := moqbridgeBinary(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("code %s; clip %s: %d video, %d audio packets; load average before: %s",
		rev, clip, inVideo, inAudio, bench.LoadAverage())
	b.ResetTimer()
	res, err := recordRTP(ctx, clip, sdp, dir, bin)
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
	recorders := []recorder{res.moqbridge, res.ffmpeg}
	process := ""
	if p := res.process; p != nil {
		pRatio := p.cpu.Seconds() / res.ffmpeg.cpu.Seconds()
		b.ReportMetric(perMin(p.cpu), "run-cpu-s/min")
		b.ReportMetric(pRatio, "run/ffmpeg-cpu")
		process = fmt.Sprintf("  %-34s %6.3f CPU-s/media-min, %.2f of ffmpeg's\n", p.name, perMin(p.cpu), pRatio)
		recorders = append(recorders, *p)
	}
	b.Logf("RTP → fMP4, %.2f media minutes, all receivers at once (wall %v, other load %.2f cores):\n"+
		"  %-34s %6.3f CPU-s/media-min\n  %-34s %6.3f CPU-s/media-min\n"+
		"  moqbridge / ffmpeg CPU: %.2f\n%s"+
		"  not counted: sending ffmpeg %.3f, fan-out %.3f CPU-s/media-min",
		minutes, res.wall.Round(100*time.Millisecond), res.other.Seconds()/res.wall.Seconds(),
		res.moqbridge.name, perMin(res.moqbridge.cpu), res.ffmpeg.name, perMin(res.ffmpeg.cpu), ratio, process,
		perMin(res.sender), perMin(res.fanout))
	c := res.counts
	b.Logf("sent (datagrams into the fan-out): video %d RTP + %d RTCP, audio %d RTP + %d RTCP; forwarded %d, send errors %d",
		c.Datagrams[0], c.Datagrams[1], c.Datagrams[2], c.Datagrams[3], c.Forwarded, c.SendErrors)
	for i, s := range res.source {
		b.Logf("moqbridge source, media %d: %+v", i, s)
	}
	if want := uint64(len(recorders)) * (c.Datagrams[0] + c.Datagrams[1] + c.Datagrams[2] + c.Datagrams[3]); c.Forwarded != want || c.SendErrors != 0 {
		b.Errorf("the fan-out forwarded %d datagrams (%d send errors), want %d", c.Forwarded, c.SendErrors, want)
	}
	for i, s := range res.source {
		if s.Packets != c.Datagrams[2*i] || s.Lost+s.Damaged+s.Skipped+s.Invalid != 0 {
			b.Errorf("moqbridge source, media %d: %d packets of %d sent, %d lost, %d damaged, %d skipped, %d invalid",
				i, s.Packets, c.Datagrams[2*i], s.Lost, s.Damaged, s.Skipped, s.Invalid)
		}
	}
	for _, r := range recorders {
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

// moqbridgeBinary returns the binary of the process variant: BinaryEnv's,
// or this module's command built into dir; "" when BinaryEnv is "off".
func moqbridgeBinary(dir string) (string, error) {
	switch bin := os.Getenv(BinaryEnv); bin {
	case "off":
		return "", nil
	case "":
	default:
		_, err := os.Stat(bin)
		return bin, err
	}
	bin := filepath.Join(dir, "moqbridge")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/moqbridge/moqbridge/cmd/moqbridge").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/moqbridge: %w\n%s", err, out)
	}
	return bin, nil
}

// runConfig is the configuration of the process variant: the relay on
// loopback only, no admin listener, and one pipeline whose rtp source
// takes sdpFile (its own ports) and ends its broadcast sourceTimeout after
// the last packet, recorded by an fmp4 sink under dir.
func runConfig(sdpFile, dir string) string {
	return fmt.Sprintf("server: {listen: 127.0.0.1:0, tcp: \"off\"}\nadmin: {listen: \"\"}\nlog: {level: warn}\npipelines:\n"+
		"  rtp:\n    source: {rtp: {sdp_file: %q, timeout: %s}}\n    path: %s\n    sinks: [fmp4: {dir: %q}]\n",
		sdpFile, sourceTimeout, recordPath, dir)
}

// receiverSDP writes the sender's SDP with two free port pairs of its own
// for a receiver that takes its ports from it, and returns the file and
// the four addresses (RTP and RTCP of each media) the fan-out sends to.
func receiverSDP(sdp, file string) ([]int, []netip.AddrPort, error) {
	ports, err := freeUDPRuns(2, 2)
	if err != nil {
		return nil, nil, err
	}
	text, err := sdpWithPorts(sdp, ports)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		return nil, nil, err
	}
	var to []netip.AddrPort
	for _, p := range ports {
		for _, q := range []int{p, p + 1} {
			to = append(to, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(q)))
		}
	}
	return ports, to, nil
}

// waitBound waits until the child's UDP ports are bound.
func waitBound(ports []int, stderr *bench.TailBuffer, name string) error {
	for deadline := time.Now().Add(processTimeout); ; time.Sleep(20 * time.Millisecond) {
		all := true
		for _, p := range ports {
			all = all && udpBound(p)
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %v%s", name, ports, stderr.Note(""))
		}
	}
}

// child is a receiver running as a child process until interrupted.
type child struct {
	cmd    *exec.Cmd
	stderr *bench.TailBuffer
	waited bool
}

func startChild(ctx context.Context, name string, args ...string) (*child, error) {
	c := &child{cmd: exec.CommandContext(ctx, name, args...), stderr: &bench.TailBuffer{}}
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	c.cmd.Cancel = func() error { return c.cmd.Process.Signal(os.Interrupt) }
	c.cmd.WaitDelay = processTimeout
	return c, c.cmd.Start()
}

// interrupt ends the child as Ctrl-C does and returns its CPU time; an
// exit other than an interrupt's (0, or ffmpeg's 255) is an error.
func (c *child) interrupt() (cpu time.Duration, err error) {
	_ = c.cmd.Process.Signal(os.Interrupt)
	werr := c.cmd.Wait()
	c.waited = true
	if werr != nil && !isInterrupted(c.cmd.ProcessState) {
		return 0, fmt.Errorf("%w%s", werr, c.stderr.Note(""))
	}
	return bench.ExitCPU(c.cmd.ProcessState), nil
}

// kill is for a run that failed.
func (c *child) kill() {
	if !c.waited {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

// recordRTP runs the receivers (moqbridge run only when bin is set), the
// fan-out and the sender once.
func recordRTP(ctx context.Context, clip, sdp, dir, bin string) (recordResult, error) {
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

	// (b) ffmpeg and (c) moqbridge run: their ports are in their copies of
	// the SDP.
	sdpFile := filepath.Join(dir, "b.sdp")
	ports, toFFmpeg, err := receiverSDP(sdp, sdpFile)
	if err != nil {
		return res, err
	}
	dests := [][]netip.AddrPort{toMoqbridge, toFFmpeg}
	var runPorts []int
	runFile, runDir := filepath.Join(dir, "run.yaml"), filepath.Join(dir, "run")
	if bin != "" {
		var toRun []netip.AddrPort
		runSDP := filepath.Join(dir, "c.sdp")
		if runPorts, toRun, err = receiverSDP(sdp, runSDP); err != nil {
			return res, err
		}
		if err := os.WriteFile(runFile, []byte(runConfig(runSDP, runDir)), 0o644); err != nil {
			return res, err
		}
		dests = append(dests, toRun)
	}

	fan, err := startFanout(ctx, nil, dests)
	if err != nil {
		return res, err
	}
	fanStopped := false
	defer func() {
		if !fanStopped {
			_, _ = fan.stop()
		}
	}()

	busy0, start := bench.MachineBusy(), time.Now()
	res.ffmpeg = recorder{name: "ffmpeg -i b.sdp -c copy", file: filepath.Join(dir, "ffmpeg.mp4")}
	rec, err := startChild(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-protocol_whitelist", "file,udp,rtp", "-i", sdpFile,
		"-c", "copy", "-f", "mp4", "-movflags", "+frag_keyframe+empty_moov", res.ffmpeg.file)
	if err != nil {
		return res, err
	}
	defer rec.kill()
	if err := waitBound(ports, rec.stderr, "the receiving ffmpeg"); err != nil {
		return res, err
	}
	var run *child
	if bin != "" {
		if run, err = startChild(ctx, bin, "run", "-c", runFile, "--watch", "0"); err != nil {
			return res, err
		}
		defer run.kill()
		if err := waitBound(runPorts, run.stderr, "moqbridge run"); err != nil {
			return res, err
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

	// This process's CPU from here on is the in-process recorder's: the
	// harness only waits for the sender, then for the recorder.
	self0 := bench.SelfCPU()
	send := exec.CommandContext(ctx, "ffmpeg", senderArgs(clip, fan.inputs, "", "1")...)
	sendErr := &bench.TailBuffer{}
	send.Stdout, send.Stderr = sendErr, sendErr
	if err := send.Run(); err != nil {
		stopRun()
		_, _ = waitBoth()
		return res, fmt.Errorf("sending ffmpeg: %w%s", err, sendErr.Note(""))
	}
	res.sender = bench.ExitCPU(send.ProcessState)

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

	// ffmpeg ends its recording at an interrupt, as at Ctrl-C; moqbridge
	// run's broadcast ended with the in-process one's (the same timeout
	// after the same last packet), its file with it.
	if res.ffmpeg.cpu, err = rec.interrupt(); err != nil {
		return res, fmt.Errorf("receiving ffmpeg: %w", err)
	}
	if run != nil {
		p := &recorder{name: "moqbridge run -c (rtp → fmp4)"}
		if p.cpu, err = run.interrupt(); err != nil {
			return res, fmt.Errorf("moqbridge run: %w", err)
		}
		files, _ := filepath.Glob(filepath.Join(runDir, recordPath, "*.mp4"))
		if len(files) != 1 {
			return res, fmt.Errorf("moqbridge run recorded %v, want one file%s", files, run.stderr.Note(""))
		}
		p.file = files[0]
		res.process = p
	}
	res.wall = time.Since(start)
	res.other = bench.MachineBusy() - busy0 - res.moqbridge.cpu - res.ffmpeg.cpu - res.sender - res.fanout
	if res.process != nil {
		res.other -= res.process.cpu
	}
	return res, nil
}

// isInterrupted reports whether ffmpeg exited because of the interrupt
// (ffmpeg exits 255 after a signal).
func isInterrupted(ps *os.ProcessState) bool {
	return ps != nil && ps.ExitCode() == 255
}

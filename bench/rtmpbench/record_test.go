package rtmpbench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/bench"
)

// ReadrateEnv sets ffmpeg's -readrate for the pushes of
// BenchmarkRTMPRecord: 1 (the default) pushes in real time, as -re and
// an encoder do; 2 pushes the minute in 30 s (CPU per media minute then
// also holds twice the per-second costs' share of work: use 1 for
// figures).
const ReadrateEnv = "MOQBRIDGE_RTMPBENCH_READRATE"

// CheckFMP4Env names the fMP4 checking script (default
// /work/shared/tools/check-fmp4.sh); where it is missing the outputs'
// packet counts are still checked and the run says the script was not.
const CheckFMP4Env = "MOQBRIDGE_CHECK_FMP4"

// recordTimeout bounds each recording run beyond the push itself.
const recordTimeout = 60 * time.Second

// recordRun is what one way of recording cost.
type recordRun struct {
	name  string
	procs []procCost // the measured processes
	push  procCost   // ffmpeg pushing the input (not counted)
	wall  time.Duration
	other time.Duration // CPU the rest of the machine used meanwhile
	file  string        // the recording
}

// procCost is the CPU time and peak resident set of one process.
type procCost struct {
	name string
	cpu  time.Duration
	peak uint64
}

func (r recordRun) cpu() time.Duration {
	var sum time.Duration
	for _, p := range r.procs {
		sum += p.cpu
	}
	return sum
}

// BenchmarkRTMPRecord pushes recordInput with ffmpeg over RTMP and records
// it to fragmented MP4 twice, one after the other: (a) `moqbridge serve
// --rtmp` with `moqbridge record` subscribed over MOQ (two processes), (b)
// `ffmpeg -listen 1 -i rtmp://… -c copy -f mp4 -movflags
// +frag_keyframe+empty_moov`. It reports each process's CPU seconds per
// minute of media (utime + stime) and peak resident set, and checks both
// recordings: as many video and audio packets as the input, and
// check-fmp4.sh clean on both streams. One fixed run whatever b.N is.
func BenchmarkRTMPRecord(b *testing.B) {
	if err := needTools(); err != nil {
		b.Skip(err)
	}
	in, err := ensureInput(recordInput)
	if err != nil {
		b.Fatal(err)
	}
	inVideo, inAudio, err := streamPackets(in)
	if err != nil {
		b.Fatal(err)
	}
	bin, err := buildMoqbridge()
	if err != nil {
		b.Fatal(err)
	}
	rate := "1"
	if v := os.Getenv(ReadrateEnv); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 {
			b.Fatalf("%s=%q: want a positive number", ReadrateEnv, v)
		}
		rate = v
	}
	out := b.TempDir()
	b.Logf("%s; input %s: %d video, %d audio packets; -readrate %s; load average before: %s",
		binaryNote(), in, inVideo, inAudio, rate, bench.LoadAverage())
	b.ResetTimer()

	moqRun, err := recordMOQ(bin, in, rate, filepath.Join(out, "moq"))
	if err != nil {
		b.Fatal(err)
	}
	inProc, err := recordInProcess(bin, in, rate, filepath.Join(out, "inproc"))
	if err != nil {
		b.Fatal(err)
	}
	ff, err := recordFFmpeg(in, rate, filepath.Join(out, "ffmpeg.mp4"))
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()

	minutes := float64(inVideo) / float64(recordInput.fps) / 60
	perMin := func(d time.Duration) float64 { return d.Seconds() / minutes }
	var lines []string
	for _, r := range []recordRun{moqRun, inProc, ff} {
		for _, p := range r.procs {
			lines = append(lines, fmt.Sprintf("  %-26s %6.2f CPU-s/media-min  peak RSS %6.1f MiB", r.name+" "+p.name, perMin(p.cpu), mib(p.peak)))
		}
		lines = append(lines, fmt.Sprintf("  %-26s %6.2f CPU-s/media-min  (wall %v; pushing ffmpeg %.2f CPU-s/media-min, peak RSS %.1f MiB; other load %.2f cores)",
			r.name+" total", perMin(r.cpu()), r.wall.Round(100*time.Millisecond), perMin(r.push.cpu), mib(r.push.peak), r.other.Seconds()/r.wall.Seconds()))
	}
	ratio := moqRun.cpu().Seconds() / ff.cpu().Seconds()
	inRatio := inProc.cpu().Seconds() / ff.cpu().Seconds()
	b.ReportMetric(perMin(moqRun.procs[0].cpu), "serve-cpu-s/min")
	b.ReportMetric(perMin(moqRun.procs[1].cpu), "record-cpu-s/min")
	b.ReportMetric(perMin(moqRun.cpu()), "moq-cpu-s/min")
	b.ReportMetric(perMin(ff.cpu()), "ffmpeg-cpu-s/min")
	b.ReportMetric(perMin(inProc.cpu()), "serve-record-cpu-s/min")
	b.ReportMetric(inRatio, "serve-record/ffmpeg-cpu")
	b.ReportMetric(mib(inProc.procs[0].peak), "serve-record-peak-MiB")
	b.ReportMetric(ratio, "moq/ffmpeg-cpu")
	b.ReportMetric(mib(moqRun.procs[0].peak), "serve-peak-MiB")
	b.ReportMetric(mib(moqRun.procs[1].peak), "record-peak-MiB")
	b.ReportMetric(mib(ff.procs[0].peak), "ffmpeg-peak-MiB")
	b.ReportMetric(0, "ns/op")
	b.Logf("RTMP → fMP4, %.2f media minutes:\n%s\n  moqbridge (serve + record) / ffmpeg CPU: %.2f, serve --record / ffmpeg CPU: %.2f (target ≤ 0.5)",
		minutes, strings.Join(lines, "\n"), ratio, inRatio)

	ref := filepath.Join(out, "reference.mp4")
	if err := remuxReference(in, ref); err != nil {
		b.Fatal(err)
	}
	for _, r := range []recordRun{moqRun, inProc, ff} {
		v, a, err := streamPackets(r.file)
		switch {
		case err != nil:
			b.Errorf("%s: %v", r.name, err)
		case v != inVideo || a != inAudio:
			b.Errorf("%s: %s has %d video and %d audio packets, the input %d and %d", r.name, r.file, v, a, inVideo, inAudio)
		default:
			b.Logf("%s: %d video and %d audio packets, as the input", r.name, v, a)
		}
		for _, stream := range []string{"v:0", "a:0"} {
			report, err := judgeFMP4(r.file, ref, stream)
			if err != nil {
				b.Errorf("%s %s: %v", r.name, stream, err)
			}
			b.Logf("%s %s check-fmp4: %s", r.name, stream, report)
		}
	}
	for _, stream := range []string{"v:0", "a:0"} {
		report, _, _, _ := checkFMP4(ref, stream)
		b.Logf("reference (the input remuxed from the file) %s check-fmp4: %s", stream, report)
	}
}

// recordMOQ runs (a): serve, record subscribed to live/bench, ffmpeg
// pushing the input into serve; serve's figures are read from /proc once
// the recording has ended, before serve is stopped.
func recordMOQ(bin, in, rate, dir string) (recordRun, error) {
	run := recordRun{name: "moqbridge"}
	serve, err := startServe(bin)
	if err != nil {
		return run, err
	}
	defer serve.stop()
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout+pushTime(in, rate))
	defer cancel()
	busy0, self0, start := bench.MachineBusy(), bench.SelfCPU(), time.Now()
	rec := exec.CommandContext(ctx, bin, "record", "--log-level", "warn", "--reconnect=false", "--wait", "30s",
		"--from", "oldest", "-o", dir, "--fingerprint", serve.fpHex, serve.quicURL, "live/bench")
	var recOut bytes.Buffer
	recErr := &bench.TailBuffer{}
	rec.Stdout, rec.Stderr = &recOut, recErr
	rec.Cancel = func() error { return rec.Process.Signal(os.Interrupt) }
	rec.WaitDelay = processTimeout
	if err := rec.Start(); err != nil {
		return run, err
	}
	recPeak := watchPeak(rec.Process.Pid)
	stopServePerf := startPerf("serve", serve.pid())
	stopRecordPerf := startPerf("record", rec.Process.Pid)
	push, err := pushFFmpeg(ctx, in, rate, "rtmp://"+serve.rtmpAddr+"/live/bench")
	werr := rec.Wait()
	peak := recPeak.peak()
	stopRecordPerf()
	if err != nil {
		stopServePerf()
		return run, err
	}
	if werr != nil {
		stopServePerf()
		return run, fmt.Errorf("moqbridge record: %w%s", werr, recErr.Note(""))
	}
	st, err := readProc(serve.pid())
	stopServePerf()
	if err != nil {
		return run, err
	}
	run.wall = time.Since(start)
	run.procs = []procCost{{"serve", st.CPU, st.HWM}, {"record", bench.ExitCPU(rec.ProcessState), peak}}
	run.push = push
	run.other = bench.MachineBusy() - busy0 - (bench.SelfCPU() - self0) - run.cpu() - push.cpu
	files := strings.Fields(recOut.String())
	if len(files) != 1 {
		return run, fmt.Errorf("moqbridge record wrote %d files (%q), want 1%s", len(files), recOut.String(), recErr.Note(""))
	}
	run.file = files[0]
	if s := serve.stderr.String(); s != "" {
		fmt.Fprintf(os.Stderr, "rtmpbench: serve logged:\n%s", s)
	}
	return run, nil
}

// recordInProcess runs (c): serve recording what it ingests by itself
// (--record), ffmpeg pushing the input into it; serve's figures are read
// once the file stopped growing after the push (the broadcast ends with
// the push: no linger).
func recordInProcess(bin, in, rate, dir string) (recordRun, error) {
	run := recordRun{name: "moqbridge"}
	serve, err := startServe(bin, "--rtmp-linger", "0", "--record", dir, "--record-prefix", "live")
	if err != nil {
		return run, err
	}
	defer serve.stop()
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout+pushTime(in, rate))
	defer cancel()
	busy0, self0, start := bench.MachineBusy(), bench.SelfCPU(), time.Now()
	stopPerf := startPerf("serve-record", serve.pid())
	push, err := pushFFmpeg(ctx, in, rate, "rtmp://"+serve.rtmpAddr+"/live/bench")
	if err != nil {
		stopPerf()
		return run, err
	}
	// The file is closed when the broadcast ends: wait until it exists
	// and its size held for a second.
	var file string
	var size int64 = -1
	for stable, deadline := 0, time.Now().Add(processTimeout); stable < 5; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			stopPerf()
			return run, fmt.Errorf("serve --record: no finished file in %s%s", dir, serve.stderr.Note(""))
		}
		files, _ := filepath.Glob(filepath.Join(dir, "live", "bench", "*.mp4"))
		if len(files) != 1 {
			continue
		}
		st, err := os.Stat(files[0])
		if err != nil {
			continue
		}
		if st.Size() == size {
			stable++
		} else {
			file, size, stable = files[0], st.Size(), 0
		}
	}
	st, err := readProc(serve.pid())
	stopPerf()
	if err != nil {
		return run, err
	}
	run.name = "moqbridge serve --record"
	run.wall = time.Since(start)
	run.procs = []procCost{{"", st.CPU, st.HWM}}
	run.push = push
	run.other = bench.MachineBusy() - busy0 - (bench.SelfCPU() - self0) - run.cpu() - push.cpu
	run.file = file
	return run, nil
}

// recordFFmpeg runs (b): ffmpeg listening for the RTMP publish and
// writing fragmented MP4, the same input pushed into it.
func recordFFmpeg(in, rate, file string) (recordRun, error) {
	run := recordRun{name: "ffmpeg", file: file}
	port, err := freePort()
	if err != nil {
		return run, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout+pushTime(in, rate))
	defer cancel()
	busy0, self0, start := bench.MachineBusy(), bench.SelfCPU(), time.Now()
	u := fmt.Sprintf("rtmp://127.0.0.1:%d/live/bench", port)
	rec := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-listen", "1", "-i", u, "-c", "copy", "-f", "mp4", "-movflags", "+frag_keyframe+empty_moov", file)
	recErr := &bench.TailBuffer{}
	rec.Stdout, rec.Stderr = recErr, recErr
	rec.Cancel = func() error { return rec.Process.Signal(os.Interrupt) }
	rec.WaitDelay = processTimeout
	if err := rec.Start(); err != nil {
		return run, err
	}
	defer startPerf("ffmpeg-listen", rec.Process.Pid)()
	recPeak := watchPeak(rec.Process.Pid)
	for deadline := time.Now().Add(processTimeout); !listening(port); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = rec.Process.Kill()
			_ = rec.Wait()
			return run, fmt.Errorf("ffmpeg -listen 1 did not listen on %d%s", port, recErr.Note(""))
		}
	}
	push, err := pushFFmpeg(ctx, in, rate, u)
	werr := rec.Wait()
	peak := recPeak.peak()
	if err != nil {
		return run, err
	}
	if werr != nil {
		return run, fmt.Errorf("ffmpeg -listen: %w%s", werr, recErr.Note(""))
	}
	run.wall = time.Since(start)
	run.procs = []procCost{{"-listen 1", bench.ExitCPU(rec.ProcessState), peak}}
	run.push = push
	run.other = bench.MachineBusy() - busy0 - (bench.SelfCPU() - self0) - run.cpu() - push.cpu
	return run, nil
}

// pushFFmpeg publishes the input file to url with ffmpeg at rate (1: real
// time) and returns what the pushing ffmpeg cost.
func pushFFmpeg(ctx context.Context, in, rate, url string) (procCost, error) {
	push := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-readrate", rate, "-i", in, "-c", "copy", "-f", "flv", url)
	out := &bench.TailBuffer{}
	push.Stdout, push.Stderr = out, out
	if err := push.Start(); err != nil {
		return procCost{}, err
	}
	w := watchPeak(push.Process.Pid)
	err := push.Wait()
	peak := w.peak()
	if err != nil {
		return procCost{}, fmt.Errorf("pushing ffmpeg: %w%s", err, out.Note(""))
	}
	return procCost{"push", bench.ExitCPU(push.ProcessState), peak}, nil
}

// pushTime is how long pushing the input at rate takes (its minute of
// media, divided by the rate).
func pushTime(in, rate string) time.Duration {
	r, _ := strconv.ParseFloat(rate, 64)
	return time.Duration(float64(recordInput.seconds) / max(r, 0.1) * float64(time.Second))
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// fmp4Defects are the counters of check-fmp4.sh that count defects.
var fmp4Defects = []string{"non_increasing_dts", "missing_ts", "bad_duration", "non_increasing_presentation_pts"}

// checkFMP4 runs check-fmp4.sh on one stream of file and returns its
// report (without ffprobe's list of streams) and its counters; ran is
// false when the script is missing.
func checkFMP4(file, stream string) (report string, counts map[string]string, ran bool, err error) {
	script := os.Getenv(CheckFMP4Env)
	if script == "" {
		script = "/work/shared/tools/check-fmp4.sh"
	}
	if _, err := os.Stat(script); err != nil {
		return "not run (" + script + " missing; set " + CheckFMP4Env + ")", nil, false, nil
	}
	out, err := exec.Command("sh", script, file, stream).CombinedOutput()
	var lines []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(line, "stream|") {
			lines = append(lines, line)
		}
	}
	report = strings.Join(lines, " ")
	if err != nil {
		return report, nil, true, fmt.Errorf("check-fmp4.sh: %w", err)
	}
	counts = make(map[string]string)
	for _, f := range strings.Fields(report) {
		if k, v, ok := strings.Cut(f, "="); ok {
			counts[k] = v
		}
	}
	return report, counts, true, nil
}

// judgeFMP4 checks a recording's stream against the same check of the
// reference (the input remuxed to fMP4 by ffmpeg from the file, no RTMP):
// it must decode cleanly, start with a keyframe, and count no more
// defects than the reference (whose own, such as the AAC priming packet
// without a duration, come from the input).
func judgeFMP4(file, ref, stream string) (string, error) {
	report, got, ran, err := checkFMP4(file, stream)
	if err != nil || !ran {
		return report, err
	}
	_, want, _, err := checkFMP4(ref, stream)
	if err != nil {
		return report, fmt.Errorf("the reference: %w", err)
	}
	if got["decode"] != "clean" || got["first_is_key"] != "yes" {
		return report, fmt.Errorf("check-fmp4.sh: decode=%s first_is_key=%s", got["decode"], got["first_is_key"])
	}
	for _, k := range fmp4Defects {
		g, _ := strconv.Atoi(got[k])
		w, _ := strconv.Atoi(want[k])
		if g > w {
			return report, fmt.Errorf("check-fmp4.sh: %s=%d, the reference %d", k, g, w)
		}
	}
	return report, nil
}

// remuxReference writes the input remuxed to fragmented MP4 by ffmpeg
// straight from the file, with the movflags of (b).
func remuxReference(in, file string) error {
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", in,
		"-c", "copy", "-f", "mp4", "-movflags", "+frag_keyframe+empty_moov", file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ffmpeg remux of the input: %w\n%s", err, out)
	}
	return nil
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

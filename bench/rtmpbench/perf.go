package rtmpbench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/moqbridge/moqbridge/bench"
)

// PerfEnv names a directory: when set, BenchmarkRTMPRecord samples the
// call stacks of the measured processes with `perf record` (-F 999 -g)
// into <dir>/<name>.perf.data, for `perf report`. Sampling costs CPU:
// figures of such a run are not comparable with unprofiled ones.
const PerfEnv = "MOQBRIDGE_RTMPBENCH_PERF"

// startPerf samples the process pid as name while PerfEnv is set; the
// returned function stops the sampling (or waits for perf to see the
// process exit) and reports where the profile is.
func startPerf(name string, pid int) func() {
	dir := os.Getenv(PerfEnv)
	if dir == "" {
		return func() {}
	}
	out := filepath.Join(dir, name+".perf.data")
	cmd := exec.Command("perf", "record", "-F", "999", "-g", "-o", out, "-p", fmt.Sprint(pid))
	logs := &bench.TailBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := os.MkdirAll(dir, 0o755); err != nil || cmd.Start() != nil {
		fmt.Fprintf(os.Stderr, "rtmpbench: perf record of %s did not start%s\n", name, logs.Note(""))
		return func() {}
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return func() {
		select {
		case <-exited: // the process ended, and perf with it
		case <-time.After(time.Second):
			_ = cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(processTimeout):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		fmt.Fprintf(os.Stderr, "rtmpbench: %s profile: perf report -i %s --no-children --sort dso,sym\n", name, out)
	}
}

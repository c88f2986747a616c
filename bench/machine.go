package bench

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of /proc/stat: USER_HZ, 100 on Linux (getconf
// CLK_TCK).
const clockTick = 10 * time.Millisecond

// MachineBusy is the CPU time all processes on the machine have used since
// boot, from the first line of /proc/stat (0 where there is none). Set
// against the relay's and this process's own CPU it shows how much other
// work shared the machine during a measurement.
func MachineBusy() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range fields[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		// Fields: user nice system idle iowait irq softirq steal
		// guest guest_nice; idle and iowait are not work, and guest
		// time is already counted in user.
		switch i {
		case 3, 4, 8, 9:
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// SelfCPU is this process's user + system CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Revision names the code being measured: the commit, and the files of
// the work tree that differ from it (then the figures are not the
// commit's). dir is the repository's root, relative to the benchmark's
// package directory ("../..").
func Revision(dir string) string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--", dir).Output(); err == nil && len(st) > 0 {
		var files []string
		for line := range strings.SplitSeq(strings.TrimSpace(string(st)), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				files = append(files, f[len(f)-1])
			}
		}
		rev += " (work tree modified: " + strings.Join(files, " ") + ")"
	}
	return rev
}

// ExitCPU is the CPU time (user + system) of a child process that has
// exited, as wait4 reports it (0 for nil).
func ExitCPU(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	return ps.UserTime() + ps.SystemTime()
}

// LoadAverage is the three load averages of /proc/loadavg ("" where there
// is none), logged before a run as a note of what else the machine did.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Sleep waits for d, or until ctx ends (then it returns ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

package rtmpbench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc: USER_HZ, 100 on Linux.
const clockTick = 10 * time.Millisecond

// procSample is what /proc says about a process at one moment.
type procSample struct {
	CPU time.Duration // user + system, all threads, since it started
	RSS uint64        // resident set now (VmRSS), bytes
	HWM uint64        // peak resident set (VmHWM) since start or the last resetPeak, bytes
}

// readProc reads utime and stime of /proc/<pid>/stat and VmRSS and VmHWM
// of /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces; fields are counted from
	// the parenthesis that ends it. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	s.CPU = time.Duration(ut+st) * clockTick
	s.RSS, s.HWM, err = memStatus(fmt.Sprintf("/proc/%d/status", pid))
	return s, err
}

// memStatus reads VmRSS and VmHWM of a /proc status file, in bytes.
func memStatus(path string) (rss, hwm uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for _, field := range []struct {
			name string
			v    *uint64
		}{{"VmRSS:", &rss}, {"VmHWM:", &hwm}} {
			if rest, ok := strings.CutPrefix(sc.Text(), field.name); ok {
				kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("%s: %s %q", path, field.name, rest)
				}
				*field.v = kb << 10
			}
		}
	}
	return rss, hwm, sc.Err()
}

// resetPeak starts the process's VmHWM again from its current resident
// set (writing 5 to /proc/<pid>/clear_refs), so that a later readProc
// gives the peak of a window.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// listening reports whether something listens on TCP 127.0.0.1:port
// (/proc/net/tcp), without connecting to it: ffmpeg -listen 1 accepts one
// connection only.
func listening(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == want && f[3] == "0A" { // 0A: LISTEN
			return true
		}
	}
	return false
}

// peakWatch follows a child's peak resident set (VmHWM of its /proc
// status) while it runs. ru_maxrss cannot serve: on Linux a child's
// counts the forking process's resident set too (the old address space
// is folded in at exec).
type peakWatch struct {
	stop chan struct{}
	done chan uint64
}

// watchPeak reads pid's VmHWM every 50 ms until stopped.
func watchPeak(pid int) *peakWatch {
	w := &peakWatch{stop: make(chan struct{}), done: make(chan uint64, 1)}
	go func() {
		var peak uint64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if _, hwm, err := memStatus(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				peak = max(peak, hwm)
			}
			select {
			case <-w.stop:
				w.done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// peak stops the watch and returns the largest VmHWM it read: the peak
// up to its last read, at most 50 ms before the process exited.
func (w *peakWatch) peak() uint64 {
	close(w.stop)
	return <-w.done
}

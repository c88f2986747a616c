package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// residentBytes is this process's resident set size, VmRSS of
// /proc/self/status (0 where there is none): the memory a relay or a set
// of subscribers really holds, heap, stacks, runtime and all.
func residentBytes() uint64 { return procStatus("VmRSS:") }

// residentPeak is the largest resident set size this process has had
// (VmHWM) since the last residentPeak(true), or since it started; with
// reset it then starts the next peak from the current size (by writing 5
// to /proc/self/clear_refs; where that fails the peaks are since start).
// A Go process's resident set rises and falls with every garbage
// collection cycle: the peak over a window is what it needed, a sample at
// the window's end could be anywhere between the trough and the peak.
func residentPeak(reset bool) uint64 {
	peak := procStatus("VmHWM:")
	if reset {
		_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	}
	return peak
}

// procStatus reads one "kB" field of /proc/self/status, in bytes.
func procStatus(field string) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field)
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

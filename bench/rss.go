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
func residentBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
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

//go:build unix

package bench

import (
	"syscall"
	"time"
)

// processCPU is the user+system CPU time of this process, all threads.
// getrusage reports it with microsecond resolution, finer than the
// 100 Hz clock ticks of /proc/<pid>/stat.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

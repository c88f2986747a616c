package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
)

// ProfileEnv names an optional directory where a relay child writes
// profiles: <role>.cpu.pprof over its whole life, and
// <role>.allocs.<n>.pprof, the cumulative allocations as of the n-th stats
// request. The harness asks for stats at the start and the end of its
// window, so
//
//	go tool pprof -sample_index=alloc_objects -diff_base <role>.allocs.1.pprof <role>.allocs.2.pprof
//
// shows what the relay allocated during the window only. Profiling costs
// CPU: figures of a profiled run are not comparable with unprofiled ones.
const ProfileEnv = "MOQBRIDGE_BENCH_PROFILE"

// profileMemRate samples one allocation per 4 KiB allocated instead of the
// default 512 KiB, so that counts of small objects are reliable.
const profileMemRate = 4 << 10

// profiler writes the child's profiles; the zero value (no directory) does
// nothing.
type profiler struct {
	dir, role string
	cpu       *os.File
	snapshots int
}

// startProfile starts profiling if ProfileEnv is set.
func startProfile(role string) (*profiler, error) {
	p := &profiler{dir: os.Getenv(ProfileEnv), role: role}
	if p.dir == "" {
		return p, nil
	}
	if runtime.MemProfileRate > profileMemRate { // not when AllocsEnv asked for every allocation
		runtime.MemProfileRate = profileMemRate
	}
	f, err := os.Create(filepath.Join(p.dir, role+".cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	p.cpu = f
	return p, nil
}

// snapshot writes the next cumulative allocation profile.
func (p *profiler) snapshot() error {
	if p.dir == "" {
		return nil
	}
	// The allocation profile is published at the end of a GC cycle; one
	// now makes it current.
	runtime.GC()
	p.snapshots++
	f, err := os.Create(filepath.Join(p.dir, fmt.Sprintf("%s.allocs.%d.pprof", p.role, p.snapshots)))
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// stop ends the CPU profile.
func (p *profiler) stop() {
	if p.cpu == nil {
		return
	}
	pprof.StopCPUProfile()
	_ = p.cpu.Close()
}

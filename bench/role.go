package bench

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
)

// RoleEnv names the environment variable that turns a re-executed benchmark
// binary into a relay child; its TestMain must call RunRole when it is set.
const RoleEnv = "MOQBRIDGE_BENCH_ROLE"

// The child roles.
const (
	// RoleMOQRelay runs the moqbridge MOQ Lite relay.
	RoleMOQRelay = "moq-relay"
	// RoleQUICRelay runs the bare quic-go copy relay.
	RoleQUICRelay = "quic-relay"
)

// The child's control protocol: it writes one JSON readyMsg line on stdout,
// answers every "stats" line on stdin with one JSON RelayStats line, and
// shuts down when stdin closes (which also happens when the parent dies).
// The gomoqt contender's relay (bench/gomoqt) speaks it too.
const cmdStats = "stats"

type readyMsg struct {
	Addr        string `json:"addr"`
	Fingerprint string `json:"fingerprint"` // hex SHA-256 of the leaf certificate
}

// RelayStats is what a relay child reports about itself. Counters are
// cumulative; the harness works with differences over its window.
type RelayStats struct {
	// CPU is user+system CPU time of the whole child process, in ns.
	CPU int64 `json:"cpu_ns"`
	// Mallocs is runtime.MemStats.Mallocs, the cumulative heap allocations.
	Mallocs uint64 `json:"mallocs"`
	// HeapAlloc is the live heap in bytes when the stats were taken.
	HeapAlloc uint64 `json:"heap_alloc"`
	// RSS is the process's resident set size in bytes (VmRSS) when the
	// stats were taken, and PeakRSS the largest it has been since the
	// previous stats request (VmHWM, reset by each request; see
	// residentPeak).
	RSS     uint64 `json:"rss"`
	PeakRSS uint64 `json:"rss_peak"`
	// GroupsSent counts group streams completed towards subscribers and
	// GroupsDropped those reset because a subscriber fell behind.
	GroupsSent    uint64 `json:"groups_sent"`
	GroupsDropped uint64 `json:"groups_dropped"`
	// AllocsBy counts cumulative heap allocations per owner (OwnerProtocol,
	// OwnerQUIC, …); only a child started with AllocsEnv=1 reports it.
	AllocsBy map[string]uint64 `json:"allocs_by,omitempty"`
}

// childRelay is a relay running inside a child process.
type childRelay interface {
	addr() string
	fingerprint() [32]byte
	// counters fills the relay-specific fields of st.
	counters(st *RelayStats)
	close()
}

// RunRole runs the named child role until stdin closes and returns the
// process exit code.
func RunRole(role string) int {
	exactAllocs := os.Getenv(AllocsEnv) == "1"
	if exactAllocs {
		runtime.MemProfileRate = 1
	}
	prof, err := startProfile(role)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		return 2
	}
	defer prof.stop()
	var r childRelay
	switch role {
	case RoleMOQRelay:
		r, err = startMOQRelay()
	case RoleQUICRelay:
		r, err = startBareRelay()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		return 2
	}
	// Deferred after prof.stop, so it runs first and the CPU profile
	// covers the shutdown too.
	defer r.close()
	if err := serveControl(r, prof, exactAllocs, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		return 1
	}
	return 0
}

// serveControl announces the relay and answers stats requests until in ends.
func serveControl(r childRelay, prof *profiler, exactAllocs bool, in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	fp := r.fingerprint()
	if err := enc.Encode(readyMsg{Addr: r.addr(), Fingerprint: hex.EncodeToString(fp[:])}); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != cmdStats {
			return fmt.Errorf("unknown command %q", sc.Text())
		}
		st := snapshot(r)
		if exactAllocs {
			st.AllocsBy = allocsByOwner()
		}
		if err := enc.Encode(st); err != nil {
			return err
		}
		// After the stats, so the counters are read first.
		if err := prof.snapshot(); err != nil {
			return err
		}
	}
	return sc.Err()
}

// snapshot reads the process counters and the relay's own.
func snapshot(r childRelay) RelayStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := RelayStats{CPU: int64(processCPU()), Mallocs: ms.Mallocs, HeapAlloc: ms.HeapAlloc, RSS: residentBytes(), PeakRSS: residentPeak(true)}
	r.counters(&st)
	return st
}

package bench

import (
	"runtime"
	"strings"
)

// AllocsEnv, set to 1 in a relay child's environment, makes it record every
// heap allocation (runtime.MemProfileRate = 1) and report, with its stats,
// how many allocations each owner made: the code that asked for the memory,
// found by walking the allocating stack from its innermost frame to the
// first frame of a known owner. The standard library counts for whoever
// called it: a context or timer created by protocol is protocol's, a
// sockaddr built for quic-go is quic-go's. Recording every allocation costs
// CPU: figures of such a run are for allocation counts only.
const AllocsEnv = "MOQBRIDGE_BENCH_ALLOCS"

// The allocation owners a relay child reports.
const (
	OwnerProtocol = "protocol" // moqbridge's protocol package and its internal packages
	OwnerQUIC     = "quic-go"  // quic-go and webtransport-go
	OwnerBench    = "bench"    // the benchmark's own relay code (the bare relay)
	OwnerOther    = "other"    // no owner on the stack: the runtime's own
)

// ownerPrefixes maps function-name prefixes to owners, most specific first.
var ownerPrefixes = []struct{ prefix, owner string }{
	{"github.com/moqbridge/moqbridge/protocol", OwnerProtocol},
	{"github.com/moqbridge/moqbridge/bench", OwnerBench},
	{"github.com/quic-go/", OwnerQUIC},
}

// allocsByOwner returns the cumulative heap allocations per owner. It is
// exact only when MemProfileRate is 1 from the start.
func allocsByOwner() map[string]uint64 {
	// The profile is published as of the last completed GC cycle and may
	// lag by two: two cycles make it current.
	runtime.GC()
	runtime.GC()
	n, _ := runtime.MemProfile(nil, true)
	var recs []runtime.MemProfileRecord
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	out := make(map[string]uint64)
	for i := range recs {
		out[allocOwner(recs[i].Stack())] += uint64(recs[i].AllocObjects)
	}
	return out
}

// allocOwner names the owner of an allocation from its stack.
func allocOwner(stack []uintptr) string {
	frames := runtime.CallersFrames(stack)
	for {
		fr, more := frames.Next()
		for _, p := range ownerPrefixes {
			if strings.HasPrefix(fr.Function, p.prefix) {
				return p.owner
			}
		}
		if !more {
			return OwnerOther
		}
	}
}

package bench

import "time"

// Result is what one measurement window saw.
type Result struct {
	Wall time.Duration // length of the window

	// Delivered, summed over subscribers: frames and payload bytes that
	// arrived intact, and group streams that ended complete or reset.
	Frames, Bytes                   uint64
	Groups, IncompleteGroups        uint64
	Corrupt                         uint64 // frames that failed the byte check
	PublishedFrames, PublishedBytes uint64

	// The relay child: CPU time, heap allocations, live heap at the end of
	// the window, peak resident set during the window, groups it
	// completed and dropped towards subscribers.
	RelayCPU                            time.Duration
	RelayMallocs                        uint64
	RelayHeap                           uint64
	RelayRSS                            uint64
	RelayGroupsSent, RelayGroupsDropped uint64
	// RelayAllocsBy is the relay's heap allocations per owner in the
	// window, when the run had Config.ExactAllocs.
	RelayAllocsBy map[string]uint64
	// BenchCPU is the CPU time of the load generator (publisher and
	// subscribers: this process, and for the gomoqt relay its peers child
	// too), which shares the machine with the relay.
	BenchCPU time.Duration
	// SubscriberRSS is the peak resident set during the window of the
	// process holding the subscribers (and the publisher): this one, or
	// the gomoqt peers child.
	SubscriberRSS uint64
	// OtherCPU is what the rest of the machine used meanwhile: a figure
	// measured while other work competed for the cores is suspect.
	OtherCPU time.Duration

	// Publish→receive latency of the frames delivered in the window.
	P50, P99, Max time.Duration
	Samples       int
}

func newResult(c0, c1 counterSnapshot, r0, r1 RelayStats, sorted []time.Duration) Result {
	res := Result{
		Wall:               c1.at.Sub(c0.at),
		Frames:             c1.frames - c0.frames,
		Bytes:              c1.bytes - c0.bytes,
		Groups:             c1.groups - c0.groups,
		IncompleteGroups:   c1.incomplete - c0.incomplete,
		Corrupt:            c1.corrupt - c0.corrupt,
		PublishedFrames:    c1.publishedFrames - c0.publishedFrames,
		PublishedBytes:     c1.publishedBytes - c0.publishedBytes,
		RelayCPU:           time.Duration(r1.CPU - r0.CPU),
		RelayMallocs:       r1.Mallocs - r0.Mallocs,
		RelayHeap:          r1.HeapAlloc,
		RelayRSS:           r1.PeakRSS,
		RelayGroupsSent:    r1.GroupsSent - r0.GroupsSent,
		BenchCPU:           c1.cpu - c0.cpu,
		SubscriberRSS:      c1.rssPeak,
		OtherCPU:           max(0, (c1.machine-c0.machine)-(c1.cpu-c0.cpu)-time.Duration(r1.CPU-r0.CPU)),
		RelayGroupsDropped: r1.GroupsDropped - r0.GroupsDropped,
		P50:                percentile(sorted, 0.50),
		P99:                percentile(sorted, 0.99),
		Samples:            len(sorted),
	}
	if len(sorted) > 0 {
		res.Max = sorted[len(sorted)-1]
	}
	if r1.AllocsBy != nil {
		res.RelayAllocsBy = make(map[string]uint64)
		for owner, n := range r1.AllocsBy {
			res.RelayAllocsBy[owner] = n - r0.AllocsBy[owner]
		}
	}
	return res
}

// DeliveredMbps is the payload delivered to all subscribers per second of
// the window, in Mbit/s.
func (r Result) DeliveredMbps() float64 { return mbps(r.Bytes, r.Wall) }

// PublishedMbps is the payload the publisher produced, in Mbit/s.
func (r Result) PublishedMbps() float64 { return mbps(r.PublishedBytes, r.Wall) }

// CPUPerGB is relay CPU seconds per delivered gigabyte (10⁹ bytes).
func (r Result) CPUPerGB() float64 {
	if r.Bytes == 0 {
		return 0
	}
	return r.RelayCPU.Seconds() / (float64(r.Bytes) / 1e9)
}

// RelayCores is the relay's average CPU use, in cores.
func (r Result) RelayCores() float64 { return cores(r.RelayCPU, r.Wall) }

func cores(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return cpu.Seconds() / wall.Seconds()
}

// BenchCores is this process's average CPU use, in cores.
func (r Result) BenchCores() float64 { return cores(r.BenchCPU, r.Wall) }

// OtherCores is the rest of the machine's average CPU use, in cores.
func (r Result) OtherCores() float64 { return cores(r.OtherCPU, r.Wall) }

// GroupsResetShare is the share of the group streams the relay ended in
// the window that it reset (dropped) rather than completed: the groups a
// subscriber lost to the relay, 0 when it ended none.
func (r Result) GroupsResetShare() float64 {
	n := r.RelayGroupsSent + r.RelayGroupsDropped
	if n == 0 {
		return 0
	}
	return float64(r.RelayGroupsDropped) / float64(n)
}

// AllocsPerFrame is relay heap allocations per delivered frame: the
// relay's whole allocation count, QUIC included, over the frames that
// reached a subscriber.
func (r Result) AllocsPerFrame() float64 {
	if r.Frames == 0 {
		return 0
	}
	return float64(r.RelayMallocs) / float64(r.Frames)
}

// OwnerAllocsPerFrame is the allocations one owner made in the relay per
// delivered frame; 0 without Config.ExactAllocs.
func (r Result) OwnerAllocsPerFrame(owner string) float64 {
	if r.Frames == 0 {
		return 0
	}
	return float64(r.RelayAllocsBy[owner]) / float64(r.Frames)
}

func mbps(bytes uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) * 8 / d.Seconds() / 1e6
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

package bench

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// The gomoqt contender: github.com/okdaichi/gomoqt v0.9.0, the other Go
// MOQ Lite implementation. It needs quic-go v0.58.0, which this module
// cannot have next to its own quic-go, so it lives in a module of its own,
// bench/gomoqt, whose binary the benchmark builds (BuildGomoqt) and runs as
// two child processes: the relay, which speaks the relay children's
// control protocol, and the peers, the publisher and the N subscribers.
//
// gomoqt speaks its own MOQ Lite dialect (ALPN "moq-00", version
// 0xfeedbabe, a SESSION_CLIENT/SESSION_SERVER handshake on a stream of type
// 0), which moqbridge's peers do not speak, so its load comes from gomoqt's
// own client, in its own process. The frames are those of the harness,
// stamped and checked byte for byte the same way by a copy of load.go; the
// publisher and the subscribers share that process's clock, so latencies
// mean what they mean for the other relays.

// gomoqtDir is the contender's module, relative to this package's
// directory (where `go test` runs the benchmark).
const gomoqtDir = "gomoqt"

// gomoqtBuildTimeout bounds the build, downloads included.
const gomoqtBuildTimeout = 5 * time.Minute

// BuildGomoqt builds the gomoqt contender's binary into dir and returns its
// path. It builds with GOWORK=off: the contender's module is never joined
// to this one.
func BuildGomoqt(dir string) (string, error) {
	src, err := filepath.Abs(gomoqtDir)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		return "", fmt.Errorf("the gomoqt contender's module is not at %s: %w", src, err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command to build the gomoqt contender: %w", err)
	}
	out := filepath.Join(dir, "gomoqt-bench")
	ctx, cancel := context.WithTimeout(context.Background(), gomoqtBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %w\n%s", src, err, output)
	}
	return out, nil
}

// gomoqtPeerStats is what the peers child answers to "begin", "end" and
// "stats" (bench/gomoqt/peers.go).
type gomoqtPeerStats struct {
	At              int64   `json:"at_ns"`
	CPU             int64   `json:"cpu_ns"`
	PeakRSS         uint64  `json:"rss_peak"`
	PublishedFrames uint64  `json:"published_frames"`
	PublishedBytes  uint64  `json:"published_bytes"`
	Frames          uint64  `json:"frames"`
	Bytes           uint64  `json:"bytes"`
	Groups          uint64  `json:"groups"`
	Incomplete      uint64  `json:"incomplete"`
	Corrupt         uint64  `json:"corrupt"`
	Latencies       []int64 `json:"latencies_ns,omitempty"`
}

// startGomoqtPeers starts the peers child against relay and waits until
// every subscriber has received a frame.
func startGomoqtPeers(bin string, relay *relayChild, l Load, subs int) (*child, error) {
	cmd := exec.Command(bin, "peers",
		"-addr", relay.addr,
		"-fingerprint", hex.EncodeToString(relay.fp[:]),
		"-subs", strconv.Itoa(subs),
		"-frame", strconv.Itoa(l.FrameSize),
		"-keyframe", strconv.Itoa(l.KeyframeSize),
		"-group", strconv.Itoa(l.FramesPerGroup),
		"-fps", strconv.Itoa(l.FPS))
	const name = "gomoqt peers"
	c, err := startProcess(name, cmd)
	if err != nil {
		return nil, err
	}
	var joined struct {
		Joined int `json:"joined"`
	}
	// The child bounds its dials and its wait for the first frames itself
	// (joinTimeout); this only catches a child that hangs.
	if err := c.receive(&joined, joinTimeout+2*time.Minute); err != nil {
		c.stop()
		return nil, fmt.Errorf("%s: %w%s", name, err, c.stderr.Note(name))
	}
	if joined.Joined != subs {
		c.stop()
		return nil, fmt.Errorf("%s: %d of %d subscribers joined", name, joined.Joined, subs)
	}
	return c, nil
}

// remoteSnapshot asks the peers child for its counters (req is "begin" or
// "end") and returns them as a snapshot of the load generator: its CPU is
// the peers child's and this process's together, its time the child's
// (same clock), so that the window is the one the counters cover however
// long the answer took.
func remoteSnapshot(c *child, req string) (counterSnapshot, []time.Duration, error) {
	var st gomoqtPeerStats
	if err := c.call(req, &st); err != nil {
		return counterSnapshot{}, nil, err
	}
	if st.CPU <= 0 || st.At <= 0 {
		return counterSnapshot{}, nil, errors.New("gomoqt peers reported no CPU time or no time")
	}
	snap := counterSnapshot{
		at:              time.Unix(0, st.At),
		cpu:             processCPU() + time.Duration(st.CPU),
		machine:         MachineBusy(),
		rssPeak:         st.PeakRSS,
		publishedFrames: st.PublishedFrames,
		publishedBytes:  st.PublishedBytes,
		frames:          st.Frames,
		bytes:           st.Bytes,
		groups:          st.Groups,
		incomplete:      st.Incomplete,
		corrupt:         st.Corrupt,
	}
	lat := make([]time.Duration, len(st.Latencies))
	for i, ns := range st.Latencies {
		lat[i] = time.Duration(ns)
	}
	return snap, lat, nil
}

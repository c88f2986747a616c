package bench

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
)

// idleRelayEnv turns this test binary, re-executed with
// -test.run=^TestIdleRelayHelper$, into the relay of BenchmarkIdleSessions.
const idleRelayEnv = "MOQBRIDGE_BENCH_IDLE_RELAY"

// idleSessions is how many idle sessions BenchmarkIdleSessions connects.
const idleSessions = 1000

// idleStats is what the idle relay reports about itself.
type idleStats struct {
	RSSKiB     int64  `json:"rss_kib"`     // VmRSS of /proc/self/status
	HeapInuse  uint64 `json:"heap_inuse"`  // runtime.MemStats.HeapInuse
	StackInuse uint64 `json:"stack_inuse"` // runtime.MemStats.StackInuse
	Goroutines int    `json:"goroutines"`
	Sessions   int    `json:"sessions"`
	CPU        int64  `json:"cpu_ns"` // user+system, cumulative
}

// TestIdleRelayHelper is not a test: it is the relay process of
// BenchmarkIdleSessions. It serves protocol.Server with its defaults (but
// no per-address budget: every client is on 127.0.0.1), prints its address
// and fingerprint as one JSON line, answers "stats" and "free" (GC and
// return memory to the OS first) lines on stdin with one idleStats line,
// and exits when stdin closes.
func TestIdleRelayHelper(t *testing.T) {
	if os.Getenv(idleRelayEnv) == "" {
		t.Skip("helper process of BenchmarkIdleSessions")
	}
	os.Exit(runIdleRelay())
}

func runIdleRelay() int {
	srv, err := protocol.NewServer(protocol.ServerConfig{
		Addr:               "127.0.0.1:0",
		TCP:                protocol.TCPHTTP,
		MaxSessionsPerAddr: -1,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	fp := srv.Fingerprint()
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(readyMsg{Addr: srv.Addr().String(), Fingerprint: hex.EncodeToString(fp[:])})
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "free" {
			runtime.GC()
			debug.FreeOSMemory()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = out.Encode(idleStats{
			RSSKiB:     selfRSSKiB(),
			HeapInuse:  ms.HeapInuse,
			StackInuse: ms.StackInuse,
			Goroutines: runtime.NumGoroutine(),
			Sessions:   len(srv.Sessions()),
			CPU:        int64(processCPU()),
		})
	}
	_ = srv.Close()
	<-served
	return 0
}

// selfRSSKiB reads VmRSS from /proc/self/status (0 where there is none).
func selfRSSKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// idleRelay is the running relay process.
type idleRelay struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	dec   *json.Decoder
	addr  string
	fp    [32]byte
}

func startIdleRelay(b *testing.B) *idleRelay {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestIdleRelayHelper$", "-test.bench=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), idleRelayEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r := &idleRelay{cmd: cmd, stdin: stdin, dec: json.NewDecoder(stdout)}
	b.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(childTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var ready readyMsg
	if err := r.dec.Decode(&ready); err != nil {
		b.Fatalf("idle relay did not start: %v", err)
	}
	fp, err := hex.DecodeString(ready.Fingerprint)
	if err != nil || len(fp) != 32 {
		b.Fatalf("idle relay fingerprint %q", ready.Fingerprint)
	}
	r.addr = ready.Addr
	copy(r.fp[:], fp)
	return r
}

func (r *idleRelay) ask(b *testing.B, cmd string) idleStats {
	b.Helper()
	var st idleStats
	if _, err := io.WriteString(r.stdin, cmd+"\n"); err != nil {
		b.Fatal(err)
	}
	if err := r.dec.Decode(&st); err != nil {
		b.Fatal(err)
	}
	return st
}

// BenchmarkIdleSessions connects 1 000 idle sessions (each with an open
// announce interest, as a player waiting for a broadcast has) to a relay in
// its own process, over raw QUIC and over WebSocket, and reports the
// relay's RSS, Go heap and goroutines before, with the sessions connected,
// and after they closed, plus the CPU the idle sessions cost (keep-alives)
// per second. One fixed run whatever b.N is: use -benchtime 1x.
func BenchmarkIdleSessions(b *testing.B) {
	for _, kind := range []string{"quic", "websocket"} {
		b.Run(kind, func(b *testing.B) { benchIdle(b, kind) })
	}
}

func benchIdle(b *testing.B, kind string) {
	const (
		settle    = 3 * time.Second  // keep-alives and lazy allocations settle
		cpuWindow = 10 * time.Second // idle CPU measured over this long
		drain     = 5 * time.Second  // after the last session ended
	)
	r := startIdleRelay(b)
	_, port, _ := strings.Cut(r.addr, ":")
	url := "moql://127.0.0.1:" + port
	if kind == "websocket" {
		url = "ws://127.0.0.1:" + port + "/"
	}
	time.Sleep(time.Second)
	before := r.ask(b, "stats")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()
	sessions := make([]*protocol.Session, idleSessions)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		dialErr error
	)
	slots := make(chan struct{}, 32)
	start := time.Now()
	for i := range sessions {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			s, err := protocol.Dial(ctx, url, protocol.WithFingerprint(r.fp), protocol.WithConsume(origin))
			mu.Lock()
			defer mu.Unlock()
			if err != nil && dialErr == nil {
				dialErr = err
			}
			sessions[i] = s
		})
	}
	wg.Wait()
	closeAll := func() {
		for _, s := range sessions {
			if s != nil {
				wg.Go(func() { _ = s.Close() })
			}
		}
		wg.Wait()
	}
	if dialErr != nil {
		closeAll()
		b.Fatalf("dial: %v", dialErr)
	}
	connectTime := time.Since(start)
	time.Sleep(settle)
	connected := r.ask(b, "stats")
	time.Sleep(cpuWindow)
	afterWindow := r.ask(b, "stats")
	if connected.Sessions != idleSessions || afterWindow.Sessions != idleSessions {
		closeAll()
		b.Fatalf("relay serves %d then %d sessions, want %d", connected.Sessions, afterWindow.Sessions, idleSessions)
	}
	closeAll()
	deadline := time.Now().Add(time.Minute)
	for r.ask(b, "stats").Sessions != 0 {
		if time.Now().After(deadline) {
			b.Fatal("relay still has sessions a minute after they closed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(drain)
	closed := r.ask(b, "stats")
	freed := r.ask(b, "free")

	mib := func(kib int64) float64 { return float64(kib) / 1024 }
	mb := func(n uint64) float64 { return float64(n) / (1 << 20) }
	cpuPerSec := time.Duration(afterWindow.CPU-connected.CPU) * time.Second / cpuWindow
	perSession := float64(connected.RSSKiB-before.RSSKiB) / idleSessions
	b.ReportMetric(mib(connected.RSSKiB), "rss_MiB")
	b.ReportMetric(perSession, "rss_KiB/session")
	b.ReportMetric(float64(connected.Goroutines-before.Goroutines)/idleSessions, "goroutines/session")
	b.ReportMetric(float64(cpuPerSec)/float64(time.Millisecond), "cpu_ms/s")
	b.ReportMetric(mib(closed.RSSKiB), "rss_closed_MiB")
	b.ReportMetric(0, "ns/op")
	b.Logf("%s, %d idle sessions (connected in %v):\n"+
		"  %-28s %9s %11s %11s %11s\n"+
		"  %-28s %7.1f MiB %7.1f MiB %7.1f MiB %11d\n"+
		"  %-28s %7.1f MiB %7.1f MiB %7.1f MiB %11d\n"+
		"  %-28s %7.1f MiB %7.1f MiB %7.1f MiB %11d\n"+
		"  %-28s %7.1f MiB %7.1f MiB %7.1f MiB %11d\n"+
		"  per session: %.1f KiB RSS, %.1f KiB heap, %.2f goroutines; idle CPU %v per second (%.1f%% of one core)",
		kind, idleSessions, connectTime.Round(time.Millisecond),
		"", "RSS", "heap inuse", "stacks", "goroutines",
		"before", mib(before.RSSKiB), mb(before.HeapInuse), mb(before.StackInuse), before.Goroutines,
		"1000 sessions connected", mib(connected.RSSKiB), mb(connected.HeapInuse), mb(connected.StackInuse), connected.Goroutines,
		"closed, 5 s later", mib(closed.RSSKiB), mb(closed.HeapInuse), mb(closed.StackInuse), closed.Goroutines,
		"closed, after FreeOSMemory", mib(freed.RSSKiB), mb(freed.HeapInuse), mb(freed.StackInuse), freed.Goroutines,
		perSession, float64(connected.HeapInuse-before.HeapInuse)/1024/idleSessions,
		float64(connected.Goroutines-before.Goroutines)/idleSessions,
		cpuPerSec.Round(time.Microsecond), float64(cpuPerSec)/float64(time.Second)*100)
}

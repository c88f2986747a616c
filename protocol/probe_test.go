package protocol

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// probeClocksRunning counts the goroutines running a probe clock.
func probeClocksRunning() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "(*probeClock).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// waitProbeClocks waits until want probe clocks run.
func waitProbeClocks(t *testing.T, ctx context.Context, want int, what string) {
	t.Helper()
	for {
		n := probeClocksRunning()
		if n == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %d probe clocks run, want %d", what, n, want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestProbeClockOwnedByServer: the probe streams of a server's sessions
// share the server's clock, which runs while one is open and is stopped,
// its goroutine gone, when Close returns; PROBEs flow on Lite03 and Lite04.
func TestProbeClockOwnedByServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitProbeClocks(t, ctx, 0, "before the test")
	srv := testServer(t, ServerConfig{})
	var sessions []*Session
	for _, v := range []Version{Lite03, Lite04} {
		sess := dialTest(t, ctx, srv, "quic", v)
		sessions = append(sessions, sess)
		for {
			if bitrate, _ := sess.Bandwidth(); bitrate > 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: no PROBE arrived", v)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	// One clock for both sessions; the clients' own clocks are idle (no
	// peer opened a probe stream to them).
	waitProbeClocks(t, ctx, 1, "two sessions probing")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if n := probeClocksRunning(); n != 0 {
		t.Errorf("%d probe clocks still run after Server.Close", n)
	}
	srv.probes.mu.Lock()
	closed, streams := srv.probes.closed, len(srv.probes.streams)
	srv.probes.mu.Unlock()
	if !closed || streams != 0 {
		t.Errorf("server clock closed %v with %d streams, want closed with none", closed, streams)
	}
	for _, sess := range sessions {
		_ = sess.Close()
		if !sess.ownProbes || !sess.probes.closed {
			t.Errorf("a dialled session's clock: own %v, closed %v; want its own, closed with it", sess.ownProbes, sess.probes.closed)
		}
	}
}

// TestProbeClockLifecycle: the clock's goroutine runs only while streams
// are registered, and close stops it for good, waiting for it.
func TestProbeClockLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitProbeClocks(t, ctx, 0, "before the test")
	var c probeClock
	a, b := &probeState{}, &probeState{}
	c.add(a)
	c.add(b)
	waitProbeClocks(t, ctx, 1, "two streams")
	c.remove(a)
	waitProbeClocks(t, ctx, 1, "one stream left")
	c.remove(b)
	waitProbeClocks(t, ctx, 0, "no stream left")
	c.add(a)
	waitProbeClocks(t, ctx, 1, "a stream again")
	c.close()
	if n := probeClocksRunning(); n != 0 {
		t.Fatalf("%d probe clocks run after close returned", n)
	}
	c.add(b) // after close: registers nothing, starts nothing
	c.remove(b)
	c.close()
	if n := probeClocksRunning(); n != 0 || len(c.streams) != 0 {
		t.Fatalf("after close, add started %d clocks and left %d streams", n, len(c.streams))
	}
}

//go:build unix

package protocol

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// livenessChildEnv turns the test binary into a publisher process (see
// TestMain and runLivenessPublisher): "URL|FINGERPRINT-HEX|NAME|PATH".
const livenessChildEnv = "MOQBRIDGE_LIVENESS_PUBLISHER"

// livenessTrack is the track the helper publishers write: one group of
// one frame "NAME-SEQ" every livenessFrameEvery.
const (
	livenessTrack      = "t"
	livenessFrameEvery = 20 * time.Millisecond
	livenessPath       = "live/backup"
)

// runLivenessPublisher is the publisher process of
// TestLivenessBackupTakesOver, which TestMain runs instead of the tests
// when livenessChildEnv is set. It dials the relay, publishes frames tagged
// with its name, prints "ready" once the session is up, and runs until its
// stdin closes (the parent ends or dies) or a minute has passed.
func runLivenessPublisher(spec string) int {
	parts := strings.Split(spec, "|")
	if len(parts) != 4 {
		fmt.Fprintf(os.Stderr, "bad %s %q\n", livenessChildEnv, spec)
		return 2
	}
	url, fpHex, name, path := parts[0], parts[1], parts[2], parts[3]
	var fp [32]byte
	if b, err := hex.DecodeString(fpHex); err != nil || len(b) != len(fp) {
		fmt.Fprintf(os.Stderr, "bad fingerprint %q\n", fpHex)
		return 2
	}
	b, _ := hex.DecodeString(fpHex)
	copy(fp[:], b)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	origin := moq.NewOrigin()
	bw := moq.NewBroadcast()
	tw, err := bw.CreateTrack(livenessTrack, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := origin.Publish(path, bw.Reader()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sess, err := Dial(ctx, url, WithFingerprint(fp), WithPublish(origin))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	tick := time.NewTicker(livenessFrameEvery)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			_ = sess.Close()
			return 0
		case <-sess.Done():
			fmt.Fprintln(os.Stderr, "session ended:", sess.Err())
			return 1
		case <-tick.C:
		}
		g, err := tw.AppendGroup()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = g.WriteFrame(fmt.Appendf(nil, "%s-%d", name, seq))
		_ = g.Close()
	}
}

// livenessPublisher is a running helper publisher process.
type livenessPublisher struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when the process has been waited for
}

// startLivenessPublisher starts a publisher process named name on url and
// waits until its session is up.
func startLivenessPublisher(t *testing.T, ctx context.Context, url string, fp [32]byte, name string) *livenessPublisher {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%s|%s", livenessChildEnv, url, hex.EncodeToString(fp[:]), name, livenessPath))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &livenessPublisher{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if sc.Text() == "ready" {
				ok = true
				break
			}
		}
		ready <- ok
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		// SIGKILL also ends a stopped process.
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-p.done
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("publisher %s exited before its session was up", name)
		}
	case <-ctx.Done():
		t.Fatalf("publisher %s: %v", name, ctx.Err())
	}
	return p
}

// backupCount is how many broadcasts wait as backups at path in o.
func backupCount(o *moq.Origin, path string) int { return o.Backups(path) }

// TestLivenessBackupTakesOver: publisher A (its own process) publishes a
// path on the relay, publisher B (another process) publishes the same path
// and waits as a backup, a subscriber watches. A vanishes without a word —
// SIGKILL, or SIGSTOP, which over TCP is the silent case (a killed
// process's kernel still resets its TCP connections) — and B's frames must
// reach the subscriber within a few seconds, with the default liveness
// settings. The measured time is logged.
func TestLivenessBackupTakesOver(t *testing.T) {
	if testing.Short() {
		t.Skip("runs publisher processes for several seconds")
	}
	for _, c := range []struct {
		kind string
		sig  syscall.Signal
	}{
		{"quic", syscall.SIGKILL},
		{"webtransport", syscall.SIGKILL},
		{"websocket", syscall.SIGKILL},
		{"quic", syscall.SIGSTOP},
		{"websocket", syscall.SIGSTOP},
	} {
		name := "kill"
		if c.sig == syscall.SIGSTOP {
			name = "stop"
		}
		t.Run(c.kind+"/"+name, func(t *testing.T) {
			testBackupTakesOver(t, c.kind, c.sig)
		})
	}
}

// takeoverBound is the generous bound on how long the backup may take:
// the default idle timeout plus keep-alive (quic-go counts the idle
// timeout from the first packet sent after the peer fell silent), plus
// two seconds for the handover on a busy machine.
var takeoverBound = DefaultLiveness.IdleTimeout + DefaultLiveness.KeepAlive + 2*time.Second

func testBackupTakesOver(t *testing.T, kind string, sig syscall.Signal) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{})
	url := serverURL(srv, kind, "")

	// The subscriber, in this process over raw QUIC, reports every frame
	// it reads with the time it read it.
	type seen struct {
		frame string
		at    time.Time
	}
	frames := make(chan seen, 1024)
	local := moq.NewOrigin()
	defer local.Close()
	sub := dialTest(t, ctx, srv, "quic", Lite04, WithConsume(local))
	subCtx, stopSub := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopSub()
		_ = sub.Close()
		wg.Wait()
	}()
	wg.Go(func() {
		ann := local.Announced(livenessPath)
		defer ann.Close()
		for {
			a, err := ann.Next(subCtx)
			if err != nil {
				return
			}
			if !a.Active {
				continue
			}
			tr, err := a.Broadcast.Subscribe(livenessTrack, 0)
			if err != nil {
				continue
			}
			for {
				g, err := tr.NextGroup(subCtx)
				if err != nil {
					break
				}
				for {
					f, err := g.NextFrame(subCtx)
					if err != nil {
						break
					}
					select {
					case frames <- seen{string(f), time.Now()}:
					default: // the test stopped looking
					}
				}
				g.Close()
			}
			tr.Close()
		}
	})
	waitFrom := func(name string, bound time.Duration) (time.Time, bool) {
		t.Helper()
		timer := time.NewTimer(bound)
		defer timer.Stop()
		for {
			select {
			case f := <-frames:
				if strings.HasPrefix(f.frame, name+"-") {
					return f.at, true
				}
			case <-timer.C:
				return time.Time{}, false
			}
		}
	}

	a := startLivenessPublisher(t, ctx, url, srv.Fingerprint(), "A")
	if _, ok := waitFrom("A", 10*time.Second); !ok {
		t.Fatal("no frame of publisher A reached the subscriber")
	}
	startLivenessPublisher(t, ctx, url, srv.Fingerprint(), "B")
	for backupCount(srv.Origin(), livenessPath) != 1 {
		select {
		case <-ctx.Done():
			t.Fatal("publisher B never queued as a backup on the relay")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// A is still the one delivering.
	if _, ok := waitFrom("A", 5*time.Second); !ok {
		t.Fatal("publisher A stopped delivering once B queued")
	}

	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	at, ok := waitFrom("B", takeoverBound)
	if !ok {
		t.Fatalf("%s: no frame of backup B within %v of signal %d to publisher A", kind, takeoverBound, int(sig))
	}
	sigName := "SIGKILL"
	if sig == syscall.SIGSTOP {
		sigName = "SIGSTOP"
	}
	t.Logf("%s, %s to publisher A: backup B's first frame reached the subscriber %v later", kind, sigName, at.Sub(killed).Round(10*time.Millisecond))
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// moqbridgeBinary builds the command once for the tests that run it as
// separate processes (to kill it, or to run several commands side by side
// with their own logs).
func moqbridgeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "moqbridge-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "moqbridge")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freePort finds a port free for both UDP and TCP on loopback.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = pc.Close()
		if err == nil {
			_ = l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// process is a moqbridge command run as a child process.
type process struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr testkit.LogBuffer
	done   chan error

	fingerprint string // serve: the certificate's SHA-256 it printed
}

func startProcess(t *testing.T, ctx context.Context, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.CommandContext(ctx, moqbridgeBinary(t), args...), done: make(chan error, 1)}
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for the process to exit and returns its exit status.
func (p *process) wait(t *testing.T, ctx context.Context, what string) int {
	t.Helper()
	select {
	case <-p.done:
		p.done <- nil // for the cleanup
		return p.cmd.ProcessState.ExitCode()
	case <-ctx.Done():
		t.Fatalf("%s did not exit; stderr:\n%s", what, p.stderr.String())
		return -1
	}
}

// startServe runs `moqbridge serve` on port, with more flags, and waits
// until it listens.
func startServe(t *testing.T, ctx context.Context, port int, flags ...string) *process {
	t.Helper()
	p := &process{done: make(chan error, 1)}
	args := append([]string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, flags...)
	p.cmd = exec.CommandContext(ctx, moqbridgeBinary(t), args...)
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if fp, found := strings.CutPrefix(strings.TrimSpace(sc.Text()), "self-signed certificate SHA-256: "); found {
				p.fingerprint = fp
			}
			if !ok && strings.HasPrefix(sc.Text(), "press Ctrl-C") {
				ok = true
				listening <- true
			}
		}
		if !ok {
			listening <- false
		}
	}()
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	if !<-listening {
		t.Fatalf("serve did not start: %s", p.stderr.String())
	}
	return p
}

// stop ends a serve process with sig and waits for it.
func (p *process) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	err := <-p.done
	p.done <- err
}

// TestRelayRestart: `moqbridge publish` and `moqbridge record` run against
// `moqbridge serve`, which is stopped (SIGTERM) and started again, then
// killed (SIGKILL) and started again, on the same port. Both clients
// reconnect on their own; record exits 0 after its --duration with one
// file that ffmpeg decodes without an error, whose decode times increase
// in every stream and run on through both restarts (the publisher's clock,
// with gaps for the outages, no restart from 0), and the clients' logs say
// what happened.
func TestRelayRestart(t *testing.T) {
	testkit.MustHaveTools(t, "ffprobe", "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	relay := startServe(t, ctx, port)
	dir := t.TempDir()
	const duration = 24 * time.Second
	pub := startProcess(t, ctx, "publish", "--loop", "--reconnect-max", "1s", "--broadcast", "test/restart",
		"../../sources/fmp4/testdata/h264_aac_bframes.mp4", url)
	began := time.Now()
	rec := startProcess(t, ctx, "record", "--duration", duration.String(), "--reconnect-max", "1s", "-o", dir, url, "test/restart")

	// Recording: wait for the first fragments on disk.
	waitFor(t, ctx, "the first fragments", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "test", "restart", "*.mp4"))
		if len(files) == 0 {
			return false
		}
		st, err := os.Stat(files[0])
		return err == nil && st.Size() > 20000
	})
	relay.stop(t, syscall.SIGTERM)
	gracefulAt := time.Since(began)
	relay = startServe(t, ctx, port)
	waitFor(t, ctx, "the publisher to reconnect", func() bool {
		return strings.Contains(pub.stderr.String(), "moq reconnected")
	})
	time.Sleep(2 * time.Second)
	relay.stop(t, syscall.SIGKILL)
	killedAt := time.Since(began)
	relay = startServe(t, ctx, port)

	if code := rec.wait(t, ctx, "record"); code != 0 {
		t.Fatalf("record exited %d:\n%s", code, rec.stderr.String())
	}
	files := strings.Fields(rec.stdout.String())
	if len(files) != 1 {
		t.Fatalf("record printed %q, want one file continued across the restarts", files)
	}
	_ = pub.cmd.Process.Signal(os.Interrupt)
	if code := pub.wait(t, ctx, "publish"); code != 0 {
		t.Errorf("publish exited %d after Ctrl-C:\n%s", code, pub.stderr.String())
	}
	for _, want := range []string{"reason=\"the relay shut down\"", "moq reconnected"} {
		if !strings.Contains(pub.stderr.String(), want) {
			t.Errorf("publish log lacks %q:\n%s", want, pub.stderr.String())
		}
	}
	for _, want := range []string{"moq connection lost, reconnecting", "lost the broadcast; waiting for it to come back", "moq reconnected"} {
		if !strings.Contains(rec.stderr.String(), want) {
			t.Errorf("record log lacks %q:\n%s", want, rec.stderr.String())
		}
	}
	_ = relay

	// The file: decodes cleanly, one init segment, and per stream decode
	// times that increase and span the recording with its two gaps.
	if out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-i", files[0], "-f", "null", "-").CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("ffmpeg decoding %s: %v\n%s", files[0], err, out)
	}
	for _, stream := range []string{"v:0", "a:0"} {
		dts := testkit.PacketTimes(t, ctx, files[0], stream)
		if len(dts) < 100 {
			t.Fatalf("%s: %d packets", stream, len(dts))
		}
		var gaps []float64
		for i := 1; i < len(dts); i++ {
			if dts[i] <= dts[i-1] {
				t.Fatalf("%s packet %d: dts %.3f after %.3f", stream, i, dts[i], dts[i-1])
			}
			if d := dts[i] - dts[i-1]; d > 0.3 {
				gaps = append(gaps, d)
			}
		}
		span := dts[len(dts)-1] - dts[0]
		t.Logf("%s: %d packets over %.1fs, gaps %.1f (restarts at %v and %v)", stream, len(dts), span, gaps,
			gracefulAt.Round(100*time.Millisecond), killedAt.Round(100*time.Millisecond))
		// The publisher's clock runs on through the outages: the file
		// spans about the time recorded, outages included.
		if span < (duration - 6*time.Second).Seconds() {
			t.Errorf("%s spans %.1fs of a %v recording: timestamps did not run on across the restarts", stream, span, duration)
		}
		if len(gaps) == 0 || len(gaps) > 4 {
			t.Errorf("%s: gaps %v, want the outages of the two restarts", stream, gaps)
		}
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

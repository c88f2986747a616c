package rtmpbench

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moqbridge/moqbridge/bench"
)

// processTimeout bounds starting and stopping a child process.
const processTimeout = 15 * time.Second

// BinaryEnv names a moqbridge binary for the benchmarks to run instead
// of building one from this module's work tree (go build, the default).
const BinaryEnv = "MOQBRIDGE_RTMPBENCH_BIN"

// buildMoqbridge returns the moqbridge binary the benchmarks run: the one
// BinaryEnv names, or else the command of this module's work tree, built
// once per test process into binDir (so that every benchmark of a run
// measures the same code, whatever happens to the work tree meanwhile).
func buildMoqbridge() (string, error) {
	if bin := os.Getenv(BinaryEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s: %w", BinaryEnv, err)
		}
		return bin, nil
	}
	build.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "rtmpbench-bin-")
		if build.err != nil {
			return
		}
		build.rev = bench.Revision("../..")
		bin := filepath.Join(build.dir, "moqbridge")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/moqbridge/moqbridge/cmd/moqbridge")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/moqbridge: %w\n%s", err, out)
			return
		}
		build.bin = bin
	})
	return build.bin, build.err
}

// build is the binary built by buildMoqbridge; removeBuild removes it.
var build struct {
	sync.Once
	dir, bin, rev string
	err           error
}

func removeBuild() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// binaryNote says which code the benchmarks run, for their logs.
func binaryNote() string {
	if bin := os.Getenv(BinaryEnv); bin != "" {
		return fmt.Sprintf("moqbridge %s (%s); this module's code %s", bin, BinaryEnv, bench.Revision("../.."))
	}
	return "moqbridge built from " + build.rev
}

// serveProc is a running `moqbridge serve --rtmp` on 127.0.0.1.
type serveProc struct {
	cmd      *exec.Cmd
	quicURL  string   // moql://127.0.0.1:port
	fp       [32]byte // the relay's self-signed certificate
	fpHex    string
	rtmpAddr string // 127.0.0.1:port
	stderr   *bench.TailBuffer
	exited   chan struct{}
	stopOnce sync.Once
}

// serveArgs are the flags of every serve run: loopback only, no TCP
// listener, warnings and errors logged only, and no cap on RTMP clients
// (the default --rtmp-max-conns 64 would refuse 36 of 100 publishers, and
// --rtmp-max-conns-per-addr 16 all but 16 from one address).
var serveArgs = []string{"serve", "--listen", "127.0.0.1:0", "--tcp", "off", "--log-level", "warn",
	"--rtmp", "127.0.0.1:0", "--rtmp-max-conns", "0", "--rtmp-max-conns-per-addr", "0"}

// startServe starts `bin serve --rtmp`, with more flags, and waits for
// its banner.
func startServe(bin string, more ...string) (*serveProc, error) {
	cmd := exec.Command(bin, append(append([]string(nil), serveArgs...), more...)...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = pw
	s := &serveProc{cmd: cmd, stderr: &bench.TailBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.stderr
	err = cmd.Start()
	_ = pw.Close()
	if err != nil {
		_ = pr.Close()
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	banner := make(chan error, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		done := false
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			switch {
			case done:
			case strings.HasPrefix(line, "raw QUIC:"):
				s.quicURL = strings.TrimSpace(strings.TrimPrefix(line, "raw QUIC:"))
			case strings.Contains(line, "SHA-256: "):
				_, s.fpHex, _ = strings.Cut(line, "SHA-256: ")
			case strings.HasPrefix(line, "RTMP ingest listening on tcp "):
				s.rtmpAddr = strings.TrimPrefix(line, "RTMP ingest listening on tcp ")
			case strings.Contains(line, "Ctrl-C"):
				done = true
				banner <- nil
			}
		}
		if !done {
			banner <- errors.New("serve ended before its banner")
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case err = <-banner:
	case <-time.After(processTimeout):
		err = errors.New("no banner")
	}
	if err == nil {
		var fp []byte
		fp, err = hex.DecodeString(s.fpHex)
		switch {
		case err != nil || len(fp) != 32:
			err = fmt.Errorf("bad fingerprint %q", s.fpHex)
		case !strings.HasPrefix(s.quicURL, "moql://") || s.rtmpAddr == "":
			err = fmt.Errorf("banner: relay %q, RTMP %q", s.quicURL, s.rtmpAddr)
		default:
			copy(s.fp[:], fp)
		}
	}
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("moqbridge serve: %w%s", err, s.stderr.Note(""))
	}
	return s, nil
}

func (s *serveProc) pid() int { return s.cmd.Process.Pid }

// stop interrupts serve (as Ctrl-C does) and kills it if it has not
// exited within processTimeout.
func (s *serveProc) stop() {
	s.stopOnce.Do(func() { stopProcess(s.cmd, s.exited) })
}

// stopProcess sends SIGINT to a started command and kills it if it has
// not exited within processTimeout; exited is closed when its Wait
// returned.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(processTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
}

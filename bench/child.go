package bench

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// childTimeout bounds every exchange with the relay child: starting up,
// answering a stats request, shutting down.
const childTimeout = 10 * time.Second

// child is a relay running in a re-executed copy of this binary.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *os.File // read end of the child's stdout; ours to close
	dec    *json.Decoder
	stderr *tailBuffer

	addr string
	fp   [32]byte

	mu       sync.Mutex // one request at a time
	stopOnce sync.Once
}

// startChild re-executes the current binary as role, with env added to its
// environment, and waits until the relay is listening.
func startChild(role string, env ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The arguments keep the test framework quiet should a binary without
	// role dispatch be started by mistake; RunRole ignores them.
	cmd := exec.Command(exe, "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(append(os.Environ(), RoleEnv+"="+role), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// A pipe of our own rather than StdoutPipe: exec.Cmd.Wait closes
	// StdoutPipe, which would race with a reader still decoding.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = pw
	c := &child{cmd: cmd, stdin: stdin, stdout: pr, dec: json.NewDecoder(bufio.NewReader(pr)), stderr: &tailBuffer{}}
	cmd.Stderr = c.stderr
	err = cmd.Start()
	_ = pw.Close()
	if err != nil {
		_ = pr.Close()
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	var ready readyMsg
	if err := c.receive(&ready); err != nil {
		c.stop()
		return nil, fmt.Errorf("%s did not start: %w%s", role, err, c.stderr.note())
	}
	fp, err := hex.DecodeString(ready.Fingerprint)
	if err != nil || len(fp) != len(c.fp) {
		c.stop()
		return nil, fmt.Errorf("%s sent a bad fingerprint %q", role, ready.Fingerprint)
	}
	c.addr = ready.Addr
	copy(c.fp[:], fp)
	return c, nil
}

// stats asks the child for its counters.
func (c *child) stats() (RelayStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var st RelayStats
	if _, err := io.WriteString(c.stdin, cmdStats+"\n"); err != nil {
		return st, fmt.Errorf("relay stats: %w%s", err, c.stderr.note())
	}
	if err := c.receive(&st); err != nil {
		return st, fmt.Errorf("relay stats: %w%s", err, c.stderr.note())
	}
	return st, nil
}

// receive decodes the next line from the child, killing it if it does not
// answer within childTimeout (which also ends the decode).
func (c *child) receive(v any) error {
	done := make(chan error, 1)
	go func() { done <- c.dec.Decode(v) }()
	t := time.NewTimer(childTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-done
		return errors.New("timed out")
	}
}

// stop closes the child's stdin, which makes it shut down, and kills it if
// it has not exited within childTimeout.
func (c *child) stop() {
	c.stopOnce.Do(func() {
		_ = c.stdin.Close()
		exited := make(chan struct{})
		go func() {
			_ = c.cmd.Wait()
			close(exited)
		}()
		t := time.NewTimer(childTimeout)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			_ = c.cmd.Process.Kill()
			<-exited
		}
		_ = c.stdout.Close()
	})
}

// tailBuffer keeps the last few KiB of the child's stderr for error
// messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

// note formats the captured stderr as a suffix for an error message.
func (t *tailBuffer) note() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) == 0 {
		return ""
	}
	return "; relay stderr: " + string(t.buf)
}

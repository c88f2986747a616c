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

// childTimeout bounds every exchange with a child process: starting up,
// answering a request, shutting down.
const childTimeout = 10 * time.Second

// child is a helper process of the benchmark that takes one-line requests
// on stdin and answers each with one JSON line on stdout: a relay, or the
// gomoqt contender's peers.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *os.File // read end of the child's stdout; ours to close
	dec    *json.Decoder
	stderr *TailBuffer

	mu       sync.Mutex // one request at a time
	stopOnce sync.Once
}

// startProcess starts cmd as a child named name (for error messages).
func startProcess(name string, cmd *exec.Cmd) (*child, error) {
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
	c := &child{name: name, cmd: cmd, stdin: stdin, stdout: pr, dec: json.NewDecoder(bufio.NewReader(pr)), stderr: &TailBuffer{}}
	cmd.Stderr = c.stderr
	err = cmd.Start()
	_ = pw.Close()
	if err != nil {
		_ = pr.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return c, nil
}

// call sends req and decodes the answer into v.
func (c *child) call(req string, v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.stdin, req+"\n"); err != nil {
		return fmt.Errorf("%s %s: %w%s", c.name, req, err, c.stderr.Note(c.name))
	}
	if err := c.receive(v, childTimeout); err != nil {
		return fmt.Errorf("%s %s: %w%s", c.name, req, err, c.stderr.Note(c.name))
	}
	return nil
}

// receive decodes the next line from the child, killing it if it does not
// answer within timeout (which also ends the decode).
func (c *child) receive(v any, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- c.dec.Decode(v) }()
	t := time.NewTimer(timeout)
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

// relayChild is a relay child: it announces its address and certificate
// fingerprint, then answers "stats" with RelayStats.
type relayChild struct {
	*child
	addr string
	fp   [32]byte
}

// startChild re-executes the current binary as role, with env added to its
// environment, and waits until the relay is listening.
func startChild(role string, env ...string) (*relayChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The arguments keep the test framework quiet should a binary without
	// role dispatch be started by mistake; RunRole ignores them.
	cmd := exec.Command(exe, "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(append(os.Environ(), RoleEnv+"="+role), env...)
	return startRelay(role, cmd)
}

// startRelay starts cmd and waits until the relay it runs is listening.
func startRelay(name string, cmd *exec.Cmd) (*relayChild, error) {
	c, err := startProcess(name, cmd)
	if err != nil {
		return nil, err
	}
	var ready readyMsg
	if err := c.receive(&ready, childTimeout); err != nil {
		c.stop()
		return nil, fmt.Errorf("%s did not start: %w%s", name, err, c.stderr.Note(name))
	}
	r := &relayChild{child: c, addr: ready.Addr}
	fp, err := hex.DecodeString(ready.Fingerprint)
	if err != nil || len(fp) != len(r.fp) {
		c.stop()
		return nil, fmt.Errorf("%s sent a bad fingerprint %q", name, ready.Fingerprint)
	}
	copy(r.fp[:], fp)
	return r, nil
}

// stats asks the relay for its counters.
func (r *relayChild) stats() (RelayStats, error) {
	var st RelayStats
	err := r.call(cmdStats, &st)
	return st, err
}

// TailBuffer keeps the last few KiB written to it (a child process's
// stderr), for error messages.
type TailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

// TailSize is how much a TailBuffer keeps.
const TailSize = 4 << 10

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > TailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-TailSize:]...)
	}
	return len(p), nil
}

// String returns what was kept.
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// Note formats what was kept as a suffix for an error message, naming
// whose stderr it is (name may be empty); "" when nothing was written.
func (t *TailBuffer) Note(name string) string {
	s := t.String()
	switch {
	case s == "":
		return ""
	case name == "":
		return "; stderr: " + s
	}
	return "; " + name + " stderr: " + s
}

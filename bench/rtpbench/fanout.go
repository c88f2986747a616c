package rtpbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/bench"
)

// FanoutEnv, set in the environment of this package's test binary, makes
// its TestMain run the UDP fan-out (RunFanout) instead of the tests: the
// benchmark runs the fan-out as a child process of its own, so that its
// CPU time is not counted with the in-process recorder's.
const FanoutEnv = "MOQBRIDGE_RTPBENCH_FANOUT"

// fanoutBuffer is the receive buffer asked of the kernel for each of the
// fan-out's sockets: an encoder sends a keyframe as a burst of packets.
const fanoutBuffer = 4 << 20

// fanoutConfig is what the fan-out is given (JSON in FanoutEnv): the
// addresses of its input sockets (default: as many as each receiver has
// destinations, on free loopback ports), and for each receiver one
// destination per input socket, in the same order (for an SDP of two
// media: video RTP, video RTCP, audio RTP, audio RTCP). Without receivers
// it only counts what it receives: a discard receiver.
type fanoutConfig struct {
	Listen []string   `json:"listen,omitempty"`
	Dests  [][]string `json:"dests,omitempty"`
}

// fanoutReady is the line the fan-out prints once it listens: its input
// sockets' addresses, in the order of the destinations.
type fanoutReady struct {
	Inputs []string `json:"inputs"`
}

// FanoutCounts is the line the fan-out prints when it stops: what each
// input socket received and what it forwarded.
type FanoutCounts struct {
	Datagrams  []uint64 `json:"datagrams"` // received, per input
	Bytes      []uint64 `json:"bytes"`     // received, per input
	Forwarded  uint64   `json:"forwarded"` // datagrams sent, all receivers
	SendErrors uint64   `json:"sendErrors"`
}

// RunFanout is the fan-out's process: it listens on one loopback UDP
// socket per input of the configuration in FanoutEnv, prints a
// fanoutReady line on stdout, and forwards every datagram an input
// receives (RTP and RTCP alike, unchanged) to that input's destination of
// every receiver, until its stdin ends; then it prints a FanoutCounts
// line and returns the process's exit code.
func RunFanout() int {
	if err := runFanout(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rtpbench fan-out:", err)
		return 1
	}
	return 0
}

func runFanout(stdin io.Reader, stdout io.Writer) error {
	var cfg fanoutConfig
	if err := json.Unmarshal([]byte(os.Getenv(FanoutEnv)), &cfg); err != nil {
		return fmt.Errorf("%s: %w", FanoutEnv, err)
	}
	inputs := len(cfg.Listen)
	if inputs == 0 && len(cfg.Dests) > 0 {
		inputs = len(cfg.Dests[0])
	}
	if inputs == 0 {
		return errors.New("no inputs")
	}
	listenAt := make([]netip.AddrPort, inputs)
	for i := range listenAt {
		listenAt[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)
		if i < len(cfg.Listen) {
			ap, err := netip.ParseAddrPort(cfg.Listen[i])
			if err != nil {
				return fmt.Errorf("listen address %q: %w", cfg.Listen[i], err)
			}
			listenAt[i] = ap
		}
	}
	dests := make([][]netip.AddrPort, inputs) // per input, every receiver's
	for _, recv := range cfg.Dests {
		if len(recv) != inputs {
			return fmt.Errorf("a receiver has %d destinations, another %d", len(recv), inputs)
		}
		for i, d := range recv {
			ap, err := netip.ParseAddrPort(d)
			if err != nil {
				return fmt.Errorf("destination %q: %w", d, err)
			}
			dests[i] = append(dests[i], ap)
		}
	}

	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	listen := func(at netip.AddrPort) (*net.UDPConn, error) {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(at))
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		_ = c.SetReadBuffer(fanoutBuffer)
		return c, nil
	}
	// Each input sends from a socket of its own that never reads: what a
	// receiver sends back (ffmpeg's RTCP receiver reports) is not
	// forwarded as if the sender had sent it.
	in, out := make([]*net.UDPConn, inputs), make([]*net.UDPConn, inputs)
	ready := fanoutReady{}
	for i := range inputs {
		var err error
		if in[i], err = listen(listenAt[i]); err != nil {
			return err
		}
		if out[i], err = listen(netip.AddrPortFrom(listenAt[i].Addr(), 0)); err != nil {
			return err
		}
		ready.Inputs = append(ready.Inputs, in[i].LocalAddr().String())
	}

	counts := FanoutCounts{Datagrams: make([]uint64, inputs), Bytes: make([]uint64, inputs)}
	var forwarded, sendErrors atomic.Uint64
	var wg sync.WaitGroup
	for i := range inputs {
		wg.Go(func() {
			buf := make([]byte, 65535)
			for {
				n, err := in[i].Read(buf)
				if err != nil {
					return // closed: the fan-out stops
				}
				// Only this goroutine writes its input's counters; they
				// are read after wg.Wait.
				counts.Datagrams[i]++
				counts.Bytes[i] += uint64(n)
				for _, d := range dests[i] {
					if _, err := out[i].WriteToUDPAddrPort(buf[:n], d); err != nil {
						sendErrors.Add(1)
						continue
					}
					forwarded.Add(1)
				}
			}
		})
	}
	line, _ := json.Marshal(ready)
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, stdin) // until the benchmark closes it
	for _, c := range in {
		_ = c.Close()
	}
	wg.Wait()
	counts.Forwarded, counts.SendErrors = forwarded.Load(), sendErrors.Load()
	line, _ = json.Marshal(counts)
	_, err := fmt.Fprintf(stdout, "%s\n", line)
	return err
}

// fanout is a running fan-out child process.
type fanout struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	inputs []netip.AddrPort
	stderr *bench.TailBuffer
}

// startFanout runs this test binary as the fan-out, listening at listen
// (nil: free loopback ports) and forwarding to dests (per receiver, one
// address per input), and waits for its inputs.
func startFanout(ctx context.Context, listen []netip.AddrPort, dests [][]netip.AddrPort) (*fanout, error) {
	var cfg fanoutConfig
	for _, a := range listen {
		cfg.Listen = append(cfg.Listen, a.String())
	}
	for _, recv := range dests {
		var r []string
		for _, d := range recv {
			r = append(r, d.String())
		}
		cfg.Dests = append(cfg.Dests, r)
	}
	b, _ := json.Marshal(cfg)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), FanoutEnv+"="+string(b))
	f := &fanout{cmd: cmd, stderr: &bench.TailBuffer{}}
	cmd.Stderr = f.stderr
	if f.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.WaitDelay = processTimeout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("fan-out: %w", err)
	}
	f.lines = bufio.NewScanner(stdout)
	var ready fanoutReady
	if err := f.readLine(&ready); err != nil {
		_ = f.stdin.Close()
		_ = cmd.Wait()
		return nil, fmt.Errorf("fan-out: %w%s", err, f.stderr.Note("fan-out"))
	}
	for _, s := range ready.Inputs {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			_, _ = f.stop()
			return nil, fmt.Errorf("fan-out input %q: %w", s, err)
		}
		f.inputs = append(f.inputs, ap)
	}
	return f, nil
}

// readLine decodes the fan-out's next stdout line into v.
func (f *fanout) readLine(v any) error {
	if !f.lines.Scan() {
		if err := f.lines.Err(); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	return json.Unmarshal(f.lines.Bytes(), v)
}

// stop ends the fan-out (its stdin closes) and returns its counts and
// CPU time.
func (f *fanout) stop() (FanoutCounts, time.Duration) {
	var c FanoutCounts
	_ = f.stdin.Close()
	err := f.readLine(&c)
	_ = f.cmd.Wait()
	if err != nil {
		c.SendErrors = ^uint64(0) // no counts: never taken for a clean run
	}
	return c, bench.ExitCPU(f.cmd.ProcessState)
}

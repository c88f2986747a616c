package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/protocol/auth"
)

// nodeDialect is one way @moq/lite 0.2.2 reaches moqbridge over the
// WebSocket fallback (see js/peer.js).
type nodeDialect struct {
	name        string           // peer.js DIALECT argument
	version     string           // what connection.version must say
	wire        protocol.Version // what the relay must have negotiated
	subprotocol string           // the WebSocket subprotocol the relay must pick
}

// nodeDialects: connect(url) offers "qmux-00, webtransport" without an
// application protocol, which the relay answers with the legacy dialect and
// SETUP negotiates moq-lite-02; a qmux session created with protocols
// ["moq-lite-04"] gets the qmux-00 dialect and moq-lite-04 without SETUP.
var nodeDialects = []nodeDialect{
	{name: "legacy", version: "moq-lite-02", wire: protocol.Lite02, subprotocol: "webtransport"},
	{name: "qmux", version: "moq-lite-04", wire: protocol.Lite04, subprotocol: "qmux-00.moq-lite-04"},
}

// nodeFinal is NODE_FINAL in js/peer.js: per track, per final group, the
// sizes of the pattern frames after the marker "node-final <track> <i>".
var nodeFinal = map[string][][]int{
	"a": {{1, 0, 100}, {20000}, {0}},
	"b": {{3, 70000, 5}, {16361, 16360}, {0, 0}},
}

// nodeTrackBase is TRACK_BASE in js/peer.js.
var nodeTrackBase = map[string]int{"a": 0, "b": 50}

// nodeMsg is one line peer.js writes on stdout.
type nodeMsg struct {
	Type         string   `json:"type"`
	Version      string   `json:"version"`
	Subprotocol  string   `json:"subprotocol"`
	Path         string   `json:"path"`
	Track        string   `json:"track"`
	Prefix       string   `json:"prefix"`
	Active       bool     `json:"active"`
	Seq          uint64   `json:"seq"`
	Frames       []string `json:"frames"`
	Error        string   `json:"error"`
	Result       string   `json:"result"`
	Connected    bool     `json:"connected"`
	SocketErrors []string `json:"socketErrors"`
	Sizes        []int    `json:"sizes"`  // burst-group: each frame's size
	Hashes       []string `json:"hashes"` // burst-group: each frame's SHA-256, hex
}

// nodePeer is a running js/peer.js.
type nodePeer struct {
	stdin  io.WriteCloser
	msgs   chan nodeMsg      // closed when stdout ends
	stdout testkit.LogBuffer // every line, for failure output
	stderr testkit.LogBuffer
	done   chan struct{}
	err    error
}

// startNode runs js/peer.js with args in its own process group; t.Cleanup
// kills the group and waits for it.
func startNode(t *testing.T, args ...string) *nodePeer {
	t.Helper()
	n := &nodePeer{msgs: make(chan nodeMsg, 1024), done: make(chan struct{})}
	cmd := exec.Command("node", append([]string{filepath.Join("js", "peer.js")}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = &n.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if n.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	go func() {
		defer close(n.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 32<<20)
		for sc.Scan() {
			line := sc.Bytes()
			fmt.Fprintf(&n.stdout, "%s\n", truncate(line))
			var m nodeMsg
			if err := json.Unmarshal(line, &m); err != nil {
				m = nodeMsg{Type: "failed", Error: fmt.Sprintf("bad line %q: %v", truncate(line), err)}
			}
			n.msgs <- m
		}
		close(n.msgs)
		n.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = n.stdin.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			t.Errorf("node (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
	})
	return n
}

// send writes a command line to the script.
func (n *nodePeer) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(n.stdin, cmd+"\n"); err != nil {
		t.Fatalf("node stdin: %v", err)
	}
}

// next returns the script's next message, failing the test on timeout, on
// the script's exit or on a "failed" message.
func (n *nodePeer) next(t *testing.T, ctx context.Context) nodeMsg {
	t.Helper()
	select {
	case m, ok := <-n.msgs:
		if !ok {
			<-n.done
			t.Fatalf("node exited: %v", n.err)
		}
		if m.Type == "failed" {
			t.Fatalf("node failed: %s", m.Error)
		}
		return m
	case <-ctx.Done():
		t.Fatalf("timed out waiting for node: %v", ctx.Err())
	}
	panic("unreachable")
}

// nodeEnv is a moqbridge relay serving WebSocket on its TCP port, for one
// Node test.
type nodeEnv struct {
	srv      *protocol.Server
	relayLog *testkit.LogBuffer
	limits   protocol.Limits // the relay's and the Go clients'
	nodes    int             // node peers expectConnected has seen connect
}

// startNodeRelay starts a relay with TCP (plain HTTP) on; az may be nil.
// Groups are written in bursts and the machine may be busy: a long lag
// bound keeps the relay from dropping groups these tests compare (dropping
// is tested in protocol; the burst tests run with the default limits).
func startNodeRelay(t *testing.T, az *auth.Authorizer) *nodeEnv {
	return startNodeRelayWith(t, az, protocol.Limits{MaxGroupLag: time.Minute})
}

// startNodeRelayWith is startNodeRelay with the given limits for the relay
// and the Go clients (zero fields take protocol.DefaultLimits).
func startNodeRelayWith(t *testing.T, az *auth.Authorizer, limits protocol.Limits) *nodeEnv {
	t.Helper()
	env := &nodeEnv{relayLog: &testkit.LogBuffer{}, limits: limits}
	env.srv = serveRelay(t, protocol.ServerConfig{Auth: az, Limits: limits, Logger: env.relayLog.Logger()})
	return env
}

// httpURL is the relay URL Node connects to (the polyfill maps http: to ws:).
func (e *nodeEnv) httpURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/%s", e.srv.Addr().Port, path)
}

// dial connects a Go client to the relay over raw QUIC, so the relay's only
// WebSocket sessions are Node's.
func (e *nodeEnv) dial(t *testing.T, ctx context.Context, opts ...protocol.DialOption) *protocol.Session {
	t.Helper()
	return e.dialURL(t, ctx, fmt.Sprintf("moql://127.0.0.1:%d", e.srv.Addr().Port), opts...)
}

// dialURL connects a Go client to the relay at url (moql:// for raw QUIC,
// ws:// for the WebSocket fallback on the relay's TCP port).
func (e *nodeEnv) dialURL(t *testing.T, ctx context.Context, url string, opts ...protocol.DialOption) *protocol.Session {
	t.Helper()
	opts = append([]protocol.DialOption{protocol.WithFingerprint(e.srv.Fingerprint()), protocol.WithLimits(e.limits),
		protocol.WithCache(moq.CacheConfig{ReorderWait: time.Minute})}, opts...)
	sess, err := protocol.Dial(ctx, url, opts...)
	if err != nil {
		t.Fatalf("Dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	return sess
}

// failureOutput prints the script's and the relay's output if t failed.
// Register it after startNode, so it runs while everything is alive.
func failureOutput(t *testing.T, env *nodeEnv, peers ...*nodePeer) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, n := range peers {
			t.Logf("node %d stdout:\n%s", i, tail(n.stdout.String(), 60))
			t.Logf("node %d stderr:\n%s", i, tail(n.stderr.String(), 80))
		}
		t.Logf("relay log:\n%s", tail(env.relayLog.String(), 80))
	})
}

// expectConnected reads the script's "connected" message and checks the
// version both sides negotiated and the WebSocket subprotocol. The relay's
// WebSocket sessions must be the node peers' that connected so far (Go
// clients of these tests use raw QUIC, or dial WebSocket after this).
func expectConnected(t *testing.T, ctx context.Context, env *nodeEnv, n *nodePeer, d nodeDialect) {
	t.Helper()
	m := n.next(t, ctx)
	if m.Type != "connected" {
		t.Fatalf("node: %+v, want connected", m)
	}
	if m.Version != d.version || m.Subprotocol != d.subprotocol {
		t.Fatalf("node connected with %s over subprotocol %q, want %s over %q", m.Version, m.Subprotocol, d.version, d.subprotocol)
	}
	env.nodes++
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ws []*protocol.Session
		for _, s := range env.srv.Sessions() {
			if s.Transport() == "websocket" {
				ws = append(ws, s)
			}
		}
		if len(ws) >= env.nodes {
			for _, s := range ws {
				if v := s.Version(); v != d.wire {
					t.Fatalf("relay negotiated %s with node, want %s", v, d.wire)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay has %d WebSocket sessions, want %d (node's)", len(ws), env.nodes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forDialects runs fn as a subtest per dialect, each bounded by 60 s.
func forDialects(t *testing.T, fn func(t *testing.T, ctx context.Context, d nodeDialect)) {
	requireTools(t, "node", "node_modules")
	for _, d := range nodeDialects {
		t.Run(d.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now()
			fn(t, ctx, d)
			if !t.Failed() {
				t.Logf("%s: passed in %v", d.name, time.Since(start).Round(time.Millisecond))
			}
		})
	}
}

// receiveNodeTrack reads the groups of tr, a subscription to a track node
// publishes:
// warm-up groups until joined is called, then the final groups of
// nodeFinal[track], byte for byte, with no group missing.
func receiveNodeTrack(ctx context.Context, tr *moq.TrackReader, track string, joined func()) error {
	defer tr.Close()
	finals := nodeFinal[track]
	next := 0
	var last uint64
	for n := 0; next < len(finals); n++ {
		gr, err := tr.NextGroup(ctx)
		if err != nil {
			return fmt.Errorf("track %s after %d groups (%d final): %w", track, n, next, err)
		}
		seq := gr.Sequence()
		frames, err := readBrowserGroup(ctx, gr)
		if err != nil {
			return fmt.Errorf("track %s: %w", track, err)
		}
		if n > 0 && seq != last+1 {
			return fmt.Errorf("track %s: group %d follows group %d: a group is missing", track, seq, last)
		}
		last = seq
		if len(frames) == 0 {
			return fmt.Errorf("track %s: group %d has no frames", track, seq)
		}
		if string(frames[0]) == fmt.Sprintf("node-warmup %s %d", track, seq) {
			if len(frames) != 1 || next > 0 {
				return fmt.Errorf("track %s: bad warm-up group %d (%d frames, after %d finals)", track, seq, len(frames), next)
			}
			if n == 0 {
				joined()
			}
			continue
		}
		if want := fmt.Sprintf("node-final %s %d", track, next); string(frames[0]) != want {
			return fmt.Errorf("track %s: group %d starts with %q, want %q", track, seq, truncate(frames[0]), want)
		}
		sizes := finals[next]
		if len(frames) != 1+len(sizes) {
			return fmt.Errorf("track %s: final group %d has %d frames, want %d", track, next, len(frames), 1+len(sizes))
		}
		for k, size := range sizes {
			if want := patternFrame(nodeTrackBase[track]+next, k, size); !bytes.Equal(frames[1+k], want) {
				return fmt.Errorf("track %s: final group %d frame %d: got %d bytes, want %d bytes of the pattern (first diff at %d)",
					track, next, 1+k, len(frames[1+k]), len(want), firstDiff(frames[1+k], want))
			}
		}
		next++
	}
	return nil
}

// TestNodePublishWebSocket: @moq/lite in Node publishes a broadcast with two
// tracks over the WebSocket fallback; a Go subscriber behind the relay
// receives every frame byte for byte (frames over 16 360 bytes, which the
// JS side sends in several WebSocket messages, and empty frames).
func TestNodePublishWebSocket(t *testing.T) {
	forDialects(t, func(t *testing.T, ctx context.Context, d nodeDialect) {
		env := startNodeRelay(t, nil)
		node := startNode(t, "publish", env.httpURL(""), d.name, "interop/node")
		failureOutput(t, env, node)
		expectConnected(t, ctx, env, node, d)
		waitAnnounced(t, ctx, env.srv.Origin(), "interop/node")
		sess := env.dial(t, ctx)

		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		type result struct {
			track string
			err   error
		}
		results := make(chan result, 2)
		joined := make(chan string, 2)
		for _, track := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr, err := sess.Consume("interop/node").Subscribe(track, 0)
				if err == nil {
					err = receiveNodeTrack(ctx, tr, track, func() { joined <- track })
				}
				results <- result{track, err}
			}()
		}
		requested := map[string]bool{}
		nJoined, nDone := 0, 0
		for nDone < 2 {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out: %d tracks joined, %d done, requested %v", nJoined, nDone, requested)
			case track := <-joined:
				if nJoined++; nJoined == 2 {
					node.send(t, "final")
				}
				t.Logf("Go joined track %s", track)
			case r := <-results:
				if r.err != nil {
					t.Fatalf("Go subscriber: %v", r.err)
				}
				nDone++
			case m, ok := <-node.msgs:
				if !ok {
					t.Fatalf("node exited early")
				}
				switch m.Type {
				case "failed":
					t.Fatalf("node failed: %s", m.Error)
				case "requested":
					if requested[m.Track] {
						t.Errorf("the relay requested track %s twice", m.Track)
					}
					requested[m.Track] = true
				case "published", "final":
				default:
					t.Fatalf("unexpected node message %+v", m)
				}
			}
		}
	})
}

// TestNodeSubscribeWebSocket: a Go client publishes two tracks through the
// relay; @moq/lite in Node subscribes to both over the WebSocket fallback
// and reports every group, which must match what Go wrote byte for byte.
func TestNodeSubscribeWebSocket(t *testing.T) {
	forDialects(t, func(t *testing.T, ctx context.Context, d nodeDialect) {
		env := startNodeRelay(t, nil)
		origin := moq.NewOrigin()
		t.Cleanup(origin.Close)
		bw := moq.NewBroadcast()
		t.Cleanup(func() { _ = bw.Close() })
		pubs := map[string]*goPublisher{}
		for _, track := range []string{"a", "b"} {
			tw, err := bw.CreateTrack(track, 0)
			if err != nil {
				t.Fatal(err)
			}
			pubs[track] = &goPublisher{tw: tw, sent: make(map[uint64][][]byte)}
		}
		if err := origin.Publish("interop/go", bw.Reader()); err != nil {
			t.Fatal(err)
		}
		env.dial(t, ctx, protocol.WithPublish(origin))
		waitAnnounced(t, ctx, env.srv.Origin(), "interop/go")

		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		type pubResult struct {
			track string
			seqs  []uint64
			err   error
		}
		finalCh := map[string]chan struct{}{}
		pubDone := make(chan pubResult, 2)
		finalSeqs := map[string]map[uint64]bool{}
		for track, pub := range pubs {
			final := make(chan struct{})
			finalCh[track] = final
			wg.Add(1)
			go func() {
				defer wg.Done()
				seqs := make(chan []uint64, 1)
				err := pub.run(ctx, final, seqs)
				r := pubResult{track: track, err: err}
				if err == nil {
					r.seqs = <-seqs
				}
				pubDone <- r
			}()
		}

		node := startNode(t, "subscribe", env.httpURL(""), d.name, "interop/go")
		failureOutput(t, env, node)
		expectConnected(t, ctx, env, node, d)

		received := map[string]map[uint64]bool{"a": {}, "b": {}}
		firstSeq := map[string]uint64{}
		complete := func() bool {
			for _, track := range []string{"a", "b"} {
				want := finalSeqs[track]
				if want == nil {
					return false
				}
				for seq := range want {
					if !received[track][seq] {
						return false
					}
				}
			}
			return true
		}
		for !complete() {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out: final groups %v, received %v", finalSeqs, received)
			case r := <-pubDone:
				if r.err != nil {
					t.Fatalf("Go publisher of %s: %v", r.track, r.err)
				}
				finalSeqs[r.track] = map[uint64]bool{}
				for _, s := range r.seqs {
					finalSeqs[r.track][s] = true
				}
				t.Logf("Go wrote final groups %v of %s", r.seqs, r.track)
			case m, ok := <-node.msgs:
				if !ok {
					t.Fatalf("node exited early")
				}
				switch m.Type {
				case "failed":
					t.Fatalf("node failed: %s", m.Error)
				case "subscribed":
					pub := pubs[m.Track]
					if pub == nil || m.Path != "interop/go" {
						t.Fatalf("node subscribed to %s %s", m.Path, m.Track)
					}
					firstSeq[m.Track] = m.Seq
					close(finalCh[m.Track])
				case "group":
					pub := pubs[m.Track]
					if pub == nil {
						t.Fatalf("node reported a group of track %q", m.Track)
					}
					checkPageGroup(t, pub, pageMsg{Seq: m.Seq, Frames: m.Frames, Error: m.Error})
					if received[m.Track][m.Seq] {
						t.Fatalf("node reported group %d of %s twice", m.Seq, m.Track)
					}
					if m.Seq < firstSeq[m.Track] {
						t.Fatalf("node received group %d of %s, before the group %d it joined at", m.Seq, m.Track, firstSeq[m.Track])
					}
					received[m.Track][m.Seq] = true
				default:
					t.Fatalf("unexpected node message %+v", m)
				}
			}
		}
	})
}

// TestNodeAnnouncedWebSocket: connection.announced(prefix) in Node, over
// the WebSocket fallback, sees a broadcast a Go client publishes under the
// prefix become active and then end when Go closes it; a broadcast outside
// the prefix is never reported.
func TestNodeAnnouncedWebSocket(t *testing.T) {
	forDialects(t, func(t *testing.T, ctx context.Context, d nodeDialect) {
		env := startNodeRelay(t, nil)
		origin := moq.NewOrigin()
		t.Cleanup(origin.Close)
		env.dial(t, ctx, protocol.WithPublish(origin))

		node := startNode(t, "announced", env.httpURL(""), d.name, "interop/ann")
		failureOutput(t, env, node)
		expectConnected(t, ctx, env, node, d)
		if m := node.next(t, ctx); m.Type != "listening" {
			t.Fatalf("node: %+v, want listening", m)
		}

		// Outside the prefix ("interop/announced" shares only characters).
		other := moq.NewBroadcast()
		t.Cleanup(func() { _ = other.Close() })
		if err := origin.Publish("interop/announced", other.Reader()); err != nil {
			t.Fatal(err)
		}
		bw := moq.NewBroadcast()
		t.Cleanup(func() { _ = bw.Close() })
		if _, err := bw.CreateTrack("data", 0); err != nil {
			t.Fatal(err)
		}
		if err := origin.Publish("interop/ann/one", bw.Reader()); err != nil {
			t.Fatal(err)
		}
		var seen []string
		next := func() nodeMsg {
			m := node.next(t, ctx)
			if m.Type != "announced" {
				t.Fatalf("node: %+v, want announced", m)
			}
			seen = append(seen, fmt.Sprintf("%s active=%v", m.Path, m.Active))
			if m.Path != "interop/ann/one" {
				t.Fatalf("node's announced(interop/ann) reported %q (all: %v)", m.Path, seen)
			}
			return m
		}
		if m := next(); !m.Active {
			t.Fatalf("node saw interop/ann/one end before it was active: %v", seen)
		}
		if err := bw.Close(); err != nil {
			t.Fatal(err)
		}
		if m := next(); m.Active {
			t.Fatalf("node saw interop/ann/one announced twice: %v", seen)
		}
		// And again: a new broadcast at the same path is announced anew.
		bw2 := moq.NewBroadcast()
		t.Cleanup(func() { _ = bw2.Close() })
		if err := origin.Publish("interop/ann/one", bw2.Reader()); err != nil {
			t.Fatal(err)
		}
		if m := next(); !m.Active {
			t.Fatalf("node did not see interop/ann/one come back: %v", seen)
		}
		t.Logf("node saw: %v", seen)
	})
}

// resetUnauthorized matches the error @moq/lite reports for a stream the
// relay reset with code 6 (Unauthorized).
var resetUnauthorized = regexp.MustCompile(`\bRESET_STREAM: 6\b`)

// TestNodeAuthWebSocket: a relay with JWT auth, over the WebSocket
// fallback. Without a token the WebSocket upgrade is refused with HTTP 401
// (node reports the handshake error). With a token for root "room", put
// "alice", get "bob": the broadcast node publishes at "mallory" never
// reaches the relay while "alice" does and is received byte for byte, node
// receives the Go broadcast "room/bob", and its subscription to "secret" is
// refused.
func TestNodeAuthWebSocket(t *testing.T) {
	forDialects(t, func(t *testing.T, ctx context.Context, d nodeDialect) {
		key, err := auth.GenerateKey("HS256")
		if err != nil {
			t.Fatal(err)
		}
		keyFile := filepath.Join(t.TempDir(), "key.jwk")
		if err := os.WriteFile(keyFile, key, 0o600); err != nil {
			t.Fatal(err)
		}
		az, err := auth.New(auth.Config{KeyFiles: []string{keyFile}})
		if err != nil {
			t.Fatal(err)
		}
		token, err := auth.Mint(keyFile, auth.Claims{Root: "room", Put: []string{"alice"}, Get: []string{"bob"}})
		if err != nil {
			t.Fatal(err)
		}
		env := startNodeRelay(t, az)

		// No token: refused.
		refused := startNode(t, "refused", env.httpURL("room"), d.name)
		failureOutput(t, env, refused)
		m := refused.next(t, ctx)
		if m.Type != "refused" {
			t.Fatalf("node: %+v, want refused", m)
		}
		t.Logf("without a token: connected=%v error=%q socket errors=%q", m.Connected, m.Error, m.SocketErrors)
		if m.Connected || !strings.Contains(strings.Join(m.SocketErrors, "\n"), "401") {
			t.Fatalf("connecting without a token: connected=%v, socket errors %q; want a refusal with HTTP 401", m.Connected, m.SocketErrors)
		}
		if n := len(env.srv.Sessions()); n != 0 {
			t.Fatalf("relay has %d sessions after refusing node", n)
		}

		// The Go broadcast node may read: room/bob, track "a".
		bob := moq.NewBroadcast()
		t.Cleanup(func() { _ = bob.Close() })
		bobTrack, err := bob.CreateTrack("a", 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.srv.Origin().Publish("room/bob", bob.Reader()); err != nil {
			t.Fatal(err)
		}
		bobPub := &goPublisher{tw: bobTrack, sent: make(map[uint64][][]byte)}
		bobFrames := [][]byte{[]byte("bob"), patternFrame(7, 1, 40000), {}}
		if _, err := bobPub.writeGroup(bobFrames); err != nil {
			t.Fatal(err)
		}

		node := startNode(t, "auth", env.httpURL("room?jwt="+token), d.name)
		failureOutput(t, env, node)
		expectConnected(t, ctx, env, node, d)

		// The relay gets room/alice (Go reads its track "a" from the relay's
		// origin, as a relay subscriber); room/mallory, published first,
		// never reaches it.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		aliceErr := make(chan error, 1)
		joined := make(chan struct{}, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			aliceErr <- func() error {
				ann := env.srv.Origin().Announced("room")
				defer ann.Close()
				for {
					a, err := ann.Next(ctx)
					if err != nil {
						return fmt.Errorf("waiting for room/alice: %w", err)
					}
					if a.Path == "room/mallory" {
						return fmt.Errorf("the relay announced %s (active=%v), outside the token's put", a.Path, a.Active)
					}
					if a.Active && a.Path == "room/alice" {
						break
					}
				}
				b, err := env.srv.Origin().Consume("room/alice")
				if err != nil {
					return err
				}
				tr, err := b.Subscribe("a", 0)
				if err != nil {
					return err
				}
				return receiveNodeTrack(ctx, tr, "a", func() { joined <- struct{}{} })
			}()
		}()
		// room/bob gets a group every 200 ms until node has one.
		bobGot := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-bobGot:
					return
				case <-time.After(200 * time.Millisecond):
				}
				_, _ = bobPub.writeGroup(bobFrames)
			}
		}()

		var aliceOK, bobOK bool
		secret := ""
		for !(aliceOK && bobOK && secret != "") {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out: alice received %v, bob received by node %v, secret %q", aliceOK, bobOK, secret)
			case <-joined:
				node.send(t, "final")
			case err := <-aliceErr:
				if err != nil {
					t.Fatalf("relay side: %v", err)
				}
				aliceOK = true
				t.Logf("the relay received room/alice byte for byte")
			case m, ok := <-node.msgs:
				if !ok {
					t.Fatalf("node exited early")
				}
				switch m.Type {
				case "failed":
					t.Fatalf("node failed: %s", m.Error)
				case "published", "final":
				case "publish-error":
					t.Logf("node: publishing %s failed: %s", m.Path, m.Error)
				case "requested":
					if m.Path != "alice" {
						t.Fatalf("the relay requested track %s of node's %s, outside the token's put", m.Track, m.Path)
					}
				case "subscribed":
					if m.Path != "bob" {
						t.Fatalf("node subscribed to %s", m.Path)
					}
				case "group":
					if m.Path != "bob" {
						t.Fatalf("node received a group of %s, outside the token's get", m.Path)
					}
					checkPageGroup(t, bobPub, pageMsg{Seq: m.Seq, Frames: m.Frames, Error: m.Error})
					if !bobOK {
						bobOK = true
						close(bobGot)
						t.Logf("node received room/bob group %d byte for byte", m.Seq)
					}
				case "secret":
					// @moq/lite over qmux reports a stream reset as
					// "RESET_STREAM: <code>"; 6 is Unauthorized.
					if m.Result != "error" || !resetUnauthorized.MatchString(m.Error) {
						t.Fatalf("node's subscription to secret, outside the token's get: %s %q, want an error with RESET_STREAM: 6 (Unauthorized)", m.Result, m.Error)
					}
					secret = m.Result
					t.Logf("node's subscription to secret: %s %s", m.Result, m.Error)
				default:
					t.Fatalf("unexpected node message %+v", m)
				}
			}
		}
		if _, err := env.srv.Origin().Consume("room/mallory"); err == nil {
			t.Fatalf("room/mallory, outside the token's put, reached the relay")
		}
	})
}

package interop

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
)

// patternFrame is size bytes whose values depend on group, frame and
// offset. js/burst.js has the same function for the frames the JavaScript
// peers publish.
func patternFrame(group, frame, size int) []byte {
	p := make([]byte, size)
	for j := range p {
		p[j] = byte((group*7 + frame*13 + j) % 251)
	}
	return p
}

// browserFinal is BROWSER_FINAL in web/page.js: per final group of
// interop/browser, the sizes of the pattern frames after its marker frame
// "browser-final <i>".
var browserFinal = [][]int{{1, 0, 100}, {20000}, {0}, {3, 70000, 5}}

// goFinal lists, per final group Go publishes on interop/go, the sizes of
// the pattern frames after its marker frame "go-final <i>": frames larger
// than 16 KiB (several QUIC packets, several reads) and zero-length ones.
var goFinal = [][]int{{0}, {16385, 1}, {100000}, {0, 0, 7}, {131072}}

// pageMsg is what the page POSTs to /event and /group.
type pageMsg struct {
	Type    string   `json:"type"` // event: connected, announced, subscribed, published, browser-final, failed; "group" for /group
	Version string   `json:"version"`
	Path    string   `json:"path"`
	Active  bool     `json:"active"`
	Seq     uint64   `json:"seq"`
	First   bool     `json:"first"`
	Frames  []string `json:"frames"`
	Error   string   `json:"error"`
	// The burst page (web/burst.js) names the connection and the track,
	// and reports frames by size and SHA-256 (hex).
	Conn   string   `json:"conn"`
	Track  string   `json:"track"`
	Sizes  []int    `json:"sizes"`
	Hashes []string `json:"hashes"`
}

// pageSub is a subscription the test asks the burst page to make.
type pageSub struct {
	Conn  string `json:"conn"` // the page's connection
	Path  string `json:"path"`
	Track string `json:"track"`
}

// pageLog is one console message of the page.
type pageLog struct {
	Seq   int    `json:"seq"`
	Level string `json:"level"`
	Text  string `json:"text"`
}

// pageServer serves the test page and collects what it reports.
type pageServer struct {
	html, bundle []byte
	msgs         chan pageMsg

	mu    sync.Mutex
	logs  []pageLog
	state struct {
		BrowserFinal bool      `json:"browserFinal"`
		Done         bool      `json:"done"`
		Subscribe    []pageSub `json:"subscribe"` // for the burst page
	}
}

// reportServer is a pageServer that also takes the page's JSON reports
// (POST /report) onto reports. With latest, a report that finds reports
// full is dropped (the test reads the latest only); otherwise the request
// waits for the test to take it.
type reportServer[R any] struct {
	*pageServer
	reports chan R
	latest  bool
}

func (s *reportServer[R]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/report" {
		var rep R
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if s.latest {
			select {
			case s.reports <- rep:
			default:
			}
			return
		}
		select {
		case s.reports <- rep:
		case <-r.Context().Done():
		}
		return
	}
	s.pageServer.ServeHTTP(w, r)
}

func (p *pageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(p.html)
	case r.Method == http.MethodGet && r.URL.Path == "/page.js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = w.Write(p.bundle)
	case r.Method == http.MethodGet && r.URL.Path == "/state":
		p.mu.Lock()
		b, _ := json.Marshal(p.state)
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	case r.Method == http.MethodPost && r.URL.Path == "/log":
		var l pageLog
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&l); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.logs = append(p.logs, l)
		p.mu.Unlock()
	case r.Method == http.MethodPost && (r.URL.Path == "/event" || r.URL.Path == "/group"):
		var m pageMsg
		if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/group" {
			m.Type = "group"
		}
		select {
		case p.msgs <- m:
		case <-r.Context().Done():
		}
	default:
		http.NotFound(w, r)
	}
}

func (p *pageServer) setState(browserFinal, done bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state.BrowserFinal = p.state.BrowserFinal || browserFinal
	p.state.Done = p.state.Done || done
}

// subscribe asks the burst page for more subscriptions.
func (p *pageServer) subscribe(subs ...pageSub) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state.Subscribe = append(p.state.Subscribe, subs...)
}

// consoleLog returns the page's console messages in the order logged.
func (p *pageServer) consoleLog() string {
	p.mu.Lock()
	logs := append([]pageLog(nil), p.logs...)
	p.mu.Unlock()
	sort.Slice(logs, func(i, j int) bool { return logs[i].Seq < logs[j].Seq })
	var b strings.Builder
	for _, l := range logs {
		fmt.Fprintf(&b, "[%s] %s\n", l.Level, l.Text)
	}
	return b.String()
}

// goPublisher writes interop/go "data" and remembers every group's frames.
type goPublisher struct {
	tw *moq.TrackWriter

	mu   sync.Mutex
	sent map[uint64][][]byte
}

func (g *goPublisher) writeGroup(frames [][]byte) (uint64, error) {
	gw, err := g.tw.AppendGroup()
	if err != nil {
		return 0, err
	}
	g.mu.Lock()
	g.sent[gw.Sequence()] = frames
	g.mu.Unlock()
	for _, f := range frames {
		if err := gw.WriteFrame(f); err != nil {
			return 0, err
		}
	}
	return gw.Sequence(), gw.Close()
}

func (g *goPublisher) frames(seq uint64) ([][]byte, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f, ok := g.sent[seq]
	return f, ok
}

// run writes a small warm-up group every 100 ms until final is closed,
// then the goFinal groups, whose sequences it sends on finals.
func (g *goPublisher) run(ctx context.Context, final <-chan struct{}, finals chan<- []uint64) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := g.writeGroup([][]byte{[]byte("go-warmup")}); err != nil {
			return fmt.Errorf("warm-up group: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			continue
		case <-final:
		}
		var seqs []uint64
		for i, sizes := range goFinal {
			frames := [][]byte{[]byte("go-final " + strconv.Itoa(i))}
			for k, size := range sizes {
				frames = append(frames, patternFrame(100+i, k, size))
			}
			seq, err := g.writeGroup(frames)
			if err != nil {
				return fmt.Errorf("final group %d: %w", i, err)
			}
			seqs = append(seqs, seq)
		}
		finals <- seqs
		return nil
	}
}

// readBrowserGroup reads all frames of gr.
func readBrowserGroup(ctx context.Context, gr *moq.GroupReader) ([][]byte, error) {
	defer gr.Close()
	var frames [][]byte
	for {
		p, err := gr.NextFrame(ctx)
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, fmt.Errorf("group %d frame %d: %w", gr.Sequence(), len(frames), err)
		}
		frames = append(frames, bytes.Clone(p))
	}
}

// receiveBrowser subscribes to interop/browser "data" through sess, checks
// the warm-up groups, asks the page (via ps) for the final groups once it
// has joined, and checks those byte for byte.
func receiveBrowser(ctx context.Context, sess *protocol.Session, ps *pageServer) error {
	tr, err := sess.Consume("interop/browser").Subscribe("data", 0)
	if err != nil {
		return fmt.Errorf("subscribe interop/browser data: %w", err)
	}
	defer tr.Close()
	next := 0       // the next final group expected
	var last uint64 // sequence of the previous group
	for n := 0; next < len(browserFinal); n++ {
		gr, err := tr.NextGroup(ctx)
		if err != nil {
			return fmt.Errorf("after %d groups (%d final): %w", n, next, err)
		}
		seq := gr.Sequence()
		frames, err := readBrowserGroup(ctx, gr)
		if err != nil {
			return err
		}
		if n > 0 && seq != last+1 {
			return fmt.Errorf("group %d follows group %d: a group is missing", seq, last)
		}
		last = seq
		if len(frames) == 0 {
			return fmt.Errorf("group %d has no frames", seq)
		}
		marker := string(frames[0])
		if want := fmt.Sprintf("browser-warmup %d", seq); marker == want {
			if len(frames) != 1 {
				return fmt.Errorf("warm-up group %d has %d frames, want 1", seq, len(frames))
			}
			if next > 0 {
				return fmt.Errorf("warm-up group %d after final group %d", seq, next-1)
			}
			ps.setState(true, false) // joined: the page may send the final groups
			continue
		}
		if want := fmt.Sprintf("browser-final %d", next); marker != want {
			return fmt.Errorf("group %d starts with %q, want %q", seq, truncate(frames[0]), want)
		}
		sizes := browserFinal[next]
		if len(frames) != 1+len(sizes) {
			return fmt.Errorf("final group %d (seq %d) has %d frames, want %d", next, seq, len(frames), 1+len(sizes))
		}
		for k, size := range sizes {
			if want := patternFrame(next, k, size); !bytes.Equal(frames[1+k], want) {
				return fmt.Errorf("final group %d frame %d: got %d bytes, want %d bytes of the pattern (first diff at %d)",
					next, 1+k, len(frames[1+k]), len(want), firstDiff(frames[1+k], want))
			}
		}
		next++
	}
	return nil
}

func truncate(p []byte) string {
	if len(p) > 40 {
		return string(p[:40]) + "…"
	}
	return string(p)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestChromiumWebTransport runs @moq/lite 0.2.2 in headless Chromium
// against a moqbridge relay over WebTransport (certificate pinned by hash):
// the page must negotiate moq-lite-04, receive a Go client's broadcast
// byte for byte (frames over 16 KiB and empty frames included), and
// publish a broadcast a Go client receives byte for byte.
func TestChromiumWebTransport(t *testing.T) {
	runChromium(t, chromiumCase{transport: "webtransport", version: protocol.Lite04})
}

// TestChromiumWebSocket is TestChromiumWebTransport with WebTransport
// removed from the page (globalThis.WebTransport deleted before connect):
// @moq/lite 0.2.2 in Chromium reaches the relay over the WebSocket fallback
// on the relay's TCP port (legacy dialect, no application protocol), and
// SETUP negotiates moq-lite-02; the same checks apply.
func TestChromiumWebSocket(t *testing.T) {
	runChromium(t, chromiumCase{transport: "websocket", version: protocol.Lite02})
}

// chromiumCase is how the page connects and the version it must negotiate.
type chromiumCase struct {
	transport string // "webtransport" or "websocket": the relay session's Transport()
	version   protocol.Version
}

func runChromium(t *testing.T, tc chromiumCase) {
	requireTools(t, "node", "chromium", "node_modules")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	html, bundle := loadPage(t, "index.html", "page.js")

	// The relay. Groups are written in bursts here and the machine may be
	// busy with Chromium: a long lag bound keeps the relay from dropping
	// groups the test wants to compare (dropping is tested in protocol).
	var relayLog testkit.LogBuffer
	noDrops := protocol.Limits{MaxGroupLag: time.Minute}
	srv := serveRelay(t, protocol.ServerConfig{Limits: noDrops, Logger: relayLog.Logger()})
	fp := srv.Fingerprint()
	// Go clients use raw QUIC, so the relay's only WebTransport or
	// WebSocket session is the browser's.
	quicURL := fmt.Sprintf("moql://127.0.0.1:%d", srv.Addr().Port)
	wtURL := fmt.Sprintf("https://127.0.0.1:%d/", srv.Addr().Port)
	dial := func(opts ...protocol.DialOption) *protocol.Session {
		t.Helper()
		opts = append([]protocol.DialOption{protocol.WithFingerprint(fp), protocol.WithLimits(noDrops),
			protocol.WithCache(moq.CacheConfig{ReorderWait: time.Minute})}, opts...)
		sess, err := protocol.Dial(ctx, quicURL, opts...)
		if err != nil {
			t.Fatalf("Dial %s: %v", quicURL, err)
		}
		t.Cleanup(func() { _ = sess.Close() })
		return sess
	}

	// The Go publisher: interop/go with track "data".
	pubOrigin := moq.NewOrigin()
	t.Cleanup(pubOrigin.Close)
	bw := moq.NewBroadcast()
	t.Cleanup(func() { _ = bw.Close() })
	tw, err := bw.CreateTrack("data", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pubOrigin.Publish("interop/go", bw.Reader()); err != nil {
		t.Fatal(err)
	}
	dial(protocol.WithPublish(pubOrigin))
	waitAnnounced(t, ctx, srv.Origin(), "interop/go")
	pub := &goPublisher{tw: tw, sent: make(map[uint64][][]byte)}

	// The page server.
	ps := &pageServer{html: html, bundle: bundle, msgs: make(chan pageMsg, 256)}
	hs := httptest.NewServer(ps)
	t.Cleanup(hs.Close)

	// The helper goroutines end with ctx, which the deferred cancel ends
	// before any cleanup runs.
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)

	final := make(chan struct{})
	finals := make(chan []uint64, 1)
	pubErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		pubErr <- pub.run(ctx, final, finals)
	}()

	// The Go subscriber of the browser's broadcast, once the relay has it.
	subSess := dial()
	subErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ann := srv.Origin().Announced("interop/browser")
		defer ann.Close()
		for {
			a, err := ann.Next(ctx)
			if err != nil {
				subErr <- fmt.Errorf("waiting for the browser's announce: %w", err)
				return
			}
			if a.Active && a.Path == "interop/browser" {
				break
			}
		}
		subErr <- receiveBrowser(ctx, subSess, ps)
	}()

	// Chromium.
	query := url.Values{"relay": {wtURL}, "hash": {hex.EncodeToString(fp[:])}}
	if tc.transport == "websocket" {
		query = url.Values{"relay": {fmt.Sprintf("http://127.0.0.1:%d/", srv.Addr().Port)}, "transport": {"websocket"}}
	}
	browser := startChromium(t, hs.URL+"/?"+query.Encode())
	// Registered last, so it runs first: diagnostics while all is alive.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("page console:\n%s", tail(ps.consoleLog(), 200))
		t.Logf("chromium output (D-Bus noise left out):\n%s", tail(dropLines(browser.output(), "dbus/", "D-Bus"), 80))
		t.Logf("relay log:\n%s", tail(relayLog.String(), 80))
	})

	var (
		version      string
		finalSeqs    map[uint64]bool
		received     = map[uint64]bool{}
		browserOK    bool
		discovered   bool // the page's announced("interop") saw interop/go
		subscribedAt time.Duration
		firstSeq     uint64
	)
	finalsReceived := func() bool {
		if finalSeqs == nil {
			return false
		}
		for seq := range finalSeqs {
			if !received[seq] {
				return false
			}
		}
		return true
	}
	for !(finalsReceived() && browserOK && discovered) {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v: version %q, final groups %v, received %v, browser→Go done %v, interop/go discovered %v",
				time.Since(start).Round(time.Millisecond), version, finalSeqs, received, browserOK, discovered)
		case <-browser.done:
			t.Fatalf("chromium exited early: %v", browser.err)
		case err := <-pubErr:
			if err != nil {
				t.Fatalf("Go publisher: %v", err)
			}
		case err := <-subErr:
			if err != nil {
				t.Fatalf("Go subscriber of interop/browser: %v", err)
			}
			browserOK = true
			t.Logf("Go received the browser's final groups (%v)", time.Since(start).Round(time.Millisecond))
		case seqs := <-finals:
			finalSeqs = map[uint64]bool{}
			for _, s := range seqs {
				finalSeqs[s] = true
			}
			t.Logf("Go wrote final groups %v", seqs)
		case m := <-ps.msgs:
			switch m.Type {
			case "failed":
				t.Fatalf("page failed: %s", m.Error)
			case "connected":
				version = m.Version
				t.Logf("page connected: %s (%v)", version, time.Since(start).Round(time.Millisecond))
				if version != tc.version.String() {
					t.Fatalf("page negotiated %q, want %s", version, tc.version)
				}
				checkRelaySide(t, srv, tc)
			case "announced":
				t.Logf("page saw announce %s active=%v", m.Path, m.Active)
				if m.Path == "interop/go" {
					if !m.Active {
						t.Fatalf("page saw interop/go end while it is published")
					}
					discovered = true
				}
			case "published":
				t.Logf("page published interop/browser")
			case "browser-final":
				t.Logf("page wrote its final groups from sequence %d", m.Seq)
			case "subscribed":
				subscribedAt = time.Since(start)
				firstSeq = m.Seq
				t.Logf("page joined interop/go at group %d (%v)", m.Seq, subscribedAt.Round(time.Millisecond))
				close(final)
			case "group":
				checkPageGroup(t, pub, m)
				if received[m.Seq] {
					t.Fatalf("page reported group %d twice", m.Seq)
				}
				if m.Seq < firstSeq {
					t.Fatalf("page received group %d, older than the group %d it joined at", m.Seq, firstSeq)
				}
				received[m.Seq] = true
			default:
				t.Fatalf("unknown page message %+v", m)
			}
		}
	}
	t.Logf("all checks passed: page received %d groups of interop/go, from %d (%v)",
		len(received), firstSeq, time.Since(start).Round(time.Millisecond))

	// Let the page close its connection; the relay must see it go.
	if countSessions(srv, tc.transport) == 0 {
		t.Fatalf("relay has no %s session for the browser before the page was told to close", tc.transport)
	}
	ps.setState(true, true)
	deadline := time.After(5 * time.Second)
	for countSessions(srv, tc.transport) > 0 {
		select {
		case <-deadline:
			t.Errorf("browser session still open at the relay 5 s after the page was told to close")
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startChromium runs headless Chromium with a fresh profile on pageURL;
// extra flags go before the logging flags. It is killed at cleanup.
func startChromium(t *testing.T, pageURL string, extra ...string) *process {
	t.Helper()
	chromium, err := chromiumPath()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	args := []string{
		"--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--user-data-dir=" + t.TempDir(),
	}
	args = append(args, extra...)
	args = append(args, "--enable-logging=stderr", "--v=0", pageURL)
	return startProcess(t, chromium, args...)
}

// waitAnnounced blocks until o has path.
func waitAnnounced(t *testing.T, ctx context.Context, o *moq.Origin, path string) {
	t.Helper()
	ann := o.Announced(path)
	defer ann.Close()
	for {
		a, err := ann.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", path, err)
		}
		if a.Active && a.Path == path {
			return
		}
	}
}

// checkRelaySide checks the relay's view of the browser session.
func checkRelaySide(t *testing.T, srv *protocol.Server, tc chromiumCase) {
	t.Helper()
	var browser []*protocol.Session
	for _, s := range srv.Sessions() {
		if s.Transport() == tc.transport {
			browser = append(browser, s)
		}
	}
	if len(browser) != 1 {
		t.Fatalf("relay has %d %s sessions, want the browser's only", len(browser), tc.transport)
	}
	if v := browser[0].Version(); v != tc.version {
		t.Fatalf("relay negotiated %s with the browser, want %s", v, tc.version)
	}
}

// countSessions counts the relay's sessions over the given transport.
func countSessions(srv *protocol.Server, transport string) int {
	n := 0
	for _, s := range srv.Sessions() {
		if s.Transport() == transport {
			n++
		}
	}
	return n
}

// checkPageGroup compares a group the page received with what Go wrote.
func checkPageGroup(t *testing.T, pub *goPublisher, m pageMsg) {
	t.Helper()
	if m.Error != "" {
		t.Fatalf("page: group %d failed after %d frames: %s", m.Seq, len(m.Frames), m.Error)
	}
	want, ok := pub.frames(m.Seq)
	if !ok {
		t.Fatalf("page received group %d, which Go never wrote", m.Seq)
	}
	if len(m.Frames) != len(want) {
		t.Fatalf("page: group %d has %d frames, Go wrote %d", m.Seq, len(m.Frames), len(want))
	}
	for k, b64 := range m.Frames {
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatalf("page: group %d frame %d: %v", m.Seq, k, err)
		}
		if !bytes.Equal(got, want[k]) {
			t.Fatalf("page: group %d frame %d: got %d bytes, Go wrote %d (first diff at %d)",
				m.Seq, k, len(got), len(want[k]), firstDiff(got, want[k]))
		}
	}
}

package pipelines_test

// The acceptance tests of config pipelines (issue 12): a configuration
// parsed from YAML with the built-in kinds, run by the real runner, with
// real peers around it (MOQ clients and a second relay over QUIC on
// loopback, ffmpeg publishing and receiving RTMP, files on disk), and
// /metrics scraped over HTTP. The package's TestMain (main_test.go, of
// package pipelines) runs these too: there is one per test binary.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/internal/testrelay"
	"github.com/moqbridge/moqbridge/metrics"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/pipelines/builtin"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// acceptanceClip is a test clip of the fMP4 source (1 s of H.264 with
// B-frames and AAC, fragmented at keyframes), and otherClip another one,
// for an edited pipeline.
var (
	acceptanceClip = mustAbs(filepath.Join("..", "sources", "fmp4", "testdata", "h264_aac_bframes.mp4"))
	otherClip      = mustAbs(filepath.Join("..", "sources", "fmp4", "testdata", "h264_opus.mp4"))
)

func mustAbs(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return abs
}

// ---- the runner under test ----

// acceptanceRun is a Runner running a configuration until the test stops
// it.
type acceptanceRun struct {
	r    *pipelines.Runner
	reg  *pipelines.Registry
	log  *testkit.LogBuffer
	stop func()
}

// runConfig parses yaml with reg and runs it with obs; the runner is
// stopped when the test ends, or earlier by stop.
func runConfig(t *testing.T, reg *pipelines.Registry, yaml string, obs pipelines.Observer) *acceptanceRun {
	t.Helper()
	cfg, err := pipelines.Parse([]byte(yaml), "moqbridge.yaml", reg)
	if err != nil {
		t.Fatalf("parse:\n%v\nconfig:\n%s", err, yaml)
	}
	lb := &testkit.LogBuffer{}
	r := pipelines.NewRunner(reg, pipelines.RunnerOptions{Logger: lb.Logger(), Observer: obs, StopTimeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, cfg) }()
	var once sync.Once
	run := &acceptanceRun{r: r, reg: reg, log: lb}
	run.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		run.stop()
		if t.Failed() {
			t.Logf("runner log:\n%s", lb.String())
		}
	})
	// Run starts everything before it waits: the pipelines are listed
	// once it did.
	waitUntil(t, 10*time.Second, "the runner started", func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("Run returned at once: %v", err)
		default:
		}
		return len(r.Status()) == len(cfg.Pipelines) && (!cfg.Server.Enabled || r.Server() != nil)
	})
	return run
}

// waitUntil polls cond every 20 ms until it holds, failing the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOf(r *pipelines.Runner, name string) pipelines.PipelineStatus {
	for _, st := range r.Status() {
		if st.Name == name {
			return st
		}
	}
	return pipelines.PipelineStatus{}
}

// ---- what the runner reports ----

// sinkKey names one sink on one broadcast: "pipeline/sinks[0].fmp4/path".
func sinkKey(pipeline, part, path string) string { return pipeline + "/" + part + "/" + path }

// watcher is an Observer that keeps what the runner tells it, and passes
// everything on to next (metrics, or nothing).
type watcher struct {
	next pipelines.Observer

	mu              sync.Mutex
	restarts        map[string]int // pipeline/part
	broadcastsBegun map[string]int // pipeline/path
	broadcastsEnded map[string]int
	sinksBegun      map[string]int // sinkKey
	sourceStats     map[string]func() map[string]sdk.TrackStats
	sinkStats       map[string]func() map[string]sdk.TrackStats
	sinkExtra       map[string]func() pipelines.SinkCounters
}

func newWatcher(next pipelines.Observer) *watcher {
	if next == nil {
		next = pipelines.NopObserver{}
	}
	return &watcher{next: next, restarts: map[string]int{}, broadcastsBegun: map[string]int{}, broadcastsEnded: map[string]int{},
		sinksBegun: map[string]int{}, sourceStats: map[string]func() map[string]sdk.TrackStats{},
		sinkStats: map[string]func() map[string]sdk.TrackStats{}, sinkExtra: map[string]func() pipelines.SinkCounters{}}
}

func (w *watcher) SourceUp(p string, up bool) { w.next.SourceUp(p, up) }

func (w *watcher) Restarted(p, part string) {
	w.mu.Lock()
	w.restarts[p+"/"+part]++
	w.mu.Unlock()
	w.next.Restarted(p, part)
}

func (w *watcher) BroadcastStarted(p, path string, stats func() map[string]sdk.TrackStats, source func() pipelines.SourceCounters) {
	w.mu.Lock()
	w.broadcastsBegun[p+"/"+path]++
	w.sourceStats[p+"/"+path] = stats
	w.mu.Unlock()
	w.next.BroadcastStarted(p, path, stats, source)
}

func (w *watcher) BroadcastEnded(p, path string) {
	w.mu.Lock()
	w.broadcastsEnded[p+"/"+path]++
	w.mu.Unlock()
	w.next.BroadcastEnded(p, path)
}

func (w *watcher) SinkStarted(p, part, path string, stats func() map[string]sdk.TrackStats, extra func() pipelines.SinkCounters) {
	k := sinkKey(p, part, path)
	w.mu.Lock()
	w.sinksBegun[k]++
	w.sinkStats[k] = stats
	w.sinkExtra[k] = extra
	w.mu.Unlock()
	w.next.SinkStarted(p, part, path, stats, extra)
}

func (w *watcher) SinkEnded(p, part, path string) { w.next.SinkEnded(p, part, path) }

func (w *watcher) Latency(p, path, track string, d time.Duration) { w.next.Latency(p, path, track, d) }

// counts returns a copy of one of the watcher's maps.
func (w *watcher) counts(m map[string]int) map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (w *watcher) count(m map[string]int, key string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return m[key]
}

// frames sums the frames of every track in a stats function's reading (0
// before it was reported).
func (w *watcher) frames(m map[string]func() map[string]sdk.TrackStats, key string) uint64 {
	w.mu.Lock()
	stats := m[key]
	w.mu.Unlock()
	if stats == nil {
		return 0
	}
	var n uint64
	for _, st := range stats() {
		n += st.Frames
	}
	return n
}

// sinkCounters reads a sink's own counters (zero before it started or for
// a sink without).
func (w *watcher) sinkCounters(key string) pipelines.SinkCounters {
	w.mu.Lock()
	extra := w.sinkExtra[key]
	w.mu.Unlock()
	if extra == nil {
		return pipelines.SinkCounters{}
	}
	return extra()
}

// ---- peers ----

// groupWatch is a MOQ client subscribed over QUIC to the first video track
// (else the first track) of a broadcast on a relay, reading every group
// and frame: the sequence numbers it saw, and whether they ever went back
// (a new broadcast, or a publisher that started over).
type groupWatch struct {
	path   string
	sess   *protocol.Session
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	seqs   []uint64
	frames int
	resets int   // groups whose sequence was not above the previous one
	err    error // why reading stopped
}

// watchGroups dials url with dial, and reads path's first video track
// until stop, the test's end or the subscription's end.
func watchGroups(t *testing.T, ctx context.Context, url string, dial []protocol.DialOption, path string) *groupWatch {
	t.Helper()
	sess, err := protocol.Dial(ctx, url, dial...)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	b := sess.Consume(path)
	r, err := sdk.NewBroadcastReader(b)
	if err != nil {
		_ = sess.Close()
		t.Fatalf("%s: %v", path, err)
	}
	if err := r.WaitTracks(ctx, 100*time.Millisecond); err != nil {
		r.Close()
		_ = sess.Close()
		t.Fatalf("%s: the catalog: %v", path, err)
	}
	tracks := r.Tracks()
	name := tracks[0].Name
	for _, tr := range tracks {
		if tr.Kind == sdk.KindVideo {
			name = tr.Name
			break
		}
	}
	r.Close()
	tr, err := b.Subscribe(name, 1)
	if err != nil {
		_ = sess.Close()
		t.Fatalf("%s: subscribe %s: %v", path, name, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	g := &groupWatch{path: path, sess: sess, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		defer tr.Close()
		for {
			gr, err := tr.NextGroup(wctx)
			if err != nil {
				g.mu.Lock()
				g.err = err
				g.mu.Unlock()
				return
			}
			g.mu.Lock()
			if n := len(g.seqs); n > 0 && gr.Sequence() <= g.seqs[n-1] {
				g.resets++
			}
			g.seqs = append(g.seqs, gr.Sequence())
			g.mu.Unlock()
			for {
				if _, err := gr.NextFrame(wctx); err != nil {
					break
				}
				g.mu.Lock()
				g.frames++
				g.mu.Unlock()
			}
			gr.Close()
		}
	}()
	t.Cleanup(g.stop)
	return g
}

func (g *groupWatch) stop() {
	g.cancel()
	<-g.done
	_ = g.sess.Close()
}

// state returns the groups seen, the last sequence, frames and resets.
func (g *groupWatch) state() (groups int, last uint64, frames, resets int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := len(g.seqs); n > 0 {
		last = g.seqs[n-1]
	}
	return len(g.seqs), last, g.frames, g.resets
}

// ended reports whether reading stopped by itself, and why.
func (g *groupWatch) ended() (bool, error) {
	select {
	case <-g.done:
		g.mu.Lock()
		defer g.mu.Unlock()
		return true, g.err
	default:
		return false, nil
	}
}

// waitGroups waits until the watch read n more groups than it had.
func (g *groupWatch) waitGroups(t *testing.T, n int, within time.Duration) {
	t.Helper()
	from, _, _, _ := g.state()
	waitUntil(t, within, fmt.Sprintf("%d more groups of %s", n, g.path), func() bool {
		got, _, _, _ := g.state()
		return got >= from+n
	})
}

// process is an ffmpeg run by the test; exited reports whether it ended
// by itself (a publisher that was disconnected).
type process struct {
	cmd    *exec.Cmd
	out    *testkit.LogBuffer
	done   chan struct{}
	err    error
	killed atomic.Bool
}

func startFFmpeg(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{out: &testkit.LogBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("ffmpeg %s:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// kill ends the process (SIGKILL: a destination that vanishes) and waits
// for it.
func (p *process) kill() {
	p.killed.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// exited reports whether the process ended without being killed.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return !p.killed.Load(), p.err
	default:
		return false, nil
	}
}

// recordings lists the .mp4 files under dir with their sizes.
func recordings(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".mp4") {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			out[path] = fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// keys returns the sorted keys of m.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// freeTCPPort returns a TCP port free on loopback.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ---- 1. three pipelines, an edit, an invalid edit ----

// threePipelines is the configuration of TestAcceptanceReload: RTMP
// ingest recorded, a looped file, and every live/* broadcast recorded and
// pushed to a second relay. clip is the clip of the clip pipeline and
// loopKey its loop option's key (a misspelt one makes the file invalid).
func threePipelines(dir string, relay2 *testrelay.Relay, clip, loopKey string) string {
	return fmt.Sprintf(`# three pipelines, as an operator writes them
server:
  listen: 127.0.0.1:0
  tcp: "off"
rtmp:
  listen: 127.0.0.1:0
admin:
  listen: ""
x-fast-restart: &fast {min: 50ms, max: 1s}
pipelines:
  ingest:
    source:
      rtmp: {app: live}
    path: live/{key}
    sinks:
      - fmp4: {dir: %[1]s/ingest}
    restart: *fast
  clip:
    source:
      fmp4: {file: %[2]s, %[3]s: true}
    path: clips/a
    restart: *fast
  archive:
    from: live/*
    sinks:
      - fmp4: {dir: %[1]s/archive}
      - moq:
          url: %[4]s
          fingerprint: %[5]s
          backoff: {min: 50ms, max: 300ms}
    restart: *fast
`, dir, clip, loopKey, relay2.URL(), relay2.Fingerprint())
}

// TestAcceptanceReload: three pipelines from one YAML file run with the
// built-in kinds (ffmpeg publishing RTMP into ingest, MOQ clients on both
// relays). Editing one pipeline (clip's file) and reloading restarts it
// alone: the MOQ subscribers of live/x on this relay and on the second
// relay read on without their group sequence starting over, ffmpeg's RTMP
// connection stays up, ingest's and archive's recordings are the same
// files still growing (and whole once stopped), and their
// broadcasts and sinks were made once. An invalid edit is refused by Parse
// with its problem (did-you-mean), and everything keeps running.
func TestAcceptanceReload(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 90*time.Second)
	dir := t.TempDir()
	relay2 := testrelay.Start(t)
	reg := builtin.Registry()
	w := newWatcher(nil)
	run := runConfig(t, reg, threePipelines(dir, relay2, acceptanceClip, "loop"), w)
	r := run.r
	relay := r.Server()
	if len(r.RTMPAddrs()) != 1 {
		t.Fatalf("RTMP listeners %q", r.RTMPAddrs())
	}

	// ffmpeg publishes the looped clip in real time to live/x.
	publisher := startFFmpeg(t, "-re", "-stream_loop", "-1", "-i", acceptanceClip, "-c", "copy", "-f", "flv",
		"rtmp://"+r.RTMPAddrs()[0]+"/live/x")
	waitUntil(t, 20*time.Second, "live/x on the second relay", func() bool {
		_, err := relay2.Origin().Consume("live/x")
		return err == nil
	})
	waitUntil(t, 10*time.Second, "every pipeline up", func() bool { return r.Ready() == nil })

	clipWatch := watchGroups(t, ctx, "moql://"+relay.Addr().String(), []protocol.DialOption{protocol.WithFingerprint(relay.Fingerprint())}, "clips/a")
	liveWatch := watchGroups(t, ctx, "moql://"+relay.Addr().String(), []protocol.DialOption{protocol.WithFingerprint(relay.Fingerprint())}, "live/x")
	mirrorWatch := watchGroups(t, ctx, relay2.URL(), relay2.Dial(), "live/x")
	for _, g := range []*groupWatch{clipWatch, liveWatch, mirrorWatch} {
		g.waitGroups(t, 2, 15*time.Second)
	}
	// Both recorders of live/x have their file.
	var ingestFiles, archiveFiles map[string]int64
	waitUntil(t, 15*time.Second, "the recordings of live/x", func() bool {
		ingestFiles, archiveFiles = recordings(t, filepath.Join(dir, "ingest")), recordings(t, filepath.Join(dir, "archive"))
		return len(ingestFiles) == 1 && len(archiveFiles) == 1
	})
	sinksBefore := w.counts(w.sinksBegun)
	for _, k := range []string{sinkKey("ingest", "sinks[0].fmp4", "live/x"), sinkKey("archive", "sinks[0].fmp4", "live/x"), sinkKey("archive", "sinks[1].moq", "live/x")} {
		if sinksBefore[k] != 1 {
			t.Errorf("sink %s made %d times before the reload, want 1 (%v)", k, sinksBefore[k], sinksBefore)
		}
	}
	_, liveLast, _, _ := liveWatch.state()
	_, mirrorLast, _, _ := mirrorWatch.state()

	// Edit clip (another file) and reload the parsed file.
	edited, err := pipelines.Parse([]byte(threePipelines(dir, relay2, otherClip, "loop")), "moqbridge.yaml", reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(edited); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	// clip restarted: its broadcast ended (the subscriber's track with it)
	// and a new one is published at the same path.
	if got := w.count(w.broadcastsEnded, "clip/clips/a"); got != 1 {
		t.Errorf("clip's broadcast ended %d times, want 1", got)
	}
	waitUntil(t, 10*time.Second, "clip's new broadcast", func() bool { return w.count(w.broadcastsBegun, "clip/clips/a") == 2 })
	waitUntil(t, 10*time.Second, "the clips/a subscription ending with its broadcast", func() bool {
		ended, _ := clipWatch.ended()
		return ended
	})
	clipAgain := watchGroups(t, ctx, "moql://"+relay.Addr().String(), []protocol.DialOption{protocol.WithFingerprint(relay.Fingerprint())}, "clips/a")
	clipAgain.waitGroups(t, 2, 15*time.Second)

	// The others did not notice: their subscribers read on, without a
	// sequence going back.
	liveWatch.waitGroups(t, 3, 15*time.Second)
	mirrorWatch.waitGroups(t, 3, 15*time.Second)
	for _, c := range []struct {
		g    *groupWatch
		last uint64
		name string
	}{{liveWatch, liveLast, "live/x here"}, {mirrorWatch, mirrorLast, "live/x on the second relay"}} {
		groups, last, frames, resets := c.g.state()
		t.Logf("%s: %d groups, %d frames read; sequence %d at the reload, %d after it", c.name, groups, frames, c.last, last)
		if ended, err := c.g.ended(); ended {
			t.Errorf("%s: the subscription ended: %v", c.name, err)
		}
		if resets != 0 || last <= c.last {
			t.Errorf("%s: group sequence went from %d to %d, %d resets; want it going on", c.name, c.last, last, resets)
		}
	}
	if exited, err := publisher.exited(); exited {
		t.Errorf("ffmpeg's RTMP publishing ended with the reload: %v", err)
	}
	if got := w.count(w.broadcastsBegun, "ingest/live/x"); got != 1 || w.count(w.broadcastsEnded, "ingest/live/x") != 0 {
		t.Errorf("live/x was published %d times and ended %d: the RTMP connection did not stay", got, w.count(w.broadcastsEnded, "ingest/live/x"))
	}
	if got := w.counts(w.sinksBegun); !sameCounts(got, sinksBefore, "ingest/", "archive/") {
		t.Errorf("sinks made: before the reload %v, after %v: ingest's or archive's were made again", sinksBefore, got)
	}
	if got := w.counts(w.restarts); len(got) != 0 {
		t.Errorf("restarts %v, want none", got)
	}
	checkGrowing := func(what, sub string, before map[string]int64) {
		t.Helper()
		waitUntil(t, 10*time.Second, what+" growing", func() bool {
			after := recordings(t, filepath.Join(dir, sub))
			if !slices.Equal(keys(after), keys(before)) {
				t.Fatalf("%s: files %q after the reload, %q before: a new file", what, keys(after), keys(before))
			}
			for f, size := range before {
				if after[f] <= size {
					return false
				}
			}
			t.Logf("%s: %q grew from %v bytes at the reload to %v", what, keys(after), before, after)
			return true
		})
	}
	checkGrowing("ingest's recording", "ingest", ingestFiles)
	checkGrowing("archive's recording", "archive", archiveFiles)

	// An invalid edit: Parse reports it at its place, with a suggestion;
	// nothing is reloaded and everything runs on.
	invalid := threePipelines(dir, relay2, otherClip, "lopp")
	wantLine := 1 + strings.Count(invalid[:strings.Index(invalid, "lopp")], "\n")
	_, err = pipelines.Parse([]byte(invalid), "moqbridge.yaml", reg)
	var ce *pipelines.ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 1 {
		t.Fatalf("the invalid edit: %v, want one problem", err)
	}
	p := ce.Problems[0]
	if p.Key != "pipelines.clip.source.fmp4.lopp" || !strings.Contains(p.Msg, `"loop"`) || p.Pos.Line != wantLine {
		t.Errorf("the problem is %q at %s, want pipelines.clip.source.fmp4.lopp at line %d suggesting loop", p.Key+": "+p.Msg, p.Pos, wantLine)
	}
	_, liveLast, _, _ = liveWatch.state()
	liveWatch.waitGroups(t, 2, 15*time.Second)
	mirrorWatch.waitGroups(t, 2, 15*time.Second)
	clipAgain.waitGroups(t, 2, 15*time.Second)
	if _, last, _, resets := liveWatch.state(); resets != 0 || last <= liveLast {
		t.Errorf("live/x after the invalid edit: sequence %d after %d, %d resets", last, liveLast, resets)
	}
	if err := r.Ready(); err != nil {
		t.Errorf("not ready after the invalid edit: %v", err)
	}
	if exited, err := publisher.exited(); exited {
		t.Errorf("ffmpeg's RTMP publishing ended: %v", err)
	}

	// Stopped, the recordings made across the reload are whole: one file
	// each, every packet of which ffprobe reads, from before the reload to
	// after it. (Not decoded: ffmpeg's copy of a looped clip is on a grid
	// half a frame off its 30 fps, which RTMP's millisecond timestamps
	// round either way, and a decode to 1/30 s ticks then warns about
	// frames that are 33 ms apart in the file.)
	run.stop()
	for _, files := range []map[string]int64{ingestFiles, archiveFiles} {
		for f := range files {
			v, a := countPackets(t, f, "v:0"), countPackets(t, f, "a:0")
			if v < 90 || a < 140 {
				t.Errorf("%s: %d video and %d audio packets; want the 3 s and more recorded", f, v, a)
			}
		}
	}
}

// countPackets returns how many packets ffprobe reads in a stream of file,
// failing the test on any error it reports.
func countPackets(t *testing.T, file, stream string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", stream, "-count_packets",
		"-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", file).CombinedOutput()
	text := strings.TrimSpace(string(out))
	n, convErr := strconv.Atoi(text)
	if err != nil || convErr != nil {
		t.Errorf("ffprobe %s %s: %v: %s", file, stream, err, text)
	}
	return n
}

// sameCounts reports whether a and b agree on every key with one of the
// prefixes.
func sameCounts(a, b map[string]int, prefixes ...string) bool {
	pick := func(m map[string]int) map[string]int {
		out := map[string]int{}
		for k, v := range m {
			for _, p := range prefixes {
				if strings.HasPrefix(k, p) {
					out[k] = v
				}
			}
		}
		return out
	}
	pa, pb := pick(a), pick(b)
	if len(pa) != len(pb) {
		return false
	}
	for k, v := range pa {
		if pb[k] != v {
			return false
		}
	}
	return true
}

// ---- 2. destinations lost and back ----

// TestAcceptanceDestinationLoss: a looped file is recorded, pushed to a
// second relay (moq sink) and restreamed to an ffmpeg RTMP receiver (rtmp
// sink), and another pipeline records it too. The second relay is closed
// and started again on the same port, the RTMP receiver is killed and
// another listens in its place: each of the two sinks reconnects with
// backoff (its reconnect counter in /metrics goes up, it is connected
// again, media reaches the new destinations), while the source and the
// recorders never notice: their frame counters grow in every half second
// throughout, nothing is restarted, and each recording is one file.
func TestAcceptanceDestinationLoss(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 90*time.Second)
	dir := t.TempDir()
	relay2 := testrelay.Start(t)
	port := freeTCPPort(t)
	receiverURL := fmt.Sprintf("rtmp://127.0.0.1:%d/live/cam", port)
	receive := func(name string) *process {
		return startFFmpeg(t, "-listen", "1", "-i", receiverURL, "-c", "copy", "-f", "flv", "-y", filepath.Join(dir, name))
	}
	receiver := receive("first.flv")

	m := metrics.New()
	w := newWatcher(m)
	run := runConfig(t, builtin.Registry(), fmt.Sprintf(`
server: {listen: 127.0.0.1:0, tcp: "off"}
admin: {listen: ""}
pipelines:
  cam:
    source:
      fmp4: {file: %[1]s, loop: true}
    path: live/cam
    sinks:
      - fmp4: {dir: %[2]s/cam}
      - moq: {url: %[3]s, fingerprint: %[4]s, backoff: {min: 50ms, max: 300ms}}
      - rtmp: {url: "rtmp://127.0.0.1:%[5]d/live/{name}", backoff: {min: 50ms, max: 300ms}}
    restart: {min: 50ms, max: 1s}
  archive:
    from: live/*
    sinks:
      - fmp4: {dir: %[2]s/archive}
    restart: {min: 50ms, max: 1s}
`, acceptanceClip, dir, relay2.URL(), relay2.Fingerprint(), port), w)
	r := run.r
	moqSink, rtmpSink := sinkKey("cam", "sinks[1].moq", "live/cam"), sinkKey("cam", "sinks[2].rtmp", "live/cam")
	camRec, archiveRec := sinkKey("cam", "sinks[0].fmp4", "live/cam"), sinkKey("archive", "sinks[0].fmp4", "live/cam")
	waitUntil(t, 20*time.Second, "both sinks connected", func() bool {
		return w.sinkCounters(moqSink).Connected && w.sinkCounters(rtmpSink).Connected
	})
	mirror := watchGroups(t, ctx, relay2.URL(), relay2.Dial(), "live/cam")
	mirror.waitGroups(t, 2, 15*time.Second)
	moqBefore, rtmpBefore := w.sinkCounters(moqSink).Reconnects, w.sinkCounters(rtmpSink).Reconnects

	// Sample the source's and the recorders' counters every half second
	// while the destinations go and come back.
	type sample struct{ source, cam, archive uint64 }
	var samples []sample
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			samples = append(samples, sample{w.frames(w.sourceStats, "cam/live/cam"), w.frames(w.sinkStats, camRec), w.frames(w.sinkStats, archiveRec)})
			select {
			case <-sampling.Done():
				return
			case <-tick.C:
			}
		}
	}()

	relay2.Stop()
	_ = mirror.sess.Close()
	receiver.kill()
	waitUntil(t, 15*time.Second, "both sinks disconnected", func() bool {
		return !w.sinkCounters(moqSink).Connected && !w.sinkCounters(rtmpSink).Connected
	})
	time.Sleep(time.Second) // both destinations away for a while
	relay2.Restart()
	receiver = receive("second.flv")
	waitUntil(t, 20*time.Second, "both sinks reconnected", func() bool {
		mc, rc := w.sinkCounters(moqSink), w.sinkCounters(rtmpSink)
		return mc.Connected && rc.Connected && mc.Reconnects > moqBefore && rc.Reconnects > rtmpBefore
	})
	// Media reaches both new destinations.
	mirrorAgain := watchGroups(t, ctx, relay2.URL(), relay2.Dial(), "live/cam")
	mirrorAgain.waitGroups(t, 2, 15*time.Second)
	// ffmpeg analyses its input for up to 5 s and writes its output in
	// 32 KiB blocks, and this clip is a few kB a second: the file passes
	// 10 kB some 10 s after the reconnection, more on a loaded machine.
	waitUntil(t, 45*time.Second, "the second RTMP receiver's file", func() bool {
		fi, err := os.Stat(filepath.Join(dir, "second.flv"))
		return err == nil && fi.Size() > 10000
	})
	time.Sleep(time.Second)
	stopSampling()
	<-sampled

	t.Logf("moq sink reconnects %d → %d, rtmp sink %d → %d; %d half-second samples, source frames %d → %d",
		moqBefore, w.sinkCounters(moqSink).Reconnects, rtmpBefore, w.sinkCounters(rtmpSink).Reconnects,
		len(samples), samples[0].source, samples[len(samples)-1].source)
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		if b.source <= a.source || b.cam <= a.cam || b.archive <= a.archive {
			t.Errorf("half second %d of %d: source %d→%d, cam's recorder %d→%d, archive's %d→%d frames: want every counter growing",
				i, len(samples)-1, a.source, b.source, a.cam, b.cam, a.archive, b.archive)
		}
	}
	if got := w.counts(w.restarts); len(got) != 0 {
		t.Errorf("restarts %v, want none: the sinks reconnect by themselves", got)
	}
	for k, n := range w.counts(w.sinksBegun) {
		if n != 1 {
			t.Errorf("sink %s made %d times, want once", k, n)
		}
	}
	if n := w.count(w.broadcastsBegun, "cam/live/cam"); n != 1 || w.count(w.broadcastsEnded, "cam/live/cam") != 0 {
		t.Errorf("the source's broadcast began %d times, ended %d", n, w.count(w.broadcastsEnded, "cam/live/cam"))
	}
	for _, sub := range []string{"cam", "archive"} {
		if files := recordings(t, filepath.Join(dir, sub)); len(files) != 1 {
			t.Errorf("%s's recordings %q, want one file", sub, keys(files))
		}
	}

	// The same in /metrics.
	series := scrape(t, m)
	for _, sink := range []string{"sinks[1].moq", "sinks[2].rtmp"} {
		l := labels{"pipeline": "cam", "sink": sink, "path": "live/cam"}
		if v := series.value(t, "moqbridge_sink_reconnects_total", l); v < 1 {
			t.Errorf("moqbridge_sink_reconnects_total%v = %v, want at least 1", l, v)
		}
		if v := series.value(t, "moqbridge_sink_connected", l); v != 1 {
			t.Errorf("moqbridge_sink_connected%v = %v, want 1", l, v)
		}
	}
	for _, part := range []string{"source", "sinks[0].fmp4", "sinks[1].moq", "sinks[2].rtmp"} {
		if v := series.value(t, "moqbridge_restarts_total", labels{"pipeline": "cam", "part": part}); v != 0 {
			t.Errorf("moqbridge_restarts_total{cam, %s} = %v, want 0", part, v)
		}
	}
	if err := r.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// ---- 3. /metrics ----

// countedOptions configure the counted source kind: Frames video frames
// of PayloadSize bytes, a keyframe (a new group) every GroupFrames, then
// it waits until stopped. FailFirstAfter > 0 makes its first run fail (a
// transient error) after that many frames; Permanent makes it fail at once
// with a permanent error.
type countedOptions struct {
	Frames         int  `yaml:"frames"`
	GroupFrames    int  `yaml:"group_frames"`
	PayloadSize    int  `yaml:"payload_size"`
	FailFirstAfter int  `yaml:"fail_first_after"`
	Permanent      bool `yaml:"permanent"`

	runs atomic.Int64
}

func countedSource() pipelines.SourceKind {
	return pipelines.SourceKind{
		Name:    "counted",
		Summary: "a known number of video frames, for tests",
		Options: func() any { return &countedOptions{Frames: 100, GroupFrames: 10, PayloadSize: 100} },
		NewSource: func(env pipelines.SourceEnv, opts any) (sdk.Source, error) {
			o := opts.(*countedOptions)
			return sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
				run := o.runs.Add(1)
				if o.Permanent {
					return sdk.Permanent(errors.New("counted: told to fail"))
				}
				tw, err := w.AddTrack(sdk.Track{Name: "video", Kind: sdk.KindVideo, Codec: "vp8"})
				if err != nil {
					return err
				}
				for i := range o.Frames {
					if run == 1 && o.FailFirstAfter > 0 && i == o.FailFirstAfter {
						return errors.New("counted: a transient failure")
					}
					payload := make([]byte, o.PayloadSize)
					payload[0] = byte(i)
					f := sdk.Frame{PTS: time.Duration(i) * 33 * time.Millisecond, Keyframe: i%o.GroupFrames == 0, Payload: payload}
					if err := tw.WriteFrame(f); err != nil {
						return err
					}
					// A little pacing, as a live source has.
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(time.Millisecond):
					}
				}
				<-ctx.Done()
				return nil
			}), nil
		},
	}
}

// readerOptions configure the reader sink kind: it reads every frame of
// every track; FailOnceAfter > 0 makes its first instance fail after that
// many frames.
type readerOptions struct {
	FailOnceAfter int `yaml:"fail_once_after"`

	made atomic.Int64
}

func readerSink() pipelines.SinkKind {
	return pipelines.SinkKind{
		Name:    "reader",
		Summary: "reads every frame, for tests",
		Options: func() any { return &readerOptions{} },
		New: func(env pipelines.SinkEnv, opts any) (sdk.Sink, error) {
			o := opts.(*readerOptions)
			instance := o.made.Add(1)
			return sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
				if err := r.WaitTracks(ctx, 50*time.Millisecond); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				sub, err := r.Subscribe(r.Tracks()[0].Name)
				if err != nil {
					return err
				}
				defer sub.Close()
				for n := 1; ; n++ {
					_, err := sub.ReadFrame(ctx)
					switch {
					case errors.Is(err, io.EOF), ctx.Err() != nil:
						return nil
					case err != nil:
						return err
					}
					if instance == 1 && o.FailOnceAfter > 0 && n == o.FailOnceAfter {
						return errors.New("reader: destination lost")
					}
				}
			}), nil
		},
	}
}

// labels select a series by its labels (those not named may be anything).
type labels map[string]string

// exposition is a parsed /metrics answer in the text format: every
// sample's name, labels and value.
type exposition []expSample

type expSample struct {
	name   string
	labels map[string]string
	value  float64
}

// value returns the value of the one sample of name whose labels include
// want; it fails the test when there is none or more than one.
func (e exposition) value(t *testing.T, name string, want labels) float64 {
	t.Helper()
	var found []expSample
	for _, s := range e {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, map[string]string(want), len(found))
	}
	return found[0].value
}

// scrape serves m's admin handler over HTTP and parses GET /metrics.
func scrape(t *testing.T, m *metrics.Metrics) exposition {
	t.Helper()
	srv := httptest.NewServer(metrics.Admin(m, nil))
	defer srv.Close()
	return scrapeURL(t, srv.URL+"/metrics")
}

func scrapeURL(t *testing.T, url string) exposition {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	e, err := parseExposition(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// parseExposition reads the Prometheus text format: comment lines are
// skipped, each other line is name{label="value",…} value.
func parseExposition(r io.Reader) (exposition, error) {
	var out exposition
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := expSample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name = line[:i]
			rest = line[i+1:]
			for !strings.HasPrefix(rest, "}") {
				eq := strings.Index(rest, `="`)
				if eq < 0 {
					return nil, fmt.Errorf("bad labels: %s", line)
				}
				name := strings.TrimPrefix(rest[:eq], ",")
				rest = rest[eq+2:]
				var val strings.Builder
				for i := 0; ; i++ {
					if i >= len(rest) {
						return nil, fmt.Errorf("unterminated label value: %s", line)
					}
					c := rest[i]
					if c == '\\' && i+1 < len(rest) {
						i++
						switch rest[i] {
						case 'n':
							val.WriteByte('\n')
						default:
							val.WriteByte(rest[i])
						}
						continue
					}
					if c == '"' {
						rest = rest[i+1:]
						break
					}
					val.WriteByte(c)
				}
				s.labels[name] = val.String()
				rest = strings.TrimPrefix(rest, ",")
			}
			rest = strings.TrimSpace(rest[1:])
		} else {
			name, value, ok := strings.Cut(line, " ")
			if !ok {
				return nil, fmt.Errorf("bad line: %s", line)
			}
			s.name, rest = name, value
		}
		value, _, _ := strings.Cut(rest, " ") // a timestamp may follow
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("bad value in %q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// TestAcceptanceMetrics: a runner with metrics.New as its Observer and
// metrics.Admin served over HTTP. After a source of a known number of
// frames was read by a sink, /metrics has exactly the documented values:
// frames, payload bytes and groups of the source and of the sink, the
// latency histogram's count (the frames timed), active broadcasts and
// sinks, source_up; a source failing once and a sink failing once count
// one restart each; a source failing permanently is down, and /readyz says
// so.
func TestAcceptanceMetrics(t *testing.T) {
	const frames, groupFrames, payload = 120, 10, 100
	reg := builtin.Registry()
	if err := reg.AddSource(countedSource()); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddSink(readerSink()); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	run := runConfig(t, reg, fmt.Sprintf(`
server: {enabled: false}
admin: {listen: ""}
x-restart: &restart {min: 20ms, max: 1s, jitter: 0}
pipelines:
  count:
    source: {counted: {frames: %d, group_frames: %d, payload_size: %d}}
    path: m/count
    sinks: [reader: {}]
    restart: *restart
  flaky_source:
    source: {counted: {frames: 30, fail_first_after: 5}}
    path: m/flaky_source
    sinks: [reader: {}]
    restart: *restart
  flaky_sink:
    source: {counted: {frames: 30}}
    path: m/flaky_sink
    sinks: [reader: {fail_once_after: 5}]
    restart: *restart
  broken:
    source: {counted: {permanent: true}}
    path: m/broken
    restart: *restart
`, frames, groupFrames, payload), m)
	admin := httptest.NewServer(metrics.Admin(m, run.r.Ready))
	defer admin.Close()

	// Wait for what the scrape must show: every frame read, the restarts
	// done, the broken source reported down.
	var e exposition
	waitUntil(t, 20*time.Second, "the counts in /metrics", func() bool {
		e = scrapeURL(t, admin.URL+"/metrics")
		have := func(name string, l labels, want float64) bool {
			for _, s := range e {
				if s.name != name {
					continue
				}
				ok := true
				for k, v := range l {
					ok = ok && s.labels[k] == v
				}
				if ok && s.value == want {
					return true
				}
			}
			return false
		}
		return have("moqbridge_sink_frames_total", labels{"pipeline": "count"}, frames) &&
			have("moqbridge_restarts_total", labels{"pipeline": "flaky_source", "part": "source"}, 1) &&
			have("moqbridge_restarts_total", labels{"pipeline": "flaky_sink", "part": "sinks[0].reader"}, 1) &&
			have("moqbridge_source_up", labels{"pipeline": "flaky_source"}, 1) &&
			have("moqbridge_source_up", labels{"pipeline": "broken"}, 0)
	})

	src := labels{"pipeline": "count", "path": "m/count", "track": "video"}
	sink := labels{"pipeline": "count", "sink": "sinks[0].reader", "path": "m/count", "track": "video"}
	for _, c := range []struct {
		name string
		l    labels
		want float64
	}{
		{"moqbridge_source_frames_total", src, frames},
		{"moqbridge_source_bytes_total", src, frames * payload},
		{"moqbridge_source_groups_total", src, frames / groupFrames},
		{"moqbridge_source_dropped_frames_total", src, 0},
		{"moqbridge_source_skipped_groups_total", src, 0},
		{"moqbridge_sink_frames_total", sink, frames},
		{"moqbridge_sink_bytes_total", sink, frames * payload},
		{"moqbridge_sink_groups_total", sink, frames / groupFrames},
		{"moqbridge_sink_skipped_groups_total", sink, 0},
		{"moqbridge_sink_truncated_groups_total", sink, 0},
		{"moqbridge_sink_invalid_frames_total", sink, 0},
		{"moqbridge_active_broadcasts", labels{"pipeline": "count"}, 1},
		{"moqbridge_active_sinks", labels{"pipeline": "count", "sink": "sinks[0].reader"}, 1},
		{"moqbridge_source_up", labels{"pipeline": "count"}, 1},
		{"moqbridge_restarts_total", labels{"pipeline": "count", "part": "source"}, 0},
		{"moqbridge_restarts_total", labels{"pipeline": "count", "part": "sinks[0].reader"}, 0},
		{"moqbridge_restarts_total", labels{"pipeline": "flaky_source", "part": "source"}, 1},
		{"moqbridge_restarts_total", labels{"pipeline": "flaky_source", "part": "sinks[0].reader"}, 0},
		{"moqbridge_restarts_total", labels{"pipeline": "flaky_sink", "part": "source"}, 0},
		{"moqbridge_restarts_total", labels{"pipeline": "flaky_sink", "part": "sinks[0].reader"}, 1},
		{"moqbridge_source_up", labels{"pipeline": "flaky_source"}, 1},
		{"moqbridge_source_up", labels{"pipeline": "flaky_sink"}, 1},
		{"moqbridge_source_up", labels{"pipeline": "broken"}, 0},
		{"moqbridge_restarts_total", labels{"pipeline": "broken", "part": "source"}, 0},
		{"moqbridge_active_broadcasts", labels{"pipeline": "broken"}, 0},
	} {
		if got := e.value(t, c.name, c.l); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, map[string]string(c.l), got, c.want)
		}
	}
	// The flaky source's first broadcast counts in its totals: 5 frames,
	// then 30 of the second run.
	if got := e.value(t, "moqbridge_source_frames_total", labels{"pipeline": "flaky_source"}); got != 35 {
		t.Errorf("flaky_source's source frames = %v, want 5 + 30", got)
	}
	// The latency histogram measures the frames written after the sink
	// attached (a track's write times are kept only once a measuring sink
	// reads it; the frames already cached when it started from the oldest
	// group are read but not timed): at least one, at most every frame, and
	// its +Inf bucket is its count.
	var inf float64
	for _, s := range e {
		if s.name == "moqbridge_frame_latency_seconds_bucket" && s.labels["pipeline"] == "count" && s.labels["le"] == "+Inf" {
			inf = s.value
		}
	}
	count := e.value(t, "moqbridge_frame_latency_seconds_count", labels{"pipeline": "count", "track": "video"})
	if count < 1 || count > frames || inf != count {
		t.Errorf("the latency histogram counts %v frames, +Inf bucket %v; want between 1 and %d, equal", count, inf, frames)
	}

	resp, err := http.Get(admin.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "broken") {
		t.Errorf("/readyz: %d %q, want 503 naming broken", resp.StatusCode, body)
	}
	if st := statusOf(run.r, "broken"); st.State != pipelines.StateFailed {
		t.Errorf("broken is %s, want failed", st.State)
	}
}

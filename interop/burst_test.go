package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
)

// Bursts: a publisher writes a burst of groups at once when one of its
// tracks is subscribed, on an idle loopback link, and every subscriber
// through the relay, which keeps reading, must receive every group of it
// byte for byte, in any order. js/burst.js is the JavaScript side.
//
// A burst track is named "<G>x<F>x<S>.<tag>": its publisher writes groups
// 0 to G-1 at once on the subscription's track, frame k of group g being
// patternFrame(g, k, S), for k < F, and keeps the track open. The tag makes
// each subscriber's name distinct, so each subscriber gets a subscription,
// and a burst, of its own, written the moment the relay's SUBSCRIBE reaches
// the publisher.

// burstShape is a burst: groups groups of frames frames of size bytes.
type burstShape struct{ groups, frames, size int }

// burstShapes are the bursts of every burst test, one round each: a few
// small groups, groups of 200 kB, and 200 groups of 70 kB (14 MB).
var burstShapes = []burstShape{
	{groups: 5, frames: 10, size: 1000},
	{groups: 20, frames: 10, size: 20000},
	{groups: 200, frames: 5, size: 14000},
}

// burstStall is how long a round waits for progress (any group, anywhere)
// before it declares the groups still missing lost. On an idle loopback
// link a burst that is still arriving never pauses this long: the largest
// burst takes about a second in all; the margin is for a busy machine.
const burstStall = 5 * time.Second

func (s burstShape) String() string { return fmt.Sprintf("%dx%dx%d", s.groups, s.frames, s.size) }

// bytes is the payload of s's burst.
func (s burstShape) bytes() int { return s.groups * s.frames * s.size }

// track is the name of s's burst track for one subscriber.
func (s burstShape) track(tag string) string { return s.String() + "." + tag }

var burstTrackRE = regexp.MustCompile(`^(\d+)x(\d+)x(\d+)\.[^.]+$`)

// parseBurstTrack returns the burst shape a track name asks for.
func parseBurstTrack(name string) (burstShape, bool) {
	m := burstTrackRE.FindStringSubmatch(name)
	if m == nil {
		return burstShape{}, false
	}
	var n [3]int
	for i := range n {
		v, err := strconv.Atoi(m[1+i])
		if err != nil || v > 1<<20 {
			return burstShape{}, false
		}
		n[i] = v
	}
	return burstShape{groups: n[0], frames: n[1], size: n[2]}, true
}

// writeBurstGo writes tw's burst at once and returns the first sequence.
func writeBurstGo(tw *moq.TrackWriter, s burstShape) (uint64, error) {
	var first uint64
	for i := range s.groups {
		gw, err := tw.AppendGroup()
		if err != nil {
			return first, fmt.Errorf("group %d of %d: %w", i, s.groups, err)
		}
		if i == 0 {
			first = gw.Sequence()
		}
		for k := range s.frames {
			if err := gw.WriteFrame(patternFrame(int(gw.Sequence()), k, s.size)); err != nil {
				return first, fmt.Errorf("group %d frame %d: %w", gw.Sequence(), k, err)
			}
		}
		if err := gw.Close(); err != nil {
			return first, fmt.Errorf("group %d: %w", gw.Sequence(), err)
		}
	}
	return first, nil
}

// burstGroup is what a subscriber received of one group.
type burstGroup struct {
	seq    uint64
	sizes  []int    // each frame's size
	hashes []string // each frame's SHA-256, hex
	err    string   // why the group ended early (reset), if it did
}

func hashFrame(p []byte) string {
	h := sha256.Sum256(p)
	return hex.EncodeToString(h[:])
}

// judge compares g with the burst of shape s: "" if every frame it has is
// the pattern's and, unless it was reset, it has all of them; else what is
// wrong.
func (g burstGroup) judge(s burstShape) string {
	if len(g.sizes) != len(g.hashes) {
		return fmt.Sprintf("report has %d sizes and %d hashes", len(g.sizes), len(g.hashes))
	}
	for k := range min(len(g.sizes), s.frames) {
		if g.sizes[k] != s.size {
			return fmt.Sprintf("frame %d has %d bytes, want %d", k, g.sizes[k], s.size)
		}
		if g.hashes[k] != hashFrame(patternFrame(int(g.seq), k, s.size)) {
			return fmt.Sprintf("frame %d (%d bytes) differs from the pattern", k, s.size)
		}
	}
	if g.err != "" {
		return ""
	}
	if len(g.sizes) != s.frames {
		return fmt.Sprintf("%d frames, want %d", len(g.sizes), s.frames)
	}
	return ""
}

// burstKey is one subscriber's subscription to one burst track.
type burstKey struct {
	sub   string // who reads: "go-quic", "node", "page-wt", …
	path  string // the broadcast
	track string
}

func (k burstKey) String() string { return fmt.Sprintf("%s ← %s %s", k.sub, k.path, k.track) }

// burstRecv is what one subscriber received of one burst track.
type burstRecv struct {
	shape  burstShape
	first  *uint64 // the sequence of the first group it received
	groups map[uint64]burstGroup
	dups   []uint64
	ended  *string // why the track ended, once it did ("" for a clean end)
}

// burstCheck collects what the publishers and subscribers of burst tracks
// report, from any goroutine, and judges it.
type burstCheck struct {
	progress chan struct{} // a token after every report

	mu       sync.Mutex
	recv     map[burstKey]*burstRecv
	requests map[string]int    // publisher path + " " + track: requests it got
	writes   map[string]string // the same key: what writing the burst did
	fatal    []string
}

func newBurstCheck() *burstCheck {
	return &burstCheck{
		progress: make(chan struct{}, 1),
		recv:     make(map[burstKey]*burstRecv),
		requests: make(map[string]int),
		writes:   make(map[string]string),
	}
}

func (c *burstCheck) changed() {
	select {
	case c.progress <- struct{}{}:
	default:
	}
}

// expect registers a subscription whose burst the subscriber must receive.
func (c *burstCheck) expect(k burstKey) {
	s, ok := parseBurstTrack(k.track)
	if !ok {
		panic("not a burst track: " + k.track)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recv[k] = &burstRecv{shape: s, groups: make(map[uint64]burstGroup)}
}

func (c *burstCheck) failf(format string, args ...any) {
	c.mu.Lock()
	c.fatal = append(c.fatal, fmt.Sprintf(format, args...))
	c.mu.Unlock()
	c.changed()
}

// group records a group a subscriber received.
func (c *burstCheck) group(k burstKey, g burstGroup) {
	defer c.changed()
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.recv[k]
	if r == nil {
		c.fatal = append(c.fatal, fmt.Sprintf("%v: group %d of a subscription the test did not make", k, g.seq))
		return
	}
	if r.first == nil {
		r.first = &g.seq
	}
	if _, dup := r.groups[g.seq]; dup {
		r.dups = append(r.dups, g.seq)
		return
	}
	r.groups[g.seq] = g
}

// trackEnded records that a subscriber's track ended (err "" when cleanly).
func (c *burstCheck) trackEnded(k burstKey, err string) {
	defer c.changed()
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.recv[k]; r != nil && r.ended == nil {
		r.ended = &err
	}
}

// requested records that a publisher got a request for track of path.
func (c *burstCheck) requested(path, track string) {
	defer c.changed()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests[path+" "+track]++
}

// written records what a publisher's writing of a burst did.
func (c *burstCheck) written(path, track string, first uint64, err string) {
	defer c.changed()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != "":
		c.writes[path+" "+track] = "writing the burst failed: " + err
	case first != 0:
		c.writes[path+" "+track] = fmt.Sprintf("the burst started at group %d, want 0", first)
	default:
		c.writes[path+" "+track] = ""
	}
}

// report records a burst message of js/burst.js (from Node or a page)
// about broadcast path, received or published by sub; it reports whether
// the type is one of them.
func (c *burstCheck) report(sub, typ, path, track string, seq uint64, sizes []int, hashes []string, errStr string) bool {
	k := burstKey{sub: sub, path: path, track: track}
	switch typ {
	case "burst-group":
		c.group(k, burstGroup{seq: seq, sizes: sizes, hashes: hashes, err: errStr})
	case "burst-track-ended":
		c.trackEnded(k, errStr)
	case "requested":
		c.requested(path, track)
	case "burst-written":
		c.written(path, track, seq, errStr)
	default:
		return false
	}
	return true
}

// settled reports whether every subscription of keys has a report of every
// group of its burst, or has ended, or a fatal error happened.
func (c *burstCheck) settled(keys []burstKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.fatal) > 0 {
		return true
	}
	for _, k := range keys {
		r := c.recv[k]
		if r.ended != nil {
			continue
		}
		for seq := range uint64(r.shape.groups) {
			if _, ok := r.groups[seq]; !ok {
				return false
			}
		}
	}
	return true
}

// problems lists what is wrong with the subscriptions of keys, one line
// each, and with their publishers' requests; none when every group arrived
// whole and byte-exact.
func (c *burstCheck) problems(keys []burstKey) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.fatal)
	for _, k := range keys {
		r := c.recv[k]
		var missing, extra []uint64
		var corrupt []string
		reset := map[string][]uint64{} // by error
		var resetErrs []string
		complete := 0
		for seq := range uint64(r.shape.groups) {
			g, ok := r.groups[seq]
			var wrong string
			if ok {
				wrong = g.judge(r.shape)
			}
			switch {
			case !ok:
				missing = append(missing, seq)
			case wrong != "":
				corrupt = append(corrupt, fmt.Sprintf("%d (%s)", seq, wrong))
			case g.err != "":
				e := groupNumbers.ReplaceAllString(firstLine(g.err), "$1 #")
				if reset[e] == nil {
					resetErrs = append(resetErrs, e)
				}
				reset[e] = append(reset[e], seq)
			default:
				complete++
			}
		}
		for seq := range r.groups {
			if seq >= uint64(r.shape.groups) {
				extra = append(extra, seq)
			}
		}
		slices.Sort(extra)
		var p []string
		if len(missing) > 0 {
			m := fmt.Sprintf("missing groups [%s]", seqRanges(missing))
			if r.first != nil {
				m += fmt.Sprintf(" (the first group received was %d)", *r.first)
			}
			p = append(p, m)
		}
		for _, e := range resetErrs {
			seqs := reset[e]
			lo, hi := r.shape.frames, 0
			for _, seq := range seqs {
				n := len(r.groups[seq].sizes)
				lo, hi = min(lo, n), max(hi, n)
			}
			frames := fmt.Sprintf("%d", lo)
			if hi != lo {
				frames = fmt.Sprintf("%d to %d", lo, hi)
			}
			p = append(p, fmt.Sprintf("reset groups [%s] after %s of %d frames (%s)", seqRanges(seqs), frames, r.shape.frames, e))
		}
		if len(corrupt) > 0 {
			p = append(p, fmt.Sprintf("corrupt groups [%s]", strings.Join(corrupt, ", ")))
		}
		if len(extra) > 0 {
			p = append(p, fmt.Sprintf("groups outside the burst [%s]", seqRanges(extra)))
		}
		if len(r.dups) > 0 {
			p = append(p, fmt.Sprintf("groups received twice %v", r.dups))
		}
		if r.ended != nil && (*r.ended != "" || len(missing) > 0) {
			p = append(p, fmt.Sprintf("the track ended: %q", firstLine(*r.ended)))
		}
		pub := k.path + " " + k.track
		if n := c.requests[pub]; n > 1 {
			p = append(p, fmt.Sprintf("the publisher got %d requests for the track, want 1", n))
		}
		if w, ok := c.writes[pub]; ok && w != "" {
			p = append(p, w)
		}
		if len(p) > 0 {
			out = append(out, fmt.Sprintf("%v: %s; %d of %d groups complete and byte-exact",
				k, strings.Join(p, "; "), complete, r.shape.groups))
		}
	}
	return out
}

// groupNumbers finds the group and frame numbers in errors, so that the
// groups reset with the same error are listed together.
var groupNumbers = regexp.MustCompile(`\b(group|frame) \d+`)

// seqRanges renders sorted sequences as "0-3 7 9-12".
func seqRanges(seqs []uint64) string {
	var b strings.Builder
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", seqs[i], seqs[j])
		} else {
			fmt.Fprintf(&b, "%d", seqs[i])
		}
		i = j + 1
	}
	return b.String()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// wait waits until the subscriptions of keys have settled (true), or no
// report came for stall, or ctx ended (false).
func (c *burstCheck) wait(ctx context.Context, keys []burstKey, stall time.Duration) bool {
	timer := time.NewTimer(stall)
	defer timer.Stop()
	for !c.settled(keys) {
		select {
		case <-c.progress:
			timer.Reset(stall)
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// burstReader is one subscriber of one round: start subscribes it.
type burstReader struct {
	key   burstKey
	start func()
}

// rounds runs one round per shape, one after the other, with the readers
// readers(shape) returns (see round); the bursts under a megabyte go one
// reader at a time, on an otherwise idle link, the others to all readers
// at once. A round that fails is reported and the next one runs.
func (c *burstCheck) rounds(t *testing.T, ctx context.Context, shapes []burstShape, readers func(burstShape) []burstReader) {
	t.Helper()
	for _, shape := range shapes {
		rs := readers(shape)
		if shape.bytes() >= 1<<20 {
			if !c.round(t, ctx, shape, "", rs) {
				return
			}
			continue
		}
		for _, r := range rs {
			if !c.round(t, ctx, shape, r.key.String(), []burstReader{r}) {
				return
			}
		}
	}
}

// round starts the readers rs at once, each subscribing to a burst track
// of its own of shape s, and checks that every group of every burst
// arrives complete and byte-exact at its subscriber. A failure is reported
// with every missing, reset and corrupt group. It returns false if ctx
// ended.
func (c *burstCheck) round(t *testing.T, ctx context.Context, s burstShape, what string, rs []burstReader) bool {
	t.Helper()
	start := time.Now()
	keys := make([]burstKey, len(rs))
	for i, r := range rs {
		keys[i] = r.key
		c.expect(r.key)
	}
	for _, r := range rs {
		r.start()
	}
	settled := c.wait(ctx, keys, burstStall)
	elapsed := time.Since(start).Round(time.Millisecond)
	probs := c.problems(keys)
	name := fmt.Sprintf("burst %v (%d groups × %d frames × %d bytes)", s, s.groups, s.frames, s.size)
	if what != "" {
		name += ", " + what
	}
	c.mu.Lock()
	fatal := len(c.fatal) > 0
	c.mu.Unlock()
	switch {
	case fatal:
		t.Fatalf("%s, after %v:\n%s", name, elapsed, strings.Join(probs, "\n"))
	case len(probs) == 0 && settled:
		t.Logf("%s: all %d subscribers received every group byte-exact in %v", name, len(rs), elapsed)
	case settled:
		t.Errorf("%s, after %v:\n%s", name, elapsed, strings.Join(probs, "\n"))
	default:
		why := fmt.Sprintf("nothing arrived for %v", burstStall)
		if ctx.Err() != nil {
			why = "the test timed out"
		}
		t.Errorf("%s: %s (after %v):\n%s", name, why, elapsed, strings.Join(probs, "\n"))
	}
	return ctx.Err() == nil
}

// goReader is a Go subscriber, sub, of track of the broadcast at path,
// read from b (a session's or the relay's broadcast).
func (c *burstCheck) goReader(ctx context.Context, wg *sync.WaitGroup, sub string, b *moq.BroadcastReader, path, track string) burstReader {
	k := burstKey{sub: sub, path: path, track: track}
	return burstReader{key: k, start: func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.readGo(ctx, k, b)
		}()
	}}
}

// readGo subscribes to k.track of b and reports every group to c as it
// arrives (NextArrival: the first group, then every later-arriving one of
// a higher sequence, without waiting for order), each group read in its
// own goroutine, until the track or ctx ends.
func (c *burstCheck) readGo(ctx context.Context, k burstKey, b *moq.BroadcastReader) {
	tr, err := b.Subscribe(k.track, 0)
	if err != nil {
		c.trackEnded(k, err.Error())
		return
	}
	defer tr.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		gr, err := tr.NextArrival(ctx)
		if err != nil {
			if ctx.Err() == nil {
				why := "" // a clean end
				if !errors.Is(err, io.EOF) {
					why = err.Error()
				}
				c.trackEnded(k, why)
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := gr.Sequence()
			frames, err := readBrowserGroup(ctx, gr)
			if ctx.Err() != nil {
				return // the test is over
			}
			g := burstGroup{seq: seq}
			if err != nil {
				g.err = err.Error()
			}
			for _, f := range frames {
				g.sizes = append(g.sizes, len(f))
				g.hashes = append(g.hashes, hashFrame(f))
			}
			c.group(k, g)
		}()
	}
}

// goBurstOrigin returns an Origin with a Go broadcast at path whose
// requested burst tracks get their burst at once, written by the
// in-process TrackWriter of each subscription (moq.BroadcastWriter's
// HandleRequests), for a Go client to publish.
func (c *burstCheck) goBurstOrigin(t *testing.T, path string) *moq.Origin {
	t.Helper()
	origin := moq.NewOrigin()
	t.Cleanup(origin.Close)
	bw := moq.NewBroadcast()
	t.Cleanup(func() { _ = bw.Close() })
	bw.HandleRequests(func(tw *moq.TrackWriter) {
		c.requested(path, tw.Name())
		shape, ok := parseBurstTrack(tw.Name())
		if !ok {
			tw.CloseWithError(moq.ErrNotFound)
			return
		}
		first, err := writeBurstGo(tw, shape)
		errStr := ""
		if err != nil {
			errStr = err.Error()
		}
		c.written(path, tw.Name(), first, errStr)
		select {
		case <-tw.Unused():
		case <-tw.Done():
		}
	})
	if err := origin.Publish(path, bw.Reader()); err != nil {
		t.Fatal(err)
	}
	return origin
}

// pumpNode feeds what a js/peer.js in burst mode reports into c, as
// subscriber sub, until ctx ends.
func (c *burstCheck) pumpNode(ctx context.Context, wg *sync.WaitGroup, sub string, n *nodePeer) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-n.msgs:
				if !ok {
					<-n.done
					c.failf("node %s exited: %v", sub, n.err)
					return
				}
				switch {
				case c.report(sub, m.Type, m.Path, m.Track, m.Seq, m.Sizes, m.Hashes, m.Error):
				case m.Type == "published":
				case m.Type == "failed":
					c.failf("node %s failed: %s", sub, m.Error)
				default:
					c.failf("node %s: unexpected message %+v", sub, m)
				}
			}
		}
	}()
}

// startBurstRelay starts a relay for the Node burst tests, with the default
// limits (the relay must deliver bursts to subscribers that keep reading
// without any tuning).
func startBurstRelay(t *testing.T) *nodeEnv {
	return startNodeRelayWith(t, nil, protocol.Limits{})
}

// sessionStats logs, at cleanup if t failed, the counters of every relay
// session and of the Go clients (by name): which side dropped groups
// (GroupsDropped) or never sent them.
func sessionStats(t *testing.T, srv *protocol.Server, clients map[string]*protocol.Session) {
	t.Cleanup(func() {
		if t.Failed() {
			logSessionStats(t, srv, clients)
		}
	})
}

func logSessionStats(t *testing.T, srv *protocol.Server, clients map[string]*protocol.Session) {
	for _, s := range srv.Sessions() {
		t.Logf("relay session %s %s: %+v", s.Transport(), s.Version(), s.Stats())
	}
	for _, name := range slices.Sorted(maps.Keys(clients)) {
		s := clients[name]
		t.Logf("Go client %s (%s %s): %+v", name, s.Transport(), s.Version(), s.Stats())
	}
}

// TestNodeBurstPublish: @moq/lite in Node publishes over the WebSocket
// fallback (both dialects) and writes a burst at once on every track
// subscribed; through the relay (default limits), a Go subscriber over raw
// QUIC, a Go subscriber over WebSocket and a @moq/lite subscriber in a
// second Node process each subscribe to a burst track of their own, one
// round per shape of burstShapes, and must receive every group of every
// burst, complete and byte-exact, in any order.
func TestNodeBurstPublish(t *testing.T) {
	forDialects(t, func(t *testing.T, ctx context.Context, d nodeDialect) {
		const path = "interop/node-burst"
		env := startBurstRelay(t)
		pub := startNode(t, "burst", env.httpURL(""), d.name, path)
		sub := startNode(t, "burst", env.httpURL(""), d.name, "-")
		failureOutput(t, env, pub, sub)
		expectConnected(t, ctx, env, pub, d)
		expectConnected(t, ctx, env, sub, d)
		waitAnnounced(t, ctx, env.srv.Origin(), path)
		quic := env.dial(t, ctx)
		ws := env.dialURL(t, ctx, fmt.Sprintf("ws://127.0.0.1:%d/", env.srv.Addr().Port))
		sessionStats(t, env.srv, map[string]*protocol.Session{"go-quic subscriber": quic, "go-ws subscriber": ws})

		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		c := newBurstCheck()
		c.pumpNode(ctx, &wg, "node-pub", pub)
		c.pumpNode(ctx, &wg, "node", sub)
		c.rounds(t, ctx, burstShapes, func(s burstShape) []burstReader {
			node := s.track("node")
			return []burstReader{
				c.goReader(ctx, &wg, "go-quic", quic.Consume(path), path, s.track("quic")),
				c.goReader(ctx, &wg, "go-ws", ws.Consume(path), path, s.track("ws")),
				{key: burstKey{sub: "node", path: path, track: node}, start: func() { sub.send(t, "sub "+path+" "+node) }},
			}
		})
	})
}

// TestNodeBurstSubscribe: a Go publisher (an in-process broadcast published
// by a Go client over raw QUIC) writes a burst at once on every track
// subscribed; @moq/lite in Node subscribes through the relay (default
// limits) over the WebSocket fallback (both dialects), one round per shape
// of burstShapes, and must receive every group, complete and byte-exact.
func TestNodeBurstSubscribe(t *testing.T) {
	forDialects(t, func(t *testing.T, ctx context.Context, d nodeDialect) {
		const path = "interop/go-burst"
		env := startBurstRelay(t)
		c := newBurstCheck()
		goPub := env.dial(t, ctx, protocol.WithPublish(c.goBurstOrigin(t, path)))
		waitAnnounced(t, ctx, env.srv.Origin(), path)
		sub := startNode(t, "burst", env.httpURL(""), d.name, "-")
		failureOutput(t, env, sub)
		expectConnected(t, ctx, env, sub, d)
		sessionStats(t, env.srv, map[string]*protocol.Session{"publisher": goPub})

		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		c.pumpNode(ctx, &wg, "node", sub)
		c.rounds(t, ctx, burstShapes, func(s burstShape) []burstReader {
			node := s.track("node")
			return []burstReader{
				{key: burstKey{sub: "node", path: path, track: node}, start: func() { sub.send(t, "sub "+path+" "+node) }},
			}
		})
	})
}

// pageConn is a connection the burst page opens to the relay.
type pageConn struct {
	name      string // the page publishes interop/browser-<name> on it
	transport string // "webtransport" or "websocket", as Session.Transport says
}

// version is what the page must negotiate over c: moq-lite-04 over
// WebTransport, moq-lite-02 (SETUP) over the legacy WebSocket dialect.
func (c pageConn) version() protocol.Version {
	if c.transport == "websocket" {
		return protocol.Lite02
	}
	return protocol.Lite04
}

// goBurstPath is the Go publisher's broadcast in the Chromium burst tests.
const goBurstPath = "interop/go-burst"

// burstPage is a relay, a Go client publishing goBurstPath with bursts, a
// Go subscriber client (both over raw QUIC) and headless Chromium running
// web/burst.js, connected to the relay.
type burstPage struct {
	srv      *protocol.Server
	relayLog *testkit.LogBuffer
	ps       *pageServer
	c        *burstCheck
	goPub    *protocol.Session // publishes goBurstPath
	goSub    *protocol.Session
}

// startBurstPage starts the relay with cfg (TCP on; zero limits are the
// defaults), the Go clients, the page server (another origin than the
// relay's: http://127.0.0.1 on a port of its own) and Chromium on the page
// with conns. It returns once every connection negotiated its version, the
// relay has the page's sessions and broadcasts, and then feeds the page's
// reports into the returned burstPage's check until ctx ends.
func startBurstPage(t *testing.T, ctx context.Context, wg *sync.WaitGroup, cfg protocol.ServerConfig, conns []pageConn) *burstPage {
	t.Helper()
	start := time.Now()
	html, bundle := loadPage(t, "index.html", "burst.js")
	b := &burstPage{relayLog: &testkit.LogBuffer{}, c: newBurstCheck()}
	cfg.Logger = b.relayLog.Logger()
	b.srv = serveRelay(t, cfg)
	fp := b.srv.Fingerprint()
	port := b.srv.Addr().Port
	dial := func(opts ...protocol.DialOption) *protocol.Session {
		t.Helper()
		url := fmt.Sprintf("moql://127.0.0.1:%d", port)
		opts = append([]protocol.DialOption{protocol.WithFingerprint(fp), protocol.WithLimits(cfg.Limits)}, opts...)
		sess, err := protocol.Dial(ctx, url, opts...)
		if err != nil {
			t.Fatalf("Dial %s: %v", url, err)
		}
		t.Cleanup(func() { _ = sess.Close() })
		return sess
	}
	b.goPub = dial(protocol.WithPublish(b.c.goBurstOrigin(t, goBurstPath)))
	waitAnnounced(t, ctx, b.srv.Origin(), goBurstPath)
	b.goSub = dial()

	b.ps = &pageServer{html: html, bundle: bundle, msgs: make(chan pageMsg, 256)}
	hs := httptest.NewServer(b.ps)
	t.Cleanup(hs.Close)
	query := url.Values{
		"wt":   {fmt.Sprintf("https://127.0.0.1:%d/", port)},
		"hash": {hex.EncodeToString(fp[:])},
		"ws":   {fmt.Sprintf("http://127.0.0.1:%d/", port)},
	}
	for _, c := range conns {
		query.Add("conn", c.name+":"+c.transport)
	}
	browser := startChromium(t, hs.URL+"/?"+query.Encode(),
		"--disable-background-timer-throttling", "--disable-renderer-backgrounding")
	// Registered last, so it runs first: diagnostics while all is alive.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logSessionStats(t, b.srv, map[string]*protocol.Session{"publisher": b.goPub, "subscriber": b.goSub})
		t.Logf("page console:\n%s", tail(b.ps.consoleLog(), 150))
		t.Logf("chromium output (D-Bus noise left out):\n%s", tail(dropLines(browser.output(), "dbus/", "D-Bus"), 60))
		t.Logf("relay log:\n%s", tail(b.relayLog.String(), 80))
	})

	// The page's connections.
	want := map[string]pageConn{}
	for _, c := range conns {
		want[c.name] = c
	}
	connected := map[string]bool{}
	published := map[string]bool{}
	for len(connected) < len(conns) || len(published) < len(conns) {
		select {
		case <-ctx.Done():
			t.Fatalf("after %v the page has connected %v and published %v of %v", time.Since(start).Round(time.Millisecond), connected, published, conns)
		case <-browser.done:
			t.Fatalf("chromium exited early: %v", browser.err)
		case m := <-b.ps.msgs:
			c, ok := want[m.Conn]
			switch {
			case m.Type == "failed" && ok:
				t.Fatalf("page connection %s (%s): %s%s", c.name, c.transport, firstLine(m.Error), b.refusals())
			case m.Type == "failed":
				t.Fatalf("page failed: %s", m.Error)
			case !ok:
				t.Fatalf("page message about connection %q: %+v", m.Conn, m)
			case m.Type == "connected":
				if m.Version != c.version().String() {
					t.Fatalf("page connection %s (%s) negotiated %q, want %s", c.name, c.transport, m.Version, c.version())
				}
				connected[c.name] = true
				t.Logf("page connection %s: %s over %s (%v)", c.name, m.Version, c.transport, time.Since(start).Round(time.Millisecond))
			case m.Type == "published":
				published[c.name] = true
			default:
				t.Fatalf("page message before it published: %+v", m)
			}
		}
	}
	// The relay's view: the page's sessions, and its broadcasts.
	for _, transport := range []string{"webtransport", "websocket"} {
		n := 0
		for _, c := range conns {
			if c.transport == transport {
				n++
			}
		}
		var got []*protocol.Session
		for _, s := range b.srv.Sessions() {
			if s.Transport() == transport {
				got = append(got, s)
			}
		}
		if len(got) != n {
			t.Fatalf("relay has %d %s sessions, want the page's %d", len(got), transport, n)
		}
		for _, s := range got {
			if v := s.Version(); v != (pageConn{transport: transport}).version() {
				t.Fatalf("relay negotiated %s over %s with the page", v, transport)
			}
		}
	}
	for _, c := range conns {
		waitAnnounced(t, ctx, b.srv.Origin(), "interop/browser-"+c.name)
	}

	// From now on the page's reports go to the check.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-browser.done:
				b.c.failf("chromium exited: %v", browser.err)
				return
			case m := <-b.ps.msgs:
				switch {
				case b.c.report("page-"+m.Conn, m.Type, m.Path, m.Track, m.Seq, m.Sizes, m.Hashes, m.Error):
				case m.Type == "failed":
					b.c.failf("page connection %q failed: %s", m.Conn, firstLine(m.Error))
				default:
					b.c.failf("unexpected page message %+v", m)
				}
			}
		}
	}()
	t.Logf("page ready (%v)", time.Since(start).Round(time.Millisecond))
	return b
}

// refusals returns the relay's log lines about refused origins, if any, to
// explain a connection that failed.
func (b *burstPage) refusals() string {
	var out []string
	for line := range strings.Lines(b.relayLog.String()) {
		if strings.Contains(line, "refused") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "\nthe relay logged:\n" + strings.Join(out, "\n")
}

// pageReader is the page's connection conn subscribing to track of the
// broadcast at path.
func (b *burstPage) pageReader(conn, path, track string) burstReader {
	return burstReader{
		key:   burstKey{sub: "page-" + conn, path: path, track: track},
		start: func() { b.ps.subscribe(pageSub{Conn: conn, Path: path, Track: track}) },
	}
}

// goReader is the Go subscriber client reading track of the broadcast at
// path through the relay.
func (b *burstPage) goReader(ctx context.Context, wg *sync.WaitGroup, path, track string) burstReader {
	return b.c.goReader(ctx, wg, "go", b.goSub.Consume(path), path, track)
}

// TestChromiumBurst: @moq/lite 0.2.2 in headless Chromium, on three
// connections to one relay (default limits): "wt" and "wt2" over
// WebTransport (certificate pinned by hash), "ws" over the WebSocket
// fallback. Each connection publishes a broadcast that writes a burst at
// once on every track subscribed, and so does a Go client. One round per
// shape of burstShapes, every burst on a subscription of its own:
//
//	Go → browser:      go-burst read by wt (WebTransport) and by ws (WebSocket)
//	browser → Go:      browser-wt and browser-ws read by a Go client (raw QUIC)
//	browser → browser: browser-wt read by wt2 (WebTransport both ways),
//	                   browser-ws by wt, browser-wt2 by ws
//
// Every group of every burst must arrive complete and byte-exact, in any
// order, at its subscriber.
func TestChromiumBurst(t *testing.T) {
	requireTools(t, "node", "chromium", "node_modules")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	b := startBurstPage(t, ctx, &wg, protocol.ServerConfig{}, []pageConn{
		{name: "wt", transport: "webtransport"},
		{name: "wt2", transport: "webtransport"},
		{name: "ws", transport: "websocket"},
	})
	type flow struct {
		what    string
		readers []burstReader
	}
	for _, s := range burstShapes {
		goToPage := flow{"Go → browser", []burstReader{
			b.pageReader("wt", goBurstPath, s.track("wt")),
			b.pageReader("ws", goBurstPath, s.track("ws")),
		}}
		pageToGo := flow{"browser → Go", []burstReader{
			b.goReader(ctx, &wg, "interop/browser-wt", s.track("go")),
			b.goReader(ctx, &wg, "interop/browser-ws", s.track("go")),
		}}
		pageToPage := flow{"browser → browser", []burstReader{
			b.pageReader("wt2", "interop/browser-wt", s.track("page")),
			b.pageReader("wt", "interop/browser-ws", s.track("page")),
			b.pageReader("ws", "interop/browser-wt2", s.track("page")),
		}}
		// Small bursts go one at a time, on an otherwise idle link, as
		// rounds does; bursts of megabytes one direction at a time, and
		// the largest between pages one at a time, so that the page's one
		// JavaScript thread, which runs every connection, does not limit a
		// subscriber.
		one := func(rs ...burstReader) (out []flow) {
			for _, r := range rs {
				out = append(out, flow{r.key.String(), []burstReader{r}})
			}
			return out
		}
		var rounds []flow
		switch {
		case s.bytes() < 1<<20:
			rounds = one(slices.Concat(goToPage.readers, pageToGo.readers, pageToPage.readers)...)
		case s.bytes() < 8<<20:
			rounds = []flow{goToPage, pageToGo, pageToPage}
		default:
			rounds = append([]flow{goToPage, pageToGo}, one(pageToPage.readers...)...)
		}
		for _, r := range rounds {
			if !b.c.round(t, ctx, s, r.what, r.readers) {
				return
			}
		}
	}
	b.ps.setState(false, true)
}

// TestChromiumCrossOrigin: a relay configured with a certificate file (a
// self-signed ECDSA P-256 certificate valid for 13 days, written by the
// test) and no allowed origins, and a page served from another origin
// (http://127.0.0.1 on another port). The page must connect over
// WebTransport (the certificate pinned by hash) and over the WebSocket
// fallback — browsers' origins are allowed by default; tokens, not
// origins, are the boundary — and receive the Go client's burst of
// 5 groups × 10 × 1 kB on each, while the Go client receives the page's.
func TestChromiumCrossOrigin(t *testing.T) {
	requireTools(t, "node", "chromium", "node_modules")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	certFile, keyFile, fp := writeBrowserCert(t, t.TempDir())
	cfg := protocol.ServerConfig{CertFile: certFile, KeyFile: keyFile}
	b := startBurstPage(t, ctx, &wg, cfg, []pageConn{
		{name: "wt", transport: "webtransport"},
		{name: "ws", transport: "websocket"},
	})
	if b.srv.Fingerprint() != fp {
		t.Fatalf("the relay's certificate is not the one in %s", certFile)
	}
	b.c.rounds(t, ctx, burstShapes[:1], func(s burstShape) []burstReader {
		return []burstReader{
			b.pageReader("wt", goBurstPath, s.track("wt")),
			b.pageReader("ws", goBurstPath, s.track("ws")),
			b.goReader(ctx, &wg, "interop/browser-wt", s.track("go")),
			b.goReader(ctx, &wg, "interop/browser-ws", s.track("go")),
		}
	})
	b.ps.setState(false, true)
}

// writeBrowserCert writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and localhost, valid from an hour ago for 13 days (browsers
// pin certificates valid for at most 14 days by hash), and its key, as PEM
// files into dir; it returns their paths and the certificate's SHA-256.
func writeBrowserCert(t *testing.T, dir string) (certFile, keyFile string, fingerprint [32]byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	notBefore := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"moqbridge interop"}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(13 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, sha256.Sum256(der)
}

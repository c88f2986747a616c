package moq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/internal/testrelay"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// runInBackground runs fn until the test ends, then cancels its context
// and checks it returned nil.
func runInBackground(t *testing.T, ctx context.Context, what string, fn func(ctx context.Context) error) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", what, err)
		}
	})
	return cancel
}

// parsedFrame is what frameBytes encodes.
type parsedFrame struct {
	gen   int
	seq   uint64
	index int
}

func parseFrame(t *testing.T, b []byte) parsedFrame {
	t.Helper()
	var p parsedFrame
	var rest string
	if _, err := fmt.Sscanf(string(b), "gen%d/group%d/frame%d/%s", &p.gen, &p.seq, &p.index, &rest); err != nil {
		t.Fatalf("frame %q: %v", b, err)
	}
	if want := frameBytes(p.gen, p.seq, p.index); string(want) != string(b) {
		t.Fatalf("frame %q, want %q", b, want)
	}
	return p
}

// readGroup reads every frame of g, checking each is byte for byte the
// one the publisher wrote at its place; it returns the generation and
// remote sequence, or false when the group was dropped.
func readGroup(t *testing.T, ctx context.Context, g *moq.GroupReader) (gen int, remoteSeq uint64, ok bool) {
	t.Helper()
	defer g.Close()
	for i := 0; ; i++ {
		f, err := g.NextFrame(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("group %d: %v", g.Sequence(), err)
			}
			return gen, remoteSeq, i == framesPerGroup && errors.Is(err, io.EOF)
		}
		p := parseFrame(t, f)
		if p.index != i || (i > 0 && (p.gen != gen || p.seq != remoteSeq)) {
			t.Fatalf("group %d frame %d is %+v", g.Sequence(), i, p)
		}
		gen, remoteSeq = p.gen, p.seq
	}
}

// TestSourceMirrorsAcrossRestart: a broadcast published on relay A
// appears in the local Origin through Source.Publish with its frames byte
// for byte; relay A restarts on the same port with a publisher that starts
// its sequences from 0 again, and the same local subscription goes on with
// the new frames at increasing sequences, the local broadcast never
// ending.
func TestSourceMirrorsAcrossRestart(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	relay := testrelay.Start(t)
	lb := &testkit.LogBuffer{}
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	}()

	publish := func(gen int) (*moq.BroadcastWriter, func()) {
		bw := moq.NewBroadcast()
		wctx, stop := context.WithCancel(ctx)
		wait := writeGroups(wctx, t, bw, "t", gen, 0, 20*time.Millisecond)
		if err := relay.Origin().Publish("live/cam", bw.Reader()); err != nil {
			t.Fatal(err)
		}
		return bw, func() {
			stop()
			wait()
			_ = bw.Close()
		}
	}
	_, stop1 := publish(1)
	defer stop1()

	src, err := NewSource(Config{URL: relay.URL(), Broadcast: "live/cam", Dial: relay.Dial(), Backoff: fastBackoff, Logger: lb.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	local := moq.NewOrigin()
	defer local.Close()
	runInBackground(t, ctx, "Publish", func(ctx context.Context) error { return src.Publish(ctx, local, "mirror/cam") })

	b, err := sdk.WaitBroadcast(ctx, local, "mirror/cam", 0)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := b.SubscribeFrom("t", 1, moq.FromOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var lastLocal uint64
	take := func(n, gen int) {
		t.Helper()
		for got := 0; got < n; {
			g, err := tr.NextGroup(ctx)
			if err != nil {
				t.Fatalf("waiting for generation %d: %v", gen, err)
			}
			seq := g.Sequence()
			if lastLocal != 0 && seq <= lastLocal {
				t.Fatalf("local group %d after %d", seq, lastLocal)
			}
			lastLocal = seq
			fgen, remote, ok := readGroup(t, ctx, g)
			if !ok || fgen != gen {
				continue // dropped with the connection, or sent before the restart
			}
			if gen == 1 && remote != seq {
				t.Fatalf("local group %d carries remote group %d", seq, remote)
			}
			got++
		}
	}
	take(5, 1)
	relay.Stop()
	stop1()
	relay.Restart()
	_, stop2 := publish(2)
	defer stop2()
	take(5, 2)
	select {
	case <-b.Done():
		t.Fatal("the local broadcast ended across the restart")
	default:
	}
	if !strings.Contains(lb.String(), "moq reconnected") {
		t.Error("no reconnection logged")
	}
}

// TestPrefixSourceFollows: every broadcast under the remote prefix
// appears locally at the template's path, with the remote frames, and
// ends when its publisher ends it.
func TestPrefixSourceFollows(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	relay := testrelay.Start(t)
	var writers sync.WaitGroup
	defer writers.Wait()
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	publish := func(path string) *moq.BroadcastWriter {
		bw := moq.NewBroadcast()
		wait := writeGroups(wctx, t, bw, "t", 1, 0, 20*time.Millisecond)
		writers.Go(wait)
		if err := relay.Origin().Publish(path, bw.Reader()); err != nil {
			t.Fatal(err)
		}
		return bw
	}
	a := publish("live/a")
	defer a.Close()
	other := publish("other/x")
	defer other.Close()

	src, err := NewPrefixSource(PrefixConfig{URL: relay.URL(), Prefix: "live", PathTemplate: "mirror/{name}", Dial: relay.Dial(), Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	local := moq.NewOrigin()
	defer local.Close()
	ann := local.Announced("")
	defer ann.Close()
	runInBackground(t, ctx, "Publish", func(ctx context.Context) error { return src.Publish(ctx, local) })

	next := func() moq.Announcement {
		t.Helper()
		an, err := ann.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return an
	}
	checkFrames := func(b *moq.BroadcastReader) {
		t.Helper()
		tr, err := b.Subscribe("t", 1)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		for {
			g, err := tr.NextGroup(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, ok := readGroup(t, ctx, g); ok {
				return
			}
		}
	}
	if an := next(); an.Path != "mirror/a" || !an.Active {
		t.Fatalf("first announcement %+v, want mirror/a active", an)
	} else {
		checkFrames(an.Broadcast)
	}
	b := publish("live/b")
	defer b.Close()
	if an := next(); an.Path != "mirror/b" || !an.Active {
		t.Fatalf("announcement %+v, want mirror/b active", an)
	} else {
		checkFrames(an.Broadcast)
	}
	_ = a.Close()
	if an := next(); an.Path != "mirror/a" || an.Active {
		t.Fatalf("announcement %+v, want mirror/a ended", an)
	}
	if _, err := local.Consume("mirror/x"); !errors.Is(err, moq.ErrNotFound) {
		t.Error("a broadcast outside the prefix was mirrored")
	}
}

// TestSourceRun: the sdk.Source form writes the remote media into the
// writer it is given: the tracks of the remote catalog and their frames.
func TestSourceRun(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	relay := testrelay.Start(t)
	track, err := sdk.OpusFromChannels(2)
	if err != nil {
		t.Fatal(err)
	}
	track.Name = "audio"
	payload := func(i int) []byte { return fmt.Appendf(nil, "opus packet %d", i) }
	runInBackground(t, ctx, "remote publisher", func(ctx context.Context) error {
		return sdk.Publish(ctx, relay.Origin(), "live/audio", sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
			tw, err := w.AddTrack(track)
			if err != nil {
				return err
			}
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				if err := tw.WriteFrame(sdk.Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: payload(i)}); err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
			}
		}), sdk.PublishOptions{Writer: sdk.WriterConfig{AudioGroupDuration: 100 * time.Millisecond}})
	})

	src, err := NewSource(Config{URL: relay.URL(), Broadcast: "live/audio", Dial: relay.Dial(), Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	local := moq.NewOrigin()
	defer local.Close()
	runInBackground(t, ctx, "Run", func(ctx context.Context) error { return sdk.Publish(ctx, local, "copy", src, sdk.PublishOptions{}) })

	got := make(chan sdk.Frame, 100)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	sink := sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
		if err := r.WaitCatalog(ctx); err != nil {
			return err
		}
		if tracks := r.Tracks(); len(tracks) != 1 || tracks[0].Name != "audio" || tracks[0].Codec != "opus" || tracks[0].Channels != 2 {
			return fmt.Errorf("tracks %+v, want the remote opus track", tracks)
		}
		tr, err := r.Subscribe("audio")
		if err != nil {
			return err
		}
		defer tr.Close()
		for {
			f, err := tr.ReadFrame(ctx)
			if err != nil {
				return nil
			}
			select {
			case got <- f:
			case <-ctx.Done():
				return nil
			}
		}
	})
	runInBackground(t, readCtx, "sink", func(ctx context.Context) error { return sdk.Consume(ctx, local, "copy", sink, sdk.ConsumeOptions{}) })
	prev := -1
	for range 10 {
		select {
		case f := <-got:
			i := int(f.PTS / (20 * time.Millisecond))
			if string(f.Payload) != string(payload(i)) {
				t.Fatalf("frame at %v is %q, want %q", f.PTS, f.Payload, payload(i))
			}
			if i <= prev {
				t.Fatalf("frame %d after %d", i, prev)
			}
			prev = i
		case <-ctx.Done():
			t.Fatal("no frames through Run")
		}
	}
}

// TestSourcePermanentErrors: a malformed URL and an untrusted certificate
// are permanent errors, which no retry cures.
func TestSourcePermanentErrors(t *testing.T) {
	if _, err := NewSource(Config{URL: "localhost:4443", Broadcast: "x"}); !sdk.IsPermanent(err) {
		t.Errorf("a URL without scheme: %v, want a permanent error", err)
	}
	if _, err := NewSource(Config{URL: "moql://localhost:4443", Broadcast: "a/../b"}); !sdk.IsPermanent(err) {
		t.Errorf("a bad path: %v, want a permanent error", err)
	}
	if _, err := NewPrefixSource(PrefixConfig{URL: "moql://localhost:4443", PathTemplate: "fixed"}); !sdk.IsPermanent(err) {
		t.Errorf("a template without {path}: %v, want a permanent error", err)
	}
	ctx := testkit.Context(t, 30*time.Second)
	relay := testrelay.Start(t)
	src, err := NewSource(Config{URL: relay.URL(), Broadcast: "x", Dial: []protocol.DialOption{protocol.WithFingerprint([32]byte{1})}, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Publish(ctx, moq.NewOrigin(), "x"); !sdk.IsPermanent(err) || !protocol.IsCertificateError(err) {
		t.Errorf("an untrusted certificate: %v, want a permanent certificate error", err)
	}
}

// TestPrefixSourceAcrossRestart: when the relay restarts, a mirrored
// broadcast that is announced again goes on in the same local broadcast,
// and one that is not ends once ReturnGrace has passed.
func TestPrefixSourceAcrossRestart(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	relay := testrelay.Start(t)
	var writers sync.WaitGroup
	defer writers.Wait()
	publish := func(path string, gen int) func() {
		bw := moq.NewBroadcast()
		wctx, stop := context.WithCancel(ctx)
		wait := writeGroups(wctx, t, bw, "t", gen, 0, 20*time.Millisecond)
		writers.Go(wait)
		if err := relay.Origin().Publish(path, bw.Reader()); err != nil {
			t.Fatal(err)
		}
		return func() {
			stop()
			_ = bw.Close()
		}
	}
	defer publish("live/a", 1)()
	defer publish("live/b", 1)()

	src, err := NewPrefixSource(PrefixConfig{URL: relay.URL(), Prefix: "live", Dial: relay.Dial(), Backoff: fastBackoff, ReturnGrace: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	local := moq.NewOrigin()
	defer local.Close()
	ann := local.Announced("")
	defer ann.Close()
	runInBackground(t, ctx, "Publish", func(ctx context.Context) error { return src.Publish(ctx, local) })
	active := map[string]*moq.BroadcastReader{}
	for len(active) < 2 {
		a, err := ann.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Active {
			t.Fatalf("%s ended", a.Path)
		}
		active[a.Path] = a.Broadcast
	}
	tr, err := active["live/a"].Subscribe("t", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	readGen := func(gen int) {
		t.Helper()
		for {
			g, err := tr.NextGroup(ctx)
			if err != nil {
				t.Fatalf("waiting for generation %d: %v", gen, err)
			}
			if got, _, ok := readGroup(t, ctx, g); ok && got == gen {
				return
			}
		}
	}
	readGen(1)
	relay.Stop()
	relay.Restart()
	defer publish("live/a", 2)()
	a, err := ann.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.Path != "live/b" || a.Active {
		t.Fatalf("announcement %+v after the restart, want live/b ended", a)
	}
	readGen(2)
	if a, ok, _ := ann.TryNext(); ok {
		t.Errorf("announcement %+v: live/a should have gone on", a)
	}
}

// TestSourceTransports: the source mirrors a broadcast over WebTransport
// and WebSocket as over raw QUIC.
func TestSourceTransports(t *testing.T) {
	for _, transport := range []string{"webtransport", "websocket"} {
		t.Run(transport, func(t *testing.T) {
			ctx := testkit.Context(t, 30*time.Second)
			relay := testrelay.Start(t)
			bw := moq.NewBroadcast()
			wctx, stop := context.WithCancel(ctx)
			wait := writeGroups(wctx, t, bw, "t", 1, 0, 20*time.Millisecond)
			defer func() {
				stop()
				wait()
				_ = bw.Close()
			}()
			if err := relay.Origin().Publish("live/cam", bw.Reader()); err != nil {
				t.Fatal(err)
			}
			src, err := NewSource(Config{URL: relay.URLFor(transport), Broadcast: "live/cam", Dial: relay.Dial(), Backoff: fastBackoff})
			if err != nil {
				t.Fatal(err)
			}
			local := moq.NewOrigin()
			defer local.Close()
			runInBackground(t, ctx, "Publish", func(ctx context.Context) error { return src.Publish(ctx, local, "live/cam") })
			b, err := sdk.WaitBroadcast(ctx, local, "live/cam", 0)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := b.Subscribe("t", 1)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			for got := 0; got < 3; {
				g, err := tr.NextGroup(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, ok := readGroup(t, ctx, g); ok {
					got++
				}
			}
		})
	}
}

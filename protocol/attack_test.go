package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// The memory attack of a hostile peer, as it was reported: every stream
// sends a type byte and a huge declared length and then nothing, so a
// receiver that allocates what is declared holds megabytes per stream for
// a few bytes sent (1 000 + 1 000 streams made the relay allocate 2.1 GB).
const (
	// attackSessions hostile sessions per transport, each opening up to
	// attackStreams bidirectional and attackStreams unidirectional
	// streams.
	attackSessions = 3
	// attackMessageSize is the length declared on control streams and as
	// a group header's length: the largest message Limits allows.
	attackMessageSize = 1 << 20
	// attackFrameSize is the frame size declared after a valid group
	// header: the largest frame Limits allows.
	attackFrameSize = 16 << 20
	// attackHeapBound bounds the growth of the live heap of the whole test
	// process (the relay, the honest peers and the attackers' own
	// sessions) while the attack is in place.
	attackHeapBound = 64 << 20
	// honestGroups is how many groups the honest publisher and subscriber
	// must exchange, byte-exact, once every attacking stream is open.
	honestGroups = 20
)

// TestMemoryAttack replays the attack on every transport while an honest
// publisher and subscriber use the same relay: several sessions open
// streams that declare 1 MiB control messages, 1 MiB group headers, and
// (after a valid group header of a subscription the relay holds) 16 MiB
// frames, and send nothing more. The relay's live heap must stay within
// attackHeapBound, and the honest groups keep arriving byte-exact.
//
// The relay's stream limit is raised to the attack's size so that what is
// tested is how memory follows the bytes that arrive, not the stream limit
// (the WebSocket transport keeps its own limit of 256 streams per kind).
func TestMemoryAttack(t *testing.T) {
	for _, kind := range []string{"quic", "webtransport", "websocket"} {
		t.Run(kind, func(t *testing.T) { testMemoryAttack(t, kind) })
	}
}

func testMemoryAttack(t *testing.T, kind string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Small caches keep the honest traffic's own footprint out of the
	// measurement; a long lag bound keeps a loaded machine from turning
	// scheduling delays into dropped honest groups.
	cache := moq.CacheConfig{MaxBytes: 256 << 10}
	limits := Limits{MaxStreams: 1024, MaxGroupLag: time.Minute}
	srv := testServer(t, ServerConfig{Limits: limits, Cache: cache})

	exchanged, stop, done := startHonestExchange(t, ctx, srv, kind, cache)
	before, stackBefore := liveHeap(), stackInuse()

	var bidi, uni int
	for i := range attackSessions {
		b, u := attack(t, ctx, srv, kind, i)
		bidi += b
		uni += u
	}

	// The attack is in place: the honest peers must go on, and the heap
	// is sampled meanwhile.
	peak, stack := liveHeap(), stackInuse()
	target := exchanged.Load() + honestGroups
	for exchanged.Load() < target && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		peak = max(peak, liveHeap())
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("honest exchange during the attack: %v", err)
	}
	if n := exchanged.Load(); n < target {
		t.Fatalf("honest peers exchanged %d groups, want %d (%d after the attack began)", n, target, honestGroups)
	}
	growth := int64(peak) - int64(before)
	t.Logf("%s: %d sessions opened %d bidirectional and %d unidirectional streams declaring %d MiB messages and %d MiB frames (%d bytes sent); live heap grew by %.1f MiB (bound %d MiB), goroutine stacks by %.1f MiB",
		kind, attackSessions, bidi, uni, attackMessageSize>>20, attackFrameSize>>20, attackBytes(bidi, uni),
		float64(growth)/(1<<20), attackHeapBound>>20, float64(int64(stack)-int64(stackBefore))/(1<<20))
	if growth > attackHeapBound {
		t.Errorf("%s: live heap grew by %d MiB under the attack, bound %d MiB", kind, growth>>20, attackHeapBound>>20)
	}
	if bidi < attackSessions*min(attackStreams, 200) || uni < attackSessions*min(attackStreams, 200) {
		t.Errorf("%s: only %d bidirectional and %d unidirectional attack streams opened", kind, bidi, uni)
	}
}

// liveHeap returns the live heap after a collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// stackInuse returns the memory of goroutine stacks, which a stream's
// goroutine costs besides its heap (reported, not bounded, here).
func stackInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.StackInuse
}

// attackBytes estimates what the attack sent: each stream a type and a
// length, a group stream also a header.
func attackBytes(bidi, uni int) int {
	return bidi*(1+4) + uni/2*(1+4) + (uni-uni/2)*(1+1+1+4+1+4)
}

// startHonestExchange publishes live/honest through the relay over kind and
// subscribes to it over kind, then exchanges groups in lock step, checking
// every frame, until stop is closed. exchanged counts the groups received
// whole and byte-exact; done yields the first error, or nil.
func startHonestExchange(t *testing.T, ctx context.Context, srv *Server, kind string, cache moq.CacheConfig) (exchanged *atomic.Int64, stop chan struct{}, done chan error) {
	t.Helper()
	const frames = 5
	origin := moq.NewOrigin()
	t.Cleanup(origin.Close)
	bw := moq.NewBroadcastWithCache(cache)
	video, err := bw.CreateTrack("video", 128)
	if err != nil {
		t.Fatal(err)
	}
	if err := origin.Publish("live/honest", bw.Reader()); err != nil {
		t.Fatal(err)
	}
	dialTest(t, ctx, srv, kind, Lite04, WithPublish(origin), WithCache(cache))
	waitAnnounced(t, ctx, srv.Origin(), "live/honest")
	sub := dialTest(t, ctx, srv, kind, Lite04, WithCache(cache))

	write := func(g int) error {
		gw, err := video.AppendGroup()
		if err != nil {
			return err
		}
		for f := range frames {
			if err := gw.WriteFrame(frameBytes(g, f)); err != nil {
				return err
			}
		}
		return gw.Close()
	}
	if err := write(0); err != nil {
		t.Fatal(err)
	}
	tr, err := sub.Consume("live/honest").Subscribe("video", 128)
	if err != nil {
		t.Fatal(err)
	}
	read := func(g int) error {
		gr, err := tr.NextGroup(ctx)
		if err != nil {
			return fmt.Errorf("group %d: %w", g, err)
		}
		defer gr.Close()
		if gr.Sequence() != uint64(g) {
			return fmt.Errorf("got group %d, want %d", gr.Sequence(), g)
		}
		for f := range frames {
			p, err := gr.NextFrame(ctx)
			if err != nil {
				return fmt.Errorf("group %d frame %d: %w", g, f, err)
			}
			if !bytes.Equal(p, frameBytes(g, f)) {
				return fmt.Errorf("group %d frame %d: %d bytes differ from the %d sent", g, f, len(p), len(frameBytes(g, f)))
			}
		}
		if _, err := gr.NextFrame(ctx); !errors.Is(err, io.EOF) {
			return fmt.Errorf("group %d after its last frame: %v, want io.EOF", g, err)
		}
		return nil
	}
	if err := read(0); err != nil {
		t.Fatal(err)
	}

	exchanged = new(atomic.Int64)
	stop = make(chan struct{})
	done = make(chan error, 1)
	go func() {
		defer tr.Close()
		for g := 1; ; g++ {
			select {
			case <-stop:
				done <- nil
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := write(g); err != nil {
				done <- err
				return
			}
			if err := read(g); err != nil {
				done <- err
				return
			}
			exchanged.Add(1)
		}
	}()
	return exchanged, stop, done
}

// attack connects hostile session i over kind and opens up to
// attackStreams streams of each kind: bidirectional ones of every type the
// relay serves, each a type and a 1 MiB message length; unidirectional
// ones alternately a group stream type with a 1 MiB header length, and a
// valid group header of the relay's subscription to the attacker followed
// by a 16 MiB frame size. It returns once the relay has read every group
// header, with the number of streams opened of each kind.
func attack(t *testing.T, ctx context.Context, srv *Server, kind string, i int) (bidi, uni int) {
	t.Helper()
	// The attacker publishes a track and the relay subscribes to it, so
	// its group streams name a subscription that exists: the relay's
	// first upstream subscription on a session has id 0.
	path := fmt.Sprintf("attack/%d", i)
	origin := moq.NewOrigin()
	t.Cleanup(origin.Close)
	bw := moq.NewBroadcast()
	if _, err := bw.CreateTrack("video", 0); err != nil {
		t.Fatal(err)
	}
	if err := origin.Publish(path, bw.Reader()); err != nil {
		t.Fatal(err)
	}
	sess := dialTest(t, ctx, srv, kind, Lite04, WithPublish(origin))
	relayTrack, err := waitAnnounced(t, ctx, srv.Origin(), path).Subscribe("video", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relayTrack.Close)
	for sess.Stats().SubscriptionsServed == 0 {
		if ctx.Err() != nil {
			t.Fatal("the relay never subscribed to the attacker")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// An open blocks once the relay's stream limit is reached.
	opened := func(open func(context.Context) error) bool {
		octx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		return open(octx) == nil
	}
	types := []wire.StreamType{wire.StreamAnnounce, wire.StreamSubscribe, wire.StreamProbe, wire.StreamGoaway}
	for j := 0; j < attackStreams && opened(func(ctx context.Context) error {
		str, err := sess.conn.OpenStream(ctx)
		if err != nil {
			return err
		}
		msg := wire.AppendStreamType(nil, types[j%len(types)])
		_, err = str.Write(wire.AppendVarint(msg, attackMessageSize))
		return err
	}); j++ {
		bidi++
	}
	const firstSeq = 1 << 20
	lastSeq := uint64(0)
	for j := 0; j < attackStreams && opened(func(ctx context.Context) error {
		str, err := sess.conn.OpenUniStream(ctx)
		if err != nil {
			return err
		}
		var msg []byte
		if j%2 == 0 {
			msg = wire.AppendVarint([]byte{wire.UniGroup}, attackMessageSize)
		} else {
			seq := uint64(firstSeq + j)
			msg = wire.AppendGroupHeader(nil, wire.Group{SubscribeID: 0, Sequence: seq})
			msg = wire.AppendFrameHeader(msg, attackFrameSize)
			lastSeq = seq
		}
		_, err = str.Write(msg)
		return err
	}); j++ {
		uni++
	}

	// Every valid group header was read once the last group exists.
	for {
		if seq, ok := relayTrack.Latest(); ok && seq >= lastSeq {
			return bidi, uni
		}
		if ctx.Err() != nil {
			seq, _ := relayTrack.Latest()
			t.Fatalf("the relay did not read the attacker's group headers: latest group %d, want %d", seq, lastSeq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

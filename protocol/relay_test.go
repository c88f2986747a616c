package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// publishTrack publishes broadcast path with one track into a new moq.Origin
// and connects it to the relay.
func publishTrack(t *testing.T, ctx context.Context, srv *Server, kind, path, track string, opts ...DialOption) (*Session, *moq.BroadcastWriter, *moq.TrackWriter) {
	t.Helper()
	origin := moq.NewOrigin()
	t.Cleanup(origin.Close)
	bw := moq.NewBroadcast()
	tw, err := bw.CreateTrack(track, 128)
	if err != nil {
		t.Fatal(err)
	}
	if err := origin.Publish(path, bw.Reader()); err != nil {
		t.Fatal(err)
	}
	sess := dialTest(t, ctx, srv, kind, Lite04, append(opts, WithPublish(origin))...)
	return sess, bw, tw
}

// waitAnnounced blocks until the relay's moq.Origin has path.
func waitAnnounced(t *testing.T, ctx context.Context, o *moq.Origin, path string) *moq.BroadcastReader {
	t.Helper()
	ann := o.Announced(path)
	defer ann.Close()
	for {
		a, err := ann.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", path, err)
		}
		if a.Active && a.Path == path {
			return a.Broadcast
		}
	}
}

// TestRelayFanout: one publisher, 100 subscribers on one relay. Every
// subscriber receives every frame of every group it joined, and the
// publisher sees exactly one subscription.
func TestRelayFanout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// This test is about fan-out completeness, not overload: a generous
	// lag bound keeps a slow machine (or the race detector) from turning
	// scheduling delays into dropped groups.
	noDrops := Limits{MaxGroupLag: time.Minute}
	srv := testServer(t, ServerConfig{Limits: noDrops})
	pub, _, tw := publishTrack(t, ctx, srv, "quic", "live/fan", "video", WithLimits(noDrops))
	waitAnnounced(t, ctx, srv.Origin(), "live/fan")

	const subscribers, groups, frames = 100, 8, 30
	write := func(g int, first bool) *moq.GroupWriter {
		gw, err := tw.AppendGroup()
		if err != nil {
			t.Fatal(err)
		}
		for f := 0; f < frames; f++ {
			if first && f == 1 {
				return gw // the rest of group 0 comes once everyone joined
			}
			if err := gw.WriteFrame(frameBytes(g, f)); err != nil {
				t.Fatal(err)
			}
		}
		_ = gw.Close()
		return nil
	}
	open0 := write(0, true)

	var joined sync.WaitGroup
	joined.Add(subscribers)
	errs := make(chan error, subscribers)
	var wg sync.WaitGroup
	for i := 0; i < subscribers; i++ {
		// Groups may overtake each other on the way (newer groups are sent
		// first); a long reorder wait makes the reader deliver every group
		// that arrives, in order, however loaded the machine.
		sess := dialTest(t, ctx, srv, "quic", Lite04, WithCache(moq.CacheConfig{ReorderWait: time.Minute}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- receiveAll(ctx, sess.Consume("live/fan"), groups, frames, joined.Done)
		}()
	}
	joined.Wait()
	for f := 1; f < frames; f++ {
		if err := open0.WriteFrame(frameBytes(0, f)); err != nil {
			t.Fatal(err)
		}
	}
	_ = open0.Close()
	for g := 1; g < groups; g++ {
		write(g, false)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := pub.Stats().SubscriptionsServed; n != 1 {
		t.Errorf("publisher served %d subscriptions for 100 subscribers, want exactly 1", n)
	}

}

// receiveAll subscribes to "video" and checks groups 0..groups-1 arrive
// complete and byte-exact; joined is called after the first frame.
func receiveAll(ctx context.Context, b *moq.BroadcastReader, groups, frames int, joined func()) error {
	tr, err := b.Subscribe("video", 128)
	if err != nil {
		joined()
		return err
	}
	defer tr.Close()
	for g := 0; g < groups; g++ {
		gr, err := tr.NextGroup(ctx)
		if err != nil {
			if g == 0 {
				joined()
			}
			return fmt.Errorf("group %d: %w", g, err)
		}
		if gr.Sequence() != uint64(g) {
			return fmt.Errorf("got group %d, want %d", gr.Sequence(), g)
		}
		for f := 0; f < frames; f++ {
			p, err := gr.NextFrame(ctx)
			if g == 0 && f == 0 {
				joined()
			}
			if err != nil {
				return fmt.Errorf("group %d frame %d: %w", g, f, err)
			}
			if !bytes.Equal(p, frameBytes(g, f)) {
				return fmt.Errorf("group %d frame %d differs", g, f)
			}
		}
		gr.Close()
	}
	return nil
}

// TestLateJoin: a subscriber arriving mid-stream starts at the latest group,
// from its first frame, then follows live.
func TestLateJoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{})
	_, _, tw := publishTrack(t, ctx, srv, "webtransport", "live/late", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/late")
	for g := 0; g < 5; g++ {
		gw, _ := tw.AppendGroup()
		for f := 0; f < 3; f++ {
			_ = gw.WriteFrame(frameBytes(g, f))
		}
		_ = gw.Close()
	}
	g5, _ := tw.AppendGroup()
	_ = g5.WriteFrame(frameBytes(5, 0))
	_ = g5.WriteFrame(frameBytes(5, 1))

	sub := dialTest(t, ctx, srv, "quic", Lite03)
	tr, err := sub.Consume("live/late").Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	gr, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if gr.Sequence() != 5 {
		t.Fatalf("late joiner started at group %d, want the latest, 5", gr.Sequence())
	}
	for f := 0; f < 3; f++ {
		if f == 2 {
			_ = g5.WriteFrame(frameBytes(5, 2))
			_ = g5.Close()
		}
		p, err := gr.NextFrame(ctx)
		if err != nil || !bytes.Equal(p, frameBytes(5, f)) {
			t.Fatalf("group 5 frame %d: err %v, equal %v", f, err, bytes.Equal(p, frameBytes(5, f)))
		}
	}
	g6, _ := tw.AppendGroup()
	_ = g6.WriteFrame(frameBytes(6, 0))
	_ = g6.Close()
	gr, err = tr.NextGroup(ctx)
	if err != nil || gr.Sequence() != 6 {
		t.Fatalf("after the late join got group %v (err %v), want 6", gr, err)
	}
}

// rawSubscriber is a peer that speaks MOQ Lite by hand (Lite04, raw QUIC):
// it can subscribe and then never read, or send garbage.
func rawDial(t *testing.T, ctx context.Context, srv *Server) transport.Session {
	t.Helper()
	conn, err := transport.DialQUIC(ctx, srv.Addr().String(), "localhost", transport.DialConfig{
		TLSConfig: transport.PinnedTLSConfig(srv.Fingerprint()),
		Protocols: []string{"moq-lite-04"},
		// Small windows: a stalled raw peer should not itself buffer much
		// (it lives in the test process, whose heap some tests measure).
		QUICConfig: &quic.Config{
			InitialStreamReceiveWindow:     64 << 10,
			MaxStreamReceiveWindow:         64 << 10,
			InitialConnectionReceiveWindow: 256 << 10,
			MaxConnectionReceiveWindow:     256 << 10,
			// Few streams: a peer that never accepts one makes the relay's
			// stream opens block, not only its writes.
			MaxIncomingUniStreams: 4,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseWithError(0, "") })
	return conn
}

func rawSubscribe(t *testing.T, ctx context.Context, conn transport.Session, id uint64, broadcast, track string) transport.Stream {
	t.Helper()
	str, err := conn.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := wire.AppendStreamType(nil, wire.StreamSubscribe)
	msg = wire.AppendSubscribe(msg, wire.Lite04, wire.Subscribe{ID: id, Broadcast: broadcast, Track: track, Priority: 1})
	if _, err := str.Write(msg); err != nil {
		t.Fatal(err)
	}
	return str
}

// TestSlowReader: a subscriber that never reads its group streams does not
// grow the relay's memory past its budget (the track cache plus a bounded
// number of in-flight groups), and a fast subscriber of the same track keeps
// receiving every group.
func TestSlowReader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const cacheBytes, inflight = 1 << 20, 4
	cache := moq.CacheConfig{MaxBytes: cacheBytes}
	srv := testServer(t, ServerConfig{Cache: cache, Limits: Limits{MaxInflightGroups: inflight}})

	origin := moq.NewOrigin()
	defer origin.Close()
	bw := moq.NewBroadcastWithCache(cache)
	tw, _ := bw.CreateTrack("video", 128)
	_ = origin.Publish("live/slow", bw.Reader())
	pub := dialTest(t, ctx, srv, "quic", Lite04, WithPublish(origin))
	waitAnnounced(t, ctx, srv.Origin(), "live/slow")

	// The stalled peer: subscribes, then never accepts a uni stream.
	stalled := rawDial(t, ctx, srv)
	rawSubscribe(t, ctx, stalled, 0, "live/slow", "video")

	fast := dialTest(t, ctx, srv, "quic", Lite04, WithCache(cache))
	sessions := relaySessions(t, ctx, srv, 3) // publisher, stalled, fast
	tr, err := fast.Consume("live/slow").Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// The subscriptions (the stalled peer's and the fast one's) reach the
	// relay, and the relay's reaches the publisher, before the first
	// group, so that every group is the fast subscriber's to receive.
	served := func() (n uint64) {
		for _, sess := range sessions {
			n += sess.Stats().SubscriptionsServed
		}
		return n
	}
	for pub.Stats().SubscriptionsServed == 0 || served() < 2 {
		select {
		case <-ctx.Done():
			t.Fatal("the subscription never reached the publisher")
		case <-time.After(time.Millisecond):
		}
	}

	// 25 MiB in total, 25 times the cache budget, paced at 50 groups/s
	// (~100 Mbit/s), well within what loopback QUIC carries even under the
	// race detector: any loss is the stalled peer's doing.
	const groups, frames, size = 100, 32, 8 << 10
	const groupBytes = frames * size
	payload := bytes.Repeat([]byte{0xab}, size)
	liveHeap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := liveHeap()
	var peak uint64
	received := make(chan int, 1)
	go func() {
		n := 0
		defer func() { received <- n }()
		for {
			gr, err := tr.NextGroup(ctx)
			if err != nil {
				return
			}
			for {
				if _, err := gr.NextFrame(ctx); err != nil {
					break
				}
			}
			n++
		}
	}()
	for g := 0; g < groups; g++ {
		gw, _ := tw.AppendGroup()
		for f := 0; f < frames; f++ {
			_ = gw.WriteFrame(payload)
		}
		_ = gw.Close()
		if g%10 == 9 {
			peak = max(peak, liveHeap())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = tw.Close() // the fast reader ends after the last group
	n := <-received
	if n != groups {
		t.Errorf("fast subscriber received %d of %d groups while another peer stalled, want every group", n, groups)
	}
	// Three track caches live in this process (publisher, relay, fast
	// subscriber), each at most its budget plus the group being written;
	// the stalled subscription pins at most its in-flight groups; 8 MiB
	// covers QUIC buffers and slab slack.
	budget := 3*(cacheBytes+groupBytes) + inflight*groupBytes + 8<<20
	growth := int64(peak) - int64(before)
	if growth > int64(budget) {
		t.Errorf("live heap grew by %d MiB while moving %d MiB past a stalled reader; budget %d MiB",
			growth>>20, groups*groupBytes>>20, budget>>20)
	}
	var dropped uint64
	for _, sess := range sessions {
		dropped += sess.Stats().GroupsDropped
	}
	if dropped == 0 {
		t.Error("the relay dropped no group for the stalled peer")
	}
	t.Logf("live heap growth %d MiB (budget %d MiB), fast subscriber got %d/%d groups, relay dropped %d groups",
		growth>>20, budget>>20, n, groups, dropped)
}

// TestMalformedPeer: garbage on each stream type ends only that stream; the
// session (and the relay) keep working.
func TestMalformedPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{})
	_, _, tw := publishTrack(t, ctx, srv, "quic", "live/ok", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/ok")
	gw, _ := tw.AppendGroup()
	_ = gw.WriteFrame([]byte("still alive"))
	_ = gw.Close()

	conn := rawDial(t, ctx, srv)
	sessions := relaySessions(t, ctx, srv, 2) // the publisher's and conn's
	garbage := map[string][]byte{
		"unknown bidi type": {0x3f, 1, 2, 3},
		"announce":          {0x01, 0x05, 0xff, 0xff},
		"announce too long": append([]byte{0x01, 0x80, 0x20, 0x00, 0x00}, make([]byte, 16)...),
		"subscribe":         {0x02, 0x03, 0x00, 0x40},
		"subscribe bool":    {0x02, 0x0a, 0x00, 0x01, 'x', 0x01, 'y', 0x01, 0x07, 0, 0, 0},
		"fetch":             {0x03, 0x00},
		"goaway":            {0x05, 0x09, 0x01},
		"session compat":    {0x20, 0x00, 0x02, 0x01},
	}
	for name, b := range garbage {
		str, err := conn.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = str.Write(b)
		_ = str.Close()
		_ = str.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(str)
		var se *transport.StreamError
		if !errors.As(err, &se) {
			t.Errorf("%s: stream ended with %v, want a reset", name, err)
		}
	}
	for _, b := range [][]byte{{0x07, 1, 2}, {0x00, 0xff}, {0x00, 0x02, 0x09, 0x00, 0x03, 'a'}} {
		uni, err := conn.OpenUniStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = uni.Write(b)
		_ = uni.Close()
	}
	// The same connection can still subscribe and receive.
	str := rawSubscribe(t, ctx, conn, 9, "live/ok", "video")
	r := wire.NewReader(str)
	if typ, err := r.ReadVarint(); err != nil || typ != wire.ResponseOK {
		t.Fatalf("subscribe after garbage: response type %d, err %v", typ, err)
	}
	uni, err := conn.AcceptUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gr := wire.NewReader(uni)
	if b, err := gr.ReadByte(); err != nil || b != wire.UniGroup {
		t.Fatalf("group stream type %d, err %v", b, err)
	}
	hdr, err := gr.ReadMessage(64)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := wire.DecodeGroup(hdr); err != nil || g.SubscribeID != 9 {
		t.Fatalf("group header %+v, err %v", g, err)
	}
	n, _ := gr.ReadVarint()
	p := make([]byte, n)
	if err := gr.ReadFull(p); err != nil || string(p) != "still alive" {
		t.Fatalf("frame %q, err %v", p, err)
	}
	checkSessionsUp(t, srv, sessions, "after malformed messages")
}

// relaySessions waits, bounded by ctx, until the server runs exactly n
// sessions and returns them: a raw QUIC dial can return before the relay
// registers its session, so a loop over srv.Sessions() right after it
// could check nothing.
func relaySessions(t *testing.T, ctx context.Context, srv *Server, n int) []*Session {
	t.Helper()
	waitSessions(t, ctx, srv, n)
	return srv.Sessions()
}

// checkSessionsUp fails if any of sessions has ended or is no longer served
// (an ended session leaves srv.Sessions(), so checking only what is listed
// there would pass vacuously).
func checkSessionsUp(t *testing.T, srv *Server, sessions []*Session, what string) {
	t.Helper()
	served := map[*Session]bool{}
	for _, s := range srv.Sessions() {
		served[s] = true
	}
	for _, s := range sessions {
		select {
		case <-s.Done():
			t.Fatalf("a relay session ended %s: %v", what, s.Err())
		default:
		}
		if !served[s] {
			t.Fatalf("a relay session is no longer served %s", what)
		}
	}
}

// TestTrackEndKeepsLastGroups: a publisher that writes a burst of groups
// and ends its track at once has every group delivered through the relay,
// although the FIN of its subscription can overtake the last group
// streams. Repeated, since the race is one of packet scheduling.
func TestTrackEndKeepsLastGroups(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{})
	local := moq.NewOrigin()
	defer local.Close()
	dialTest(t, ctx, srv, "quic", Lite04, WithConsume(local))
	const groups, frames = 5, 20
	for round := range 20 {
		path := fmt.Sprintf("live/end%d", round)
		pub, bw, tw := publishTrack(t, ctx, srv, "quic", path, "video")
		b := waitAnnounced(t, ctx, local, path)
		tr, err := b.Subscribe("video", 0)
		if err != nil {
			t.Fatal(err)
		}
		// The subscription must reach the publisher before the burst.
		deadline := time.Now().Add(5 * time.Second)
		for pub.Stats().SubscriptionsServed == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		for g := range groups {
			gw, err := tw.AppendGroup()
			if err != nil {
				t.Fatal(err)
			}
			for f := range frames {
				_ = gw.WriteFrame(frameBytes(g, f))
			}
			_ = gw.Close()
		}
		_ = bw.Close()
		var got []uint64
		for {
			g, err := tr.NextGroup(ctx)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("round %d: %v after groups %v", round, err, got)
				}
				break
			}
			n := 0
			for {
				if _, err := g.NextFrame(ctx); err != nil {
					break
				}
				n++
			}
			if n != frames {
				t.Fatalf("round %d: group %d with %d of %d frames", round, g.Sequence(), n, frames)
			}
			got = append(got, g.Sequence())
		}
		tr.Close()
		if len(got) != groups {
			t.Fatalf("round %d: groups %v of %d", round, got, groups)
		}
	}
}

// TestSubscribeFromOldestAcrossPeers: a reader that subscribes FromOldest
// to a track fetched through the relay gets the groups the publisher
// wrote before anyone subscribed (the SUBSCRIBE carries start group 0 on
// Lite03 and Lite04, and both the relay and the publisher serve it from
// their oldest cached group); FromLatest gets the latest only, and so
// does FromOldest on Lite02, which has no start group.
func TestSubscribeFromOldestAcrossPeers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		name string
		v    Version
		from moq.StartPoint
		want []uint64
	}{
		{"oldest Lite04", Lite04, moq.FromOldest, []uint64{0, 1, 2, 3, 4}},
		{"oldest Lite03", Lite03, moq.FromOldest, []uint64{0, 1, 2, 3, 4}},
		{"latest Lite04", Lite04, moq.FromLatest, []uint64{4}},
		{"oldest Lite02", Lite02, moq.FromOldest, []uint64{4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := testServer(t, ServerConfig{})
			path := "live/early"
			pubOrigin := moq.NewOrigin()
			defer pubOrigin.Close()
			bw := moq.NewBroadcast()
			tw, err := bw.CreateTrack("video", 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := pubOrigin.Publish(path, bw.Reader()); err != nil {
				t.Fatal(err)
			}
			dialTest(t, ctx, srv, "quic", c.v, WithPublish(pubOrigin))
			for g := range 5 {
				gw, err := tw.AppendGroup()
				if err != nil {
					t.Fatal(err)
				}
				_ = gw.WriteFrame(frameBytes(g, 0))
				_ = gw.Close()
			}
			local := moq.NewOrigin()
			defer local.Close()
			dialTest(t, ctx, srv, "quic", c.v, WithConsume(local))
			b := waitAnnounced(t, ctx, local, path)
			tr, err := b.SubscribeFrom("video", 0, c.from)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			var got []uint64
			for len(got) < len(c.want) {
				g, err := tr.NextGroup(ctx)
				if err != nil {
					t.Fatalf("after groups %v: %v", got, err)
				}
				got = append(got, g.Sequence())
			}
			// Nothing more arrives: the publisher wrote 5 groups.
			_ = bw.Close()
			if g, err := tr.NextGroup(ctx); err == nil {
				got = append(got, g.Sequence())
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("groups %v, want %v", got, c.want)
			}
		})
	}
}

package protocol

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// FuzzPeerStream feeds a stream's bytes, as a peer sends them, to what a
// session does with every stream the peer opens: serveBidi for a
// bidirectional stream (its type, then ANNOUNCE_INTEREST, SUBSCRIBE,
// PROBE, GOAWAY or anything else), receiveGroup for a unidirectional one
// (its type, the group header of a subscription the session holds, then
// frames). Whatever the bytes, the stream ends (the fake stream reports the
// end after them), nothing panics, and every byte reserved from the
// session's buffer budgets is given back.
//
// This is the code that parses the first bytes of every stream, on every
// transport. On WebTransport the stream header before them (the signal
// value 0x41 or 0x54 and the session ID) is parsed by webtransport-go,
// which hands the stream over only after it; our wtReceiveStream and
// wtStream pass Read through unchanged, so the bytes reach this code as
// they do here.
func FuzzPeerStream(f *testing.F) {
	v4 := wire.Lite04
	bidi := func(typ wire.StreamType, msg []byte) []byte {
		return append(wire.AppendStreamType(nil, typ), msg...)
	}
	group := wire.AppendGroupHeader(nil, wire.Group{SubscribeID: 0, Sequence: 3})
	frames := group
	for _, n := range []int{0, 5, 300, 5000} {
		frames = wire.AppendFrameHeader(frames, uint64(n))
		frames = append(frames, bytes.Repeat([]byte{byte(n)}, n)...)
	}
	for _, seed := range []struct {
		uni  bool
		v    Version
		data []byte
	}{
		{false, v4, bidi(wire.StreamAnnounce, wire.AppendAnnounceInterest(nil, v4, wire.AnnounceInterest{Prefix: "live"}))},
		{false, wire.Lite02, bidi(wire.StreamAnnounce, wire.AppendAnnounceInterest(nil, wire.Lite02, wire.AnnounceInterest{Prefix: ""}))},
		{false, v4, bidi(wire.StreamSubscribe, wire.AppendSubscribe(nil, v4, wire.Subscribe{ID: 1, Broadcast: "live/a", Track: "video", Priority: 2}))},
		{false, wire.Lite01, bidi(wire.StreamSubscribe, wire.AppendSubscribe(nil, wire.Lite01, wire.Subscribe{ID: 1, Broadcast: "b", Track: "t"}))},
		{false, v4, wire.AppendStreamType(nil, wire.StreamProbe)},
		{false, wire.Lite02, wire.AppendStreamType(nil, wire.StreamProbe)},
		{false, v4, bidi(wire.StreamGoaway, wire.AppendGoaway(nil, wire.Goaway{URI: "https://elsewhere"}))},
		{false, v4, bidi(wire.StreamFetch, wire.AppendFetch(nil, wire.Fetch{Broadcast: "a", Track: "b", Group: 1}))},
		{false, v4, wire.AppendVarint(bidi(wire.StreamSubscribe, nil), 1<<20)},
		{false, v4, append(wire.AppendVarint(bidi(wire.StreamAnnounce, nil), 20_000), make([]byte, 9000)...)},
		{false, v4, []byte{0x3f, 1, 2, 3}},
		{false, v4, nil},
		{true, v4, frames},
		{true, v4, frames[:len(frames)-100]},
		{true, v4, wire.AppendFrameHeader(append([]byte(nil), group...), 16<<20)},
		{true, v4, append(wire.AppendFrameHeader(append([]byte(nil), group...), 20_000), make([]byte, 12_000)...)},
		{true, v4, wire.AppendVarint([]byte{wire.UniGroup}, 1<<20)},
		{true, v4, wire.AppendGroupHeader(nil, wire.Group{SubscribeID: 9, Sequence: 1})},
		{true, v4, []byte{0x07, 1, 2}},
		{true, v4, nil},
	} {
		f.Add(seed.uni, uint8(seed.v), seed.data)
	}
	f.Fuzz(func(t *testing.T, uni bool, version uint8, data []byte) {
		v := AllVersions[int(version)%len(AllVersions)]
		s, tw := fuzzSession(v)
		defer func() { _ = tw.Close() }()
		str := &fuzzStream{data: bytes.NewReader(data)}
		if uni {
			if !s.recv.add(str) {
				t.Fatal("stream set refused a stream")
			}
			after := make(chan struct{})
			close(after)
			s.receiveGroup(str, after, make(chan struct{}))
		} else {
			s.serveBidi(str)
		}
		s.cancel(errSessionClosed)
		s.wg.Wait()
		s.probes.close()
		if own, shared := s.mem.own.used.Load(), s.mem.shared.used.Load(); own != 0 || shared != 0 {
			t.Fatalf("%d bytes of the session budget and %d of the shared one still reserved after the stream ended", own, shared)
		}
	})
}

// fuzzSession is a running session with small limits (so that short
// inputs reach them) on a connection that carries nothing, holding one
// upstream subscription, id 0, into the returned track.
func fuzzSession(v Version) (*Session, *moq.TrackWriter) {
	s := &Session{
		conn:     fuzzConn{},
		version:  v,
		server:   true,
		limits:   Limits{MaxMessageSize: 64 << 10, MaxFrameSize: 256 << 10, MaxSessionBuffer: 8 << 10, MaxServerBuffer: 1 << 20}.withDefaults(),
		log:      slog.New(slog.DiscardHandler),
		upstream: make(map[uint64]*upstreamSub),
		remote:   make(map[string]*moq.BroadcastWriter),
		consumed: make(map[string]*moq.BroadcastWriter),
		own:      make(map[*moq.BroadcastReader]struct{}),
		probes:   &probeClock{},
	}
	s.mem = sessionBudget{own: newByteBudget("session", s.limits.MaxSessionBuffer), shared: newByteBudget("server", s.limits.MaxServerBuffer)}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	tw, _ := moq.NewBroadcast().CreateTrack("video", 0)
	s.upstream[0] = &upstreamSub{track: tw, ctx: s.ctx}
	return s, tw
}

// fuzzStream is a peer stream whose peer sent data and then its FIN; what
// the session writes is discarded, and a stop or reset ends it at once.
type fuzzStream struct {
	mu      sync.Mutex
	data    *bytes.Reader
	stopped bool
}

var _ transport.Stream = (*fuzzStream)(nil)

var errFuzzStopped = &transport.StreamError{Code: 0}

func (s *fuzzStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return 0, errFuzzStopped
	}
	return s.data.Read(p)
}

func (s *fuzzStream) CancelRead(uint64) {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

func (s *fuzzStream) Write(p []byte) (int, error)     { return len(p), nil }
func (s *fuzzStream) Close() error                    { return nil }
func (s *fuzzStream) CancelWrite(uint64)              {}
func (s *fuzzStream) SetPriority(int8)                {}
func (s *fuzzStream) SetReadDeadline(time.Time) error { return nil }
func (s *fuzzStream) Context() context.Context        { return context.Background() }

// fuzzConn is a connection that opens and accepts nothing.
type fuzzConn struct{}

var errFuzzConn = errors.New("fuzz connection carries nothing")

func (fuzzConn) OpenStream(context.Context) (transport.Stream, error) { return nil, errFuzzConn }
func (fuzzConn) OpenUniStream(context.Context) (transport.SendStream, error) {
	return nil, errFuzzConn
}
func (fuzzConn) AcceptStream(context.Context) (transport.Stream, error) { return nil, errFuzzConn }
func (fuzzConn) AcceptUniStream(context.Context) (transport.ReceiveStream, error) {
	return nil, errFuzzConn
}
func (fuzzConn) CloseWithError(uint64, string) error { return nil }
func (fuzzConn) Context() context.Context            { return context.Background() }
func (fuzzConn) Protocol() string                    { return "moq-lite-04" }
func (fuzzConn) Kind() string                        { return transport.KindQUIC }
func (fuzzConn) Stats() transport.Stats              { return transport.Stats{} }
func (fuzzConn) RemoteAddr() net.Addr                { return &net.UDPAddr{} }
func (fuzzConn) Request() *transport.ConnectRequest  { return &transport.ConnectRequest{} }

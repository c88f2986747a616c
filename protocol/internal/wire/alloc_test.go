package wire

import (
	"strings"
	"testing"
)

// TestAppendAllocs checks that the encoders allocate nothing when the
// destination has room, including bodies long enough to need a multi-byte
// length.
func TestAppendAllocs(t *testing.T) {
	buf := make([]byte, 0, 1<<16)
	long := strings.Repeat("x", 300)
	sub := Subscribe{ID: 1 << 40, Broadcast: "demo/bbb", Track: "video", Priority: 2, Ordered: true, Start: BoundAt(9)}
	longSub := sub
	longSub.Track = long
	cases := map[string]func(){
		"AppendGroupHeader":     func() { _ = AppendGroupHeader(buf[:0], Group{SubscribeID: 3, Sequence: 1 << 20}) },
		"AppendFrameHeader":     func() { _ = AppendFrameHeader(buf[:0], 1<<20) },
		"AppendSubscribe":       func() { _ = AppendSubscribe(buf[:0], Lite04, sub) },
		"AppendSubscribe long":  func() { _ = AppendSubscribe(buf[:0], Lite02, longSub) },
		"AppendSubscribeOK":     func() { _ = AppendSubscribeOK(buf[:0], Lite04, SubscribeOK{Priority: 2}) },
		"AppendSubscribeDrop":   func() { _ = AppendSubscribeDrop(buf[:0], Lite03, SubscribeDrop{Start: 1, End: 2}) },
		"AppendSubscribeUpdate": func() { _ = AppendSubscribeUpdate(buf[:0], Lite04, SubscribeUpdate{Priority: 1}) },
		"AppendAnnounce": func() {
			_ = AppendAnnounce(buf[:0], Lite04, Announce{Active: true, Suffix: long, HopCount: 2, HopIDs: []uint64{1}})
		},
		"AppendAnnounceInit": func() { _ = AppendAnnounceInit(buf[:0], Lite02, AnnounceInit{Suffixes: []string{long, "a"}}) },
		"AppendAnnounceInterest": func() {
			_ = AppendAnnounceInterest(buf[:0], Lite04, AnnounceInterest{Prefix: "demo", ExcludeHop: 7})
		},
		"AppendProbe":       func() { _ = AppendProbe(buf[:0], Lite04, Probe{BitrateBps: 1e6, RTTms: 25}) },
		"AppendGoaway":      func() { _ = AppendGoaway(buf[:0], Goaway{URI: long}) },
		"AppendFetch":       func() { _ = AppendFetch(buf[:0], Fetch{Broadcast: "a", Track: "b", Group: 5}) },
		"AppendSessionInfo": func() { _ = AppendSessionInfo(buf[:0], SessionInfo{BitrateBps: 5}) },
		"AppendStreamType":  func() { _ = AppendStreamType(buf[:0], StreamProbe) },
		"AppendClientSetup": func() {
			_ = AppendClientSetup(buf[:0], ClientSetup{Versions: []Version{Lite02, Lite01}, Params: []Parameter{{Key: 2, Value: 1}, {Key: 7, Bytes: []byte(long)}}})
		},
		"AppendServerSetup": func() { _ = AppendServerSetup(buf[:0], ServerSetup{Version: Lite02}) },
	}
	for name, f := range cases {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

// TestReaderAllocs checks that Reader adds no allocation per call once it
// has reached its steady state, for messages inside and beyond its buffer.
func TestReaderAllocs(t *testing.T) {
	var stream []byte
	for _, n := range []int{2, 21, 300, 6000} {
		stream = AppendVarint(stream, uint64(n))
		stream = append(stream, make([]byte, n)...)
	}
	stream = AppendFrameHeader(stream, 5)
	stream = append(stream, "hello"...)
	stream = append(stream, 0xc0, 0, 0, 0, 0, 0, 0, 1, 0x41) // 8-byte varint 1, raw byte
	r := NewReader(&loopReader{data: stream})
	payload := make([]byte, 5)
	step := func() {
		for range 4 {
			if _, err := r.ReadMessage(1 << 16); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := r.ReadVarint(); err != nil || n != 5 {
			t.Fatal(n, err)
		}
		if err := r.ReadFull(payload); err != nil {
			t.Fatal(err)
		}
		if n, err := r.ReadVarint(); err != nil || n != 1 {
			t.Fatal(n, err)
		}
		if c, err := r.ReadByte(); err != nil || c != 0x41 {
			t.Fatal(c, err)
		}
	}
	step() // reach the steady state
	if n := testing.AllocsPerRun(100, step); n != 0 {
		t.Errorf("Reader: %v allocations per round", n)
	}

	d := []byte{0x00, 0x07}
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeGroup(d) }); n != 0 {
		t.Errorf("DecodeGroup: %v allocations", n)
	}
}

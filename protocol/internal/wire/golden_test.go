package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// Hex examples from the moq-lite wire reference (§10 and §11), produced by
// the reference JavaScript client's own encoders. Stream-type and
// response-type bytes are included exactly as they appear there.
const (
	// §11.1 Lite04: the client opens a probe stream and writes only its type.
	hexProbeStream = "04"
	// §11.1 PROBE, Lite04, 1 000 000 bps, RTT 25 ms.
	hexProbe04 = "05 80 0f 42 40 19"
	// §11.1 the same PROBE in Lite03 (no RTT).
	hexProbe03 = "04 80 0f 42 40"

	// §11.2 CLIENT_SETUP offering Lite02, Lite01 and moq-transport-14.
	hexClientSetup = "20 00 2c 03" +
		"c0 00 00 00 ff 0d ad 02" +
		"c0 00 00 00 ff 0d ad 01" +
		"c0 00 00 00 ff 00 00 0e" +
		"02 02 80 00 a4 55" +
		"07 0b 6d 6f 71 2d 6c 69 74 65 2d 6a 73"
	// §11.2 and §10 SERVER_SETUP selecting Lite02.
	hexServerSetup = "21 00 09 c0 00 00 00 ff 0d ad 02 00"

	// §11.3 SUBSCRIBE id 0, "demo/bbb", "video", priority 2, with stream type;
	// identical in Lite03 and Lite04.
	hexSubscribe04 = "02 15 00 08 64 65 6d 6f 2f 62 62 62 05 76 69 64 65 6f 02 00 00 00 00"
	// §11.3 the same SUBSCRIBE in Lite01/Lite02.
	hexSubscribe02 = "02 11 00 08 64 65 6d 6f 2f 62 62 62 05 76 69 64 65 6f 02"
	// §11.3 SUBSCRIBE_OK (Lite03/Lite04) with response type, priority 2, ordered.
	hexSubscribeOK04 = "00 05 02 01 00 00 00"
	// §11.3 SUBSCRIBE_OK in Lite02: an empty message.
	hexSubscribeOK02 = "00"
	// §11.3 SUBSCRIBE_OK in Lite01: priority only.
	hexSubscribeOK01 = "01 02"
	// §11.3 SUBSCRIBE_DROP (Lite03/Lite04) with response type, groups 3-4, error 0.
	hexSubscribeDrop = "01 03 03 04 00"
	// §11.3 group stream: type byte, GROUP{0, 7}, one frame "hello".
	hexGroupStream = "00 02 00 07 05 68 65 6c 6c 6f"

	// §11.4 ANNOUNCE_INTEREST Lite04 with stream type: prefix "", exclude_hop 0.
	hexAnnounceInterest04 = "01 02 00 00"
	// §11.4 ANNOUNCE_INTEREST Lite01-03 with stream type: prefix "".
	hexAnnounceInterest03 = "01 01 00"
	// §11.4 ANNOUNCE active "demo/bbb", 0 hops (Lite03 and Lite04).
	hexAnnounceActive04 = "0b 01 08 64 65 6d 6f 2f 62 62 62 00"
	// §11.4 ANNOUNCE_INIT with the one suffix "demo/bbb" (Lite01/Lite02).
	hexAnnounceInit = "0a 01 08 64 65 6d 6f 2f 62 62 62"
	// §10 an empty ANNOUNCE_INIT (Lite01/Lite02).
	hexAnnounceInitEmpty = "01 00"
	// §11.4 ANNOUNCE active and ended, Lite01/Lite02 (no hop count).
	hexAnnounceActive02 = "0a 01 08 64 65 6d 6f 2f 62 62 62"
	hexAnnounceEnded02  = "0a 00 08 64 65 6d 6f 2f 62 62 62"
)

// golden is one reference example: encode must produce wire, and decoding
// the message body found skip bytes into wire must yield want.
type golden struct {
	name   string
	wire   string
	skip   int // bytes before the message length (stream or response type)
	setup  byte
	encode func(b []byte) []byte
	decode func(body []byte) (any, error)
	want   any
}

// adapt turns a typed decoder into the untyped form golden uses.
func adapt[T any](f func([]byte) (T, error)) func([]byte) (any, error) {
	return func(b []byte) (any, error) { return f(b) }
}

func adaptV[T any](v Version, f func(Version, []byte) (T, error)) func([]byte) (any, error) {
	return func(b []byte) (any, error) { return f(v, b) }
}

func goldenCases() []golden {
	subscribe := Subscribe{ID: 0, Broadcast: "demo/bbb", Track: "video", Priority: 2}
	var cases []golden
	for _, v := range []Version{Lite03, Lite04} {
		cases = append(cases,
			golden{
				name: "subscribe " + v.String(), wire: hexSubscribe04, skip: 1,
				encode: func(b []byte) []byte {
					return AppendSubscribe(AppendStreamType(b, StreamSubscribe), v, subscribe)
				},
				decode: adaptV(v, DecodeSubscribe), want: subscribe,
			},
			golden{
				name: "subscribe ok " + v.String(), wire: hexSubscribeOK04, skip: 1,
				encode: func(b []byte) []byte {
					return AppendSubscribeOK(b, v, SubscribeOK{Priority: 2, Ordered: true})
				},
				decode: adaptV(v, DecodeSubscribeOK), want: SubscribeOK{Priority: 2, Ordered: true},
			},
			golden{
				name: "subscribe drop " + v.String(), wire: hexSubscribeDrop, skip: 1,
				encode: func(b []byte) []byte {
					return AppendSubscribeDrop(b, v, SubscribeDrop{Start: 3, End: 4, Code: 0})
				},
				decode: adaptV(v, DecodeSubscribeDrop), want: SubscribeDrop{Start: 3, End: 4},
			},
			golden{
				name: "announce active " + v.String(), wire: hexAnnounceActive04,
				encode: func(b []byte) []byte {
					return AppendAnnounce(b, v, Announce{Active: true, Suffix: "demo/bbb"})
				},
				decode: adaptV(v, DecodeAnnounce), want: Announce{Active: true, Suffix: "demo/bbb"},
			},
		)
	}
	for _, v := range []Version{Lite01, Lite02} {
		cases = append(cases,
			golden{
				name: "subscribe " + v.String(), wire: hexSubscribe02, skip: 1,
				encode: func(b []byte) []byte {
					return AppendSubscribe(AppendStreamType(b, StreamSubscribe), v, subscribe)
				},
				decode: adaptV(v, DecodeSubscribe), want: subscribe,
			},
			golden{
				name: "announce interest " + v.String(), wire: hexAnnounceInterest03, skip: 1,
				encode: func(b []byte) []byte {
					return AppendAnnounceInterest(AppendStreamType(b, StreamAnnounce), v, AnnounceInterest{})
				},
				decode: adaptV(v, DecodeAnnounceInterest), want: AnnounceInterest{},
			},
			golden{
				name: "announce init " + v.String(), wire: hexAnnounceInit,
				encode: func(b []byte) []byte {
					return AppendAnnounceInit(b, v, AnnounceInit{Suffixes: []string{"demo/bbb"}})
				},
				decode: adaptV(v, DecodeAnnounceInit), want: AnnounceInit{Suffixes: []string{"demo/bbb"}},
			},
			golden{
				name: "announce init empty " + v.String(), wire: hexAnnounceInitEmpty,
				encode: func(b []byte) []byte { return AppendAnnounceInit(b, v, AnnounceInit{}) },
				decode: adaptV(v, DecodeAnnounceInit), want: AnnounceInit{},
			},
			golden{
				name: "announce active " + v.String(), wire: hexAnnounceActive02,
				encode: func(b []byte) []byte {
					return AppendAnnounce(b, v, Announce{Active: true, Suffix: "demo/bbb"})
				},
				decode: adaptV(v, DecodeAnnounce), want: Announce{Active: true, Suffix: "demo/bbb"},
			},
			golden{
				name: "announce ended " + v.String(), wire: hexAnnounceEnded02,
				encode: func(b []byte) []byte {
					return AppendAnnounce(b, v, Announce{Active: false, Suffix: "demo/bbb"})
				},
				decode: adaptV(v, DecodeAnnounce), want: Announce{Suffix: "demo/bbb"},
			},
		)
	}
	return append(cases,
		golden{
			name: "probe lite-04", wire: hexProbe04,
			encode: func(b []byte) []byte { return AppendProbe(b, Lite04, Probe{BitrateBps: 1_000_000, RTTms: 25}) },
			decode: adaptV(Lite04, DecodeProbe), want: Probe{BitrateBps: 1_000_000, RTTms: 25},
		},
		golden{
			name: "probe lite-03", wire: hexProbe03,
			encode: func(b []byte) []byte { return AppendProbe(b, Lite03, Probe{BitrateBps: 1_000_000, RTTms: 25}) },
			decode: adaptV(Lite03, DecodeProbe), want: Probe{BitrateBps: 1_000_000},
		},
		golden{
			name: "client setup", wire: hexClientSetup, setup: 0x20,
			encode: func(b []byte) []byte {
				return AppendClientSetup(b, ClientSetup{
					Versions: []Version{Lite02, Lite01, 0xff00000e},
					Params: []Parameter{
						{Key: 7, Bytes: []byte("moq-lite-js")}, // written after the varint parameters
						{Key: 2, Value: 42069},
					},
				})
			},
			decode: adapt(DecodeClientSetup),
			want: ClientSetup{
				Versions: []Version{Lite02, Lite01, 0xff00000e},
				Params: []Parameter{
					{Key: 2, Value: 42069},
					{Key: 7, Bytes: []byte("moq-lite-js")},
				},
			},
		},
		golden{
			name: "server setup", wire: hexServerSetup, setup: 0x21,
			encode: func(b []byte) []byte { return AppendServerSetup(b, ServerSetup{Version: Lite02}) },
			decode: adapt(DecodeServerSetup), want: ServerSetup{Version: Lite02},
		},
		golden{
			name: "announce interest lite-04", wire: hexAnnounceInterest04, skip: 1,
			encode: func(b []byte) []byte {
				return AppendAnnounceInterest(AppendStreamType(b, StreamAnnounce), Lite04, AnnounceInterest{})
			},
			decode: adaptV(Lite04, DecodeAnnounceInterest), want: AnnounceInterest{},
		},
		golden{
			name: "announce interest lite-03", wire: hexAnnounceInterest03, skip: 1,
			encode: func(b []byte) []byte {
				return AppendAnnounceInterest(AppendStreamType(b, StreamAnnounce), Lite03, AnnounceInterest{ExcludeHop: 9})
			},
			decode: adaptV(Lite03, DecodeAnnounceInterest), want: AnnounceInterest{},
		},
		golden{
			name: "subscribe ok lite-02", wire: hexSubscribeOK02,
			encode: func(b []byte) []byte { return AppendSubscribeOK(b, Lite02, SubscribeOK{Priority: 2, Ordered: true}) },
			decode: adaptV(Lite02, DecodeSubscribeOK), want: SubscribeOK{},
		},
		golden{
			name: "subscribe ok lite-01", wire: hexSubscribeOK01,
			encode: func(b []byte) []byte { return AppendSubscribeOK(b, Lite01, SubscribeOK{Priority: 2, Ordered: true}) },
			decode: adaptV(Lite01, DecodeSubscribeOK), want: SubscribeOK{Priority: 2},
		},
		golden{
			name: "group header", wire: hexGroupStream[:len("00 02 00 07")], skip: 1,
			encode: func(b []byte) []byte { return AppendGroupHeader(b, Group{SubscribeID: 0, Sequence: 7}) },
			decode: adapt(DecodeGroup), want: Group{Sequence: 7},
		},
	)
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			wire := unhex(t, c.wire)

			// Encode, both into an empty slice and after existing bytes.
			if got := c.encode(nil); !bytes.Equal(got, wire) {
				t.Errorf("encode:\n got % x\nwant % x", got, wire)
			}
			prefix := []byte{0xde, 0xad}
			if got := c.encode(prefix); !bytes.Equal(got[:2], prefix) || !bytes.Equal(got[2:], wire) {
				t.Errorf("encode after prefix: got % x", got)
			}

			// Decode the body.
			var body []byte
			var ok bool
			if c.setup != 0 {
				body, ok = setupBody(wire, c.setup)
			} else {
				body, ok = messageBody(wire, c.skip)
			}
			if !ok {
				t.Fatalf("reference bytes are not framed as expected: % x", wire)
			}
			got, err := c.decode(body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("decode:\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestGoldenStreamTypes(t *testing.T) {
	if got := AppendStreamType(nil, StreamProbe); !bytes.Equal(got, unhex(t, hexProbeStream)) {
		t.Errorf("probe stream type = % x", got)
	}
	for typ, want := range map[StreamType]string{
		StreamSession: "00", StreamAnnounce: "01", StreamSubscribe: "02", StreamFetch: "03",
		StreamProbe: "04", StreamGoaway: "05", StreamClientCompat: "20", StreamServerCompat: "21",
	} {
		if got := AppendStreamType(nil, typ); !bytes.Equal(got, unhex(t, want)) {
			t.Errorf("stream type %v = % x, want %s", typ, got, want)
		}
	}
}

// TestGoldenGroupStream encodes the whole §11.3 group stream and reads it
// back through a Reader, one byte per read.
func TestGoldenGroupStream(t *testing.T) {
	wire := unhex(t, hexGroupStream)

	b := AppendGroupHeader(nil, Group{SubscribeID: 0, Sequence: 7})
	b = AppendFrameHeader(b, 5)
	b = append(b, "hello"...)
	if !bytes.Equal(b, wire) {
		t.Fatalf("encode:\n got % x\nwant % x", b, wire)
	}

	r := NewReader(&chunkReader{data: wire, n: 1})
	typ, err := r.ReadByte()
	if err != nil || typ != UniGroup {
		t.Fatalf("stream type = %#x, %v", typ, err)
	}
	body, err := r.ReadMessage(64)
	if err != nil {
		t.Fatalf("group message: %v", err)
	}
	g, err := DecodeGroup(body)
	if err != nil || g != (Group{Sequence: 7}) {
		t.Fatalf("group = %+v, %v", g, err)
	}
	size, err := r.ReadVarint()
	if err != nil || size != 5 {
		t.Fatalf("frame size = %d, %v", size, err)
	}
	payload := make([]byte, size)
	if err := r.ReadFull(payload); err != nil || string(payload) != "hello" {
		t.Fatalf("frame = %q, %v", payload, err)
	}
	if _, err := r.ReadVarint(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

// TestGoldenLegacySetupStream reads the §11.2 handshake the way a server
// does: type varint, u16 size, body.
func TestGoldenLegacySetupStream(t *testing.T) {
	r := NewReader(bytes.NewReader(unhex(t, hexClientSetup)))
	typ, err := r.ReadVarint()
	if err != nil || StreamType(typ) != StreamClientCompat {
		t.Fatalf("type = %#x, %v", typ, err)
	}
	size, err := r.ReadU16()
	if err != nil || size != 44 {
		t.Fatalf("size = %d, %v", size, err)
	}
	body := make([]byte, size)
	if err := r.ReadFull(body); err != nil {
		t.Fatal(err)
	}
	m, err := DecodeClientSetup(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Versions, []Version{Lite02, Lite01, 0xff00000e}) {
		t.Errorf("versions = %v", m.Versions)
	}
	reply := AppendServerSetup(nil, ServerSetup{Version: m.Versions[0]})
	if want := unhex(t, hexServerSetup); !bytes.Equal(reply, want) {
		t.Errorf("reply % x, want % x", reply, want)
	}
}

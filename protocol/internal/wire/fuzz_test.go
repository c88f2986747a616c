package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

// fuzzVersion maps a fuzzed byte to a version: Lite01 to Lite04, or an
// unsupported code that every versioned decoder must reject.
func fuzzVersion(b byte) Version {
	switch b % 5 {
	case 0:
		return Lite01
	case 1:
		return Lite02
	case 2:
		return Lite03
	case 3:
		return Lite04
	}
	return 0xff00000e
}

// versionByte is the inverse of fuzzVersion for seeds.
func versionByte(v Version) byte {
	for i, u := range allVersions {
		if u == v {
			return byte(i)
		}
	}
	return 4
}

// checkDecodeError fails unless err is one of the package's sentinels.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrShort) && !errors.Is(err, ErrTrailing) && !errors.Is(err, ErrInvalid) {
		t.Fatalf("decode error wraps no sentinel: %v", err)
	}
}

// fuzzMessage is the shared property of the message fuzz targets: decoding
// never panics, fails only with a sentinel error, and a decoded value
// survives re-encoding and decoding unchanged. skip is the number of bytes
// the encoder writes before the length (stream or response type).
func fuzzMessage[T any](t *testing.T, body []byte, skip int,
	decode func([]byte) (T, error), encode func([]byte, T) []byte,
) {
	m, err := decode(body)
	if err != nil {
		checkDecodeError(t, err)
		return
	}
	again, err := decode(mustBody(t, encode(nil, m), skip))
	if err != nil {
		t.Fatalf("re-decode of %+v: %v", m, err)
	}
	if !reflect.DeepEqual(again, m) {
		t.Fatalf("re-decode:\n got %+v\nwant %+v", again, m)
	}
}

// fuzzVersioned runs fuzzMessage for a decoder that takes a version, and
// checks that unsupported versions are rejected.
func fuzzVersioned[T any](t *testing.T, vb byte, body []byte, skip func(Version) int,
	decode func(Version, []byte) (T, error), encode func([]byte, Version, T) []byte,
	defined func(Version) bool,
) {
	v := fuzzVersion(vb)
	if !v.supported() || !defined(v) {
		if _, err := decode(v, body); !errors.Is(err, ErrInvalid) {
			t.Fatalf("version %v accepted: %v", v, err)
		}
		return
	}
	fuzzMessage(t, body, skip(v),
		func(b []byte) (T, error) { return decode(v, b) },
		func(b []byte, m T) []byte { return encode(b, v, m) })
}

func always(Version) bool       { return true }
func modernOnly(v Version) bool { return !v.legacy() }
func legacyOnly(v Version) bool { return v.legacy() }
func noSkip(Version) int        { return 0 }
func typeSkip(Version) int      { return 1 }

// seedBody adds the body of a reference example as a seed, for each of the
// given versions, plus a few truncations and extensions of it.
func seedBody(f *testing.F, hexWire string, skip int, versions ...Version) {
	f.Helper()
	body := mustBody(f, unhex(f, hexWire), skip)
	variants := [][]byte{body, append(bytes.Clone(body), 0), nil}
	if len(body) > 0 {
		variants = append(variants, body[:len(body)-1])
	}
	for _, b := range variants {
		for _, v := range versions {
			f.Add(versionByte(v), b)
		}
	}
}

func FuzzDecodeClientSetup(f *testing.F) {
	body, _ := setupBody(unhex(f, hexClientSetup), 0x20)
	f.Add(body)
	f.Add(body[:len(body)-3])
	f.Add([]byte{0x00, 0x02, 0x03, 0x00, 0x02, 0x05}) // empty bytes parameter, then a varint one
	f.Add([]byte{0x00, 0x02, 0x02, 0x01, 0x02, 0x02}) // duplicate key
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeClientSetup(body)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		encoded := AppendClientSetup(nil, m)
		again, err := DecodeClientSetup(mustSetupBody(t, encoded, 0x20))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		want := ClientSetup{Versions: m.Versions, Params: wireParams(m.Params)}
		if !reflect.DeepEqual(again, want) {
			t.Fatalf("re-decode:\n got %+v\nwant %+v", again, want)
		}
	})
}

func FuzzDecodeServerSetup(f *testing.F) {
	body, _ := setupBody(unhex(f, hexServerSetup), 0x21)
	f.Add(body)
	f.Add(body[:len(body)-1])
	f.Add([]byte{0x01, 0x01, 0x05, 0x02, 0x61, 0x62})
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeServerSetup(body)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		again, err := DecodeServerSetup(mustSetupBody(t, AppendServerSetup(nil, m), 0x21))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		want := ServerSetup{Version: m.Version, Params: wireParams(m.Params)}
		if !reflect.DeepEqual(again, want) {
			t.Fatalf("re-decode:\n got %+v\nwant %+v", again, want)
		}
	})
}

func mustSetupBody(t *testing.T, b []byte, typ byte) []byte {
	t.Helper()
	body, ok := setupBody(b, typ)
	if !ok {
		t.Fatalf("bad SETUP framing: % x", b)
	}
	return body
}

func FuzzDecodeAnnounceInterest(f *testing.F) {
	seedBody(f, hexAnnounceInterest04, 1, Lite04)
	seedBody(f, hexAnnounceInterest03, 1, Lite01, Lite02, Lite03)
	f.Add(versionByte(Lite04), []byte{0x05, '/', 'a', '/', '/', 'b', 0x07})
	f.Fuzz(func(t *testing.T, vb byte, body []byte) {
		fuzzVersioned(t, vb, body, noSkip, DecodeAnnounceInterest, AppendAnnounceInterest, always)
	})
}

func FuzzDecodeAnnounceInit(f *testing.F) {
	seedBody(f, hexAnnounceInit, 0, Lite01, Lite02)
	seedBody(f, hexAnnounceInitEmpty, 0, Lite01, Lite02, Lite04)
	f.Fuzz(func(t *testing.T, vb byte, body []byte) {
		fuzzVersioned(t, vb, body, noSkip, DecodeAnnounceInit, AppendAnnounceInit, legacyOnly)
	})
}

func FuzzDecodeAnnounce(f *testing.F) {
	seedBody(f, hexAnnounceActive04, 0, Lite03, Lite04)
	seedBody(f, hexAnnounceActive02, 0, Lite01, Lite02)
	seedBody(f, hexAnnounceEnded02, 0, Lite01, Lite02)
	f.Add(versionByte(Lite04), []byte{0x01, 0x00, 0x02, 0x05, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, vb byte, body []byte) {
		fuzzVersioned(t, vb, body, noSkip, DecodeAnnounce, AppendAnnounce, always)
	})
}

func FuzzDecodeSubscribe(f *testing.F) {
	seedBody(f, hexSubscribe04, 1, Lite03, Lite04)
	seedBody(f, hexSubscribe02, 1, Lite01, Lite02)
	f.Fuzz(func(t *testing.T, vb byte, body []byte) {
		fuzzVersioned(t, vb, body, noSkip, DecodeSubscribe, AppendSubscribe, always)
	})
}

func FuzzDecodeSubscribeOK(f *testing.F) {
	seedBody(f, hexSubscribeOK04, 1, Lite03, Lite04)
	seedBody(f, hexSubscribeOK02, 0, Lite02)
	seedBody(f, hexSubscribeOK01, 0, Lite01)
	f.Fuzz(func(t *testing.T, vb byte, body []byte) {
		skip := func(v Version) int {
			if v.legacy() {
				return 0
			}
			return 1
		}
		fuzzVersioned(t, vb, body, skip, DecodeSubscribeOK, AppendSubscribeOK, always)
	})
}

func FuzzDecodeSubscribeDrop(f *testing.F) {
	seedBody(f, hexSubscribeDrop, 1, Lite03, Lite04, Lite02)
	f.Fuzz(func(t *testing.T, vb byte, body []byte) {
		fuzzVersioned(t, vb, body, typeSkip, DecodeSubscribeDrop, AppendSubscribeDrop, modernOnly)
	})
}

func FuzzDecodeSubscribeUpdate(f *testing.F) {
	seedBody(f, hexSubscribeOK04, 1, Lite03, Lite04) // same layout as SUBSCRIBE_OK
	seedBody(f, hexSubscribeOK01, 0, Lite01, Lite02)
	f.Fuzz(func(t *testing.T, vb byte, body []byte) {
		fuzzVersioned(t, vb, body, noSkip, DecodeSubscribeUpdate, AppendSubscribeUpdate, always)
	})
}

func FuzzDecodeGroup(f *testing.F) {
	f.Add(mustBody(f, unhex(f, "00 02 00 07"), 1))
	f.Add([]byte{0x80, 0x00, 0x00, 0x01, 0x07})
	f.Add([]byte{0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzMessage(t, body, 1, DecodeGroup, AppendGroupHeader)
	})
}

func FuzzDecodeProbe(f *testing.F) {
	seedBody(f, hexProbe04, 0, Lite04, Lite01)
	seedBody(f, hexProbe03, 0, Lite03)
	f.Fuzz(func(t *testing.T, vb byte, body []byte) {
		fuzzVersioned(t, vb, body, noSkip, DecodeProbe, AppendProbe, modernOnly)
	})
}

func FuzzDecodeGoaway(f *testing.F) {
	f.Add(mustBody(f, AppendGoaway(nil, Goaway{URI: "https://relay.example/moq"}), 0))
	f.Add([]byte{0x00})
	f.Add([]byte{0x02, 0xff, 0xfe})
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzMessage(t, body, 0, DecodeGoaway, AppendGoaway)
	})
}

func FuzzDecodeFetch(f *testing.F) {
	f.Add(mustBody(f, AppendFetch(nil, Fetch{Broadcast: "demo/bbb", Track: "video", Priority: 2, Group: 7}), 0))
	f.Add([]byte{0x02, '/', '/', 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzMessage(t, body, 0, DecodeFetch, AppendFetch)
	})
}

func FuzzDecodeSessionInfo(f *testing.F) {
	f.Add(mustBody(f, AppendSessionInfo(nil, SessionInfo{BitrateBps: 1_000_000}), 0))
	f.Add([]byte{})
	f.Add([]byte{0x00, 0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzMessage(t, body, 0, DecodeSessionInfo, AppendSessionInfo)
	})
}

// FuzzReaderReadMessage feeds arbitrary bytes, delivered in chunks of a
// fuzzed size, through Reader.ReadMessage and compares the result with a
// straightforward in-memory parse of the same bytes. The Reader has a
// budget of fuzzBudget bytes: a message whose buffer must grow past it
// fails with the budget's error, and Release gives back all it reserved.
func FuzzReaderReadMessage(f *testing.F) {
	for _, h := range []string{
		hexProbe04, hexProbe03, hexAnnounceActive04 + hexAnnounceEnded02, hexAnnounceInitEmpty,
		hexSubscribe04[3:], hexSubscribeOK02, hexSubscribeOK01,
	} {
		f.Add(unhex(f, h), uint16(64), uint8(0))
		f.Add(unhex(f, h), uint16(3), uint8(1))
	}
	big := AppendVarint(nil, 5000)
	big = append(big, bytes.Repeat([]byte{0xab}, 5000)...)
	f.Add(big, uint16(6000), uint8(7))
	f.Add(big[:4000], uint16(6000), uint8(0))
	huge := AppendVarint(nil, 40000)
	huge = append(huge, bytes.Repeat([]byte{0xcd}, 40000)...)
	f.Add(huge, uint16(50000), uint8(200))
	f.Add(huge[:fuzzBudget+10], uint16(50000), uint8(0))
	f.Add([]byte{0x7f}, uint16(64), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16, chunk uint8) {
		var src io.Reader = bytes.NewReader(data)
		if chunk > 0 {
			src = &chunkReader{data: data, n: int(chunk)}
		}
		r := NewReader(src)
		budget := &testBudget{limit: fuzzBudget}
		r.SetBudget(budget)
		defer func() {
			r.Release()
			if budget.used != 0 || budget.peak > fuzzBudget {
				t.Fatalf("budget: %d bytes still reserved after Release, peak %d", budget.used, budget.peak)
			}
		}()
		rest := data
		for {
			got, err := r.ReadMessage(int(limit))

			// What an in-memory parse of rest says should happen.
			size, n, perr := quicvarint.Parse(rest)
			switch {
			case len(rest) == 0:
				if err != io.EOF {
					t.Fatalf("at end of stream: %v, want io.EOF", err)
				}
				return
			case perr != nil:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("truncated length: %v, want io.ErrUnexpectedEOF", err)
				}
				return
			case size > uint64(limit):
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("length %d over limit %d: %v", size, limit, err)
				}
				return
			case size > fuzzBudget:
				// A whole message cannot fit in the budget. A cut one
				// may end first (where the buffer grows depends on the
				// one kept from earlier messages).
				whole := uint64(len(rest)-n) >= size
				if !errors.Is(err, errTestBudget) && (whole || err != io.ErrUnexpectedEOF) {
					t.Fatalf("%d-byte message (whole: %v) over a %d-byte budget: %v", size, whole, fuzzBudget, err)
				}
				return
			case uint64(len(rest)-n) < size:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("truncated body: %v, want io.ErrUnexpectedEOF", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadMessage: %v", err)
			}
			want := rest[n : n+int(size)]
			if !bytes.Equal(got, want) {
				t.Fatalf("message % x, want % x", got, want)
			}
			rest = rest[n+int(size):]
		}
	})
}

// fuzzBudget is the Reader budget of FuzzReaderReadMessage: two growth
// steps of a message buffer (msgStartSize, then twice that) fit in it.
const fuzzBudget = 2 * msgStartSize

package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeErrors(t *testing.T) {
	long := func(n int) []byte { return []byte(strings.Repeat("\x00", n)) }
	cases := []struct {
		name   string
		decode func() error
		want   error
	}{
		{"subscribe truncated track", func() error {
			_, err := DecodeSubscribe(Lite02, []byte{0x00, 0x01, 'a', 0x05, 'v'})
			return err
		}, ErrShort},
		{"subscribe missing priority", func() error {
			_, err := DecodeSubscribe(Lite02, []byte{0x00, 0x00, 0x00})
			return err
		}, ErrShort},
		{"subscribe trailing byte", func() error {
			_, err := DecodeSubscribe(Lite02, []byte{0x00, 0x00, 0x00, 0x02, 0x00})
			return err
		}, ErrTrailing},
		{"subscribe lite-03 fields missing", func() error {
			_, err := DecodeSubscribe(Lite03, []byte{0x00, 0x00, 0x00, 0x02})
			return err
		}, ErrShort},
		{"subscribe ordered not a bool", func() error {
			_, err := DecodeSubscribe(Lite04, []byte{0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00})
			return err
		}, ErrInvalid},
		{"subscribe broadcast not UTF-8", func() error {
			_, err := DecodeSubscribe(Lite02, []byte{0x00, 0x01, 0xff, 0x00, 0x02})
			return err
		}, ErrInvalid},
		{"subscribe unsupported version", func() error {
			_, err := DecodeSubscribe(0xff00000e, []byte{0x00, 0x00, 0x00, 0x02})
			return err
		}, ErrInvalid},
		{"subscribe ok lite-02 not empty", func() error {
			_, err := DecodeSubscribeOK(Lite02, []byte{0x02})
			return err
		}, ErrTrailing},
		{"subscribe drop in lite-02", func() error {
			_, err := DecodeSubscribeDrop(Lite02, []byte{0x03, 0x04, 0x00})
			return err
		}, ErrInvalid},
		{"announce status 2", func() error {
			_, err := DecodeAnnounce(Lite02, []byte{0x02, 0x00})
			return err
		}, ErrInvalid},
		{"announce too many hops lite-03", func() error {
			_, err := DecodeAnnounce(Lite03, []byte{0x01, 0x00, 0x41, 0x01}) // 257
			return err
		}, ErrInvalid},
		{"announce too many hops lite-04", func() error {
			_, err := DecodeAnnounce(Lite04, append([]byte{0x01, 0x00, 0x41, 0x01}, long(257)...))
			return err
		}, ErrInvalid},
		{"announce hop ids missing", func() error {
			_, err := DecodeAnnounce(Lite04, []byte{0x01, 0x00, 0x02, 0x05})
			return err
		}, ErrShort},
		{"announce init in lite-03", func() error {
			_, err := DecodeAnnounceInit(Lite03, []byte{0x00})
			return err
		}, ErrInvalid},
		{"announce init count beyond body", func() error {
			_, err := DecodeAnnounceInit(Lite02, []byte{0x80, 0xff, 0xff, 0xff})
			return err
		}, ErrShort},
		{"probe in lite-01", func() error {
			_, err := DecodeProbe(Lite01, []byte{0x00})
			return err
		}, ErrInvalid},
		{"probe lite-04 missing rtt", func() error {
			_, err := DecodeProbe(Lite04, []byte{0x00})
			return err
		}, ErrShort},
		{"client setup 65 versions", func() error {
			_, err := DecodeClientSetup(append([]byte{0x40, 0x41}, long(66)...))
			return err
		}, ErrInvalid},
		{"client setup 64 versions", func() error {
			_, err := DecodeClientSetup(append([]byte{0x40, 0x40}, long(65)...))
			return err
		}, nil},
		{"server setup 65 params", func() error {
			_, err := DecodeServerSetup([]byte{0x01, 0x40, 0x41})
			return err
		}, ErrInvalid},
		{"server setup duplicate key", func() error {
			_, err := DecodeServerSetup([]byte{0x01, 0x02, 0x03, 0x00, 0x03, 0x00})
			return err
		}, ErrInvalid},
		{"server setup bytes beyond body", func() error {
			_, err := DecodeServerSetup([]byte{0x01, 0x01, 0x03, 0x05, 'a'})
			return err
		}, ErrShort},
		{"group varint cut", func() error {
			_, err := DecodeGroup([]byte{0x00, 0x80, 0x00})
			return err
		}, ErrShort},
		{"group empty", func() error {
			_, err := DecodeGroup(nil)
			return err
		}, ErrShort},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.decode()
			if c.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

func TestDecodeErrorContext(t *testing.T) {
	_, err := DecodeSubscribe(Lite02, []byte{0x00, 0x01, 'a', 0x05, 'v'})
	if got, want := err.Error(), "subscribe: track: "+ErrShort.Error(); got != want {
		t.Fatalf("error %q, want %q", got, want)
	}
}

func TestDecodeCleansPaths(t *testing.T) {
	b := AppendSubscribe(nil, Lite04, Subscribe{Broadcast: "//demo//bbb/", Track: "/video/"})
	m, err := DecodeSubscribe(Lite04, mustBody(t, b, 0))
	if err != nil {
		t.Fatal(err)
	}
	if m.Broadcast != "demo/bbb" || m.Track != "/video/" {
		t.Fatalf("broadcast %q track %q", m.Broadcast, m.Track)
	}
}

func TestDecoderPrimitives(t *testing.T) {
	d := NewDecoder([]byte{0x01, 0x00, 0x02, 0x41, 0x00, 0x02, 'h', 'i', 0x07})
	if v, err := d.Bool(); err != nil || !v {
		t.Fatalf("bool %v %v", v, err)
	}
	if v, err := d.Bool(); err != nil || v {
		t.Fatalf("bool %v %v", v, err)
	}
	if _, err := d.Bool(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bool 2: %v", err)
	}
	if v, err := d.Varint(); err != nil || v != 0x100 {
		t.Fatalf("varint %#x %v", v, err)
	}
	if s, err := d.String(); err != nil || s != "hi" {
		t.Fatalf("string %q %v", s, err)
	}
	if d.Remaining() != 1 {
		t.Fatalf("remaining %d", d.Remaining())
	}
	if err := d.Done(); !errors.Is(err, ErrTrailing) {
		t.Fatalf("done with a byte left: %v", err)
	}
	if v, err := d.U8(); err != nil || v != 7 {
		t.Fatalf("u8 %d %v", v, err)
	}
	if err := d.Done(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.U8(); !errors.Is(err, ErrShort) {
		t.Fatalf("u8 past end: %v", err)
	}
	if _, err := d.Varint(); !errors.Is(err, ErrShort) {
		t.Fatalf("varint past end: %v", err)
	}
	var zero Decoder
	if err := zero.Done(); err != nil {
		t.Fatalf("zero decoder: %v", err)
	}
}

func TestVarintEncoding(t *testing.T) {
	for _, c := range []struct {
		v    uint64
		want string
	}{
		{0, "00"}, {63, "3f"}, {64, "40 40"}, {16383, "7f ff"}, {16384, "80 00 40 00"},
		{42069, "80 00 a4 55"}, {1_000_000, "80 0f 42 40"}, {1<<30 - 1, "bf ff ff ff"},
		{1 << 30, "c0 00 00 00 40 00 00 00"}, {uint64(Lite02), "c0 00 00 00 ff 0d ad 02"},
		{MaxVarint, "ff ff ff ff ff ff ff ff"},
	} {
		want := unhex(t, c.want)
		if got := AppendVarint(nil, c.v); string(got) != string(want) {
			t.Errorf("AppendVarint(%d) = % x, want % x", c.v, got, want)
		}
		if VarintLen(c.v) != len(want) {
			t.Errorf("VarintLen(%d) = %d", c.v, VarintLen(c.v))
		}
	}
	// Non-minimal encodings are accepted.
	d := NewDecoder([]byte{0x40, 0x05})
	if v, err := d.Varint(); err != nil || v != 5 {
		t.Fatalf("non-minimal varint: %d %v", v, err)
	}
	if got := AppendString(nil, "demo"); string(got) != "\x04demo" {
		t.Fatalf("AppendString = % x", got)
	}
}

// TestLongMessages covers bodies whose length needs 2 and 4 byte varints,
// which makes the encoder move the body after writing it.
func TestLongMessages(t *testing.T) {
	for _, n := range []int{61, 62, 63, 64, 65, 16380, 16381, 16382, 16383, 16384, 70000} {
		uri := strings.Repeat("u", n)
		b := AppendGoaway([]byte{0xaa}, Goaway{URI: uri})
		body := mustBody(t, b[1:], 0)
		m, err := DecodeGoaway(body)
		if err != nil || m.URI != uri {
			t.Fatalf("n=%d: %v", n, err)
		}
		if want := 1 + VarintLen(uint64(len(body))) + len(body); len(b) != want {
			t.Fatalf("n=%d: %d bytes, want %d", n, len(b), want)
		}
	}
}

func TestAppendPanicsOnUndefinedMessage(t *testing.T) {
	for name, f := range map[string]func(){
		"announce init lite-03":  func() { AppendAnnounceInit(nil, Lite03, AnnounceInit{}) },
		"subscribe drop lite-02": func() { AppendSubscribeDrop(nil, Lite02, SubscribeDrop{}) },
		"probe lite-01":          func() { AppendProbe(nil, Lite01, Probe{}) },
		"subscribe unknown":      func() { AppendSubscribe(nil, 0xff00000e, Subscribe{}) },
		"varint too large":       func() { AppendVarint(nil, MaxVarint+1) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
}

func TestAnnounceHopPadding(t *testing.T) {
	m := Announce{Active: true, Suffix: "a", HopCount: 3, HopIDs: []uint64{9}}
	got, err := DecodeAnnounce(Lite04, mustBody(t, AppendAnnounce(nil, Lite04, m), 0))
	if err != nil {
		t.Fatal(err)
	}
	if got.HopCount != 3 || len(got.HopIDs) != 3 || got.HopIDs[0] != 9 || got.HopIDs[1] != 0 {
		t.Fatalf("got %+v", got)
	}
	got, err = DecodeAnnounce(Lite03, mustBody(t, AppendAnnounce(nil, Lite03, Announce{HopIDs: []uint64{1, 2}}), 0))
	if err != nil || got.HopCount != 2 || got.HopIDs != nil {
		t.Fatalf("lite-03: %+v %v", got, err)
	}
}

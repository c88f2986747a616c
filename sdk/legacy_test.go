package sdk

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestLegacyFrameEncoding(t *testing.T) {
	// hang-format §1.3, checked there against @moq/hang 0.3.5.
	cases := []struct {
		us  uint64
		hex string
	}{
		{0, "00"},
		{63, "3f"},
		{64, "4040"},
		{16383, "7fff"},
		{33333, "80008235"},
		{1000000, "800f4240"},
		{1 << 30, "c000000040000000"},
		{3600000000, "c0000000d693a400"},
	}
	payload := []byte{0xde, 0xad}
	for _, tc := range cases {
		pts := time.Duration(tc.us) * time.Microsecond
		b, err := AppendLegacyFrame(nil, pts, payload)
		if err != nil {
			t.Fatal(err)
		}
		want := append(unhex(t, tc.hex), payload...)
		if !bytes.Equal(b, want) {
			t.Errorf("%d µs: %x, want %x", tc.us, b, want)
		}
		if n, err := LegacyFrameLen(pts, len(payload)); err != nil || n != len(want) {
			t.Errorf("%d µs: LegacyFrameLen = %d, %v", tc.us, n, err)
		}
		gotPTS, gotPayload, err := DecodeLegacyFrame(b)
		if err != nil || gotPTS != pts || !bytes.Equal(gotPayload, payload) {
			t.Errorf("%d µs: decoded %v %x %v", tc.us, gotPTS, gotPayload, err)
		}
	}
}

func TestLegacyFrameDecoding(t *testing.T) {
	cases := []struct {
		hex     string
		pts     time.Duration
		payload string
		err     error
	}{
		{"4000aa", 0, "aa", nil},                        // non-minimal length is accepted
		{"c000000000000001", time.Microsecond, "", nil}, // a marker: empty payload
		{"", 0, "", ErrShortFrame},
		{"40", 0, "", ErrShortFrame},
		{"800f42", 0, "", ErrShortFrame},
		{"ffffffffffffffff", 0, "", ErrTimestampRange}, // 2^62−1 µs overflows a Duration
	}
	for _, tc := range cases {
		pts, payload, err := DecodeLegacyFrame(unhex(t, tc.hex))
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: error %v, want %v", tc.hex, err, tc.err)
			}
			continue
		}
		if err != nil || pts != tc.pts || !bytes.Equal(payload, unhex(t, tc.payload)) {
			t.Errorf("%s: %v %x %v", tc.hex, pts, payload, err)
		}
	}
}

func TestLegacyTimestampRounding(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{1499 * time.Nanosecond, time.Microsecond},
		{1500 * time.Nanosecond, 2 * time.Microsecond},
		{time.Second / 30, 33333 * time.Microsecond},
		{MaxTimestamp, MaxTimestamp},
	} {
		b, err := AppendLegacyFrame(nil, tc.in, []byte{1})
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := DecodeLegacyFrame(b); got != tc.want {
			t.Errorf("%v → %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, bad := range []time.Duration{-1, MaxTimestamp + time.Microsecond} {
		if _, err := AppendLegacyFrame(nil, bad, []byte{1}); !errors.Is(err, ErrTimestampRange) {
			t.Errorf("%v: error %v", bad, err)
		}
	}
}

// FuzzFrame decodes arbitrary legacy frames: no panic, and whatever
// decodes re-encodes (minimally) to a frame that decodes the same.
func FuzzFrame(f *testing.F) {
	for _, s := range []string{"00", "3fdead", "4040", "7fff00", "80008235aabb", "800f4240", "c000000040000000ff", "c0000000d693a400", "4000", "ff"} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pts, payload, err := DecodeLegacyFrame(b)
		if err != nil {
			return
		}
		if pts < 0 {
			t.Fatalf("negative pts %v", pts)
		}
		if pts > MaxTimestamp {
			if _, err := AppendLegacyFrame(nil, pts, payload); err == nil {
				t.Fatalf("encoded pts %v above MaxTimestamp", pts)
			}
			return
		}
		enc, err := AppendLegacyFrame(nil, pts, payload)
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) > len(b) {
			t.Fatalf("re-encoding grew %x to %x", b, enc)
		}
		pts2, payload2, err := DecodeLegacyFrame(enc)
		if err != nil || pts2 != pts || !bytes.Equal(payload2, payload) {
			t.Fatalf("round trip %x → %x: %v %x %v", b, enc, pts2, payload2, err)
		}
	})
}

package sdk

import (
	"bytes"
	"testing"
)

// TestParameterSets takes the parameter sets out of avcC and hvcC records:
// VPS, SPS and PPS in that order, each a NAL unit of its type.
func TestParameterSets(t *testing.T) {
	for _, tc := range avcCases {
		avcC := unhex(t, tc.avcC)
		sets, err := ParameterSets(avcC, false)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(sets) != 2 || sets[0][0]&0x1f != h264NALSPS || sets[1][0]&0x1f != h264NALPPS {
			t.Errorf("%s: sets %x", tc.name, sets)
		}
		if cfg, err := AVCDecoderConfig(sets[:1], sets[1:]); err != nil || !bytes.Equal(cfg, avcC) {
			t.Errorf("%s: the sets build %x (%v), want %x", tc.name, cfg, err, avcC)
		}
	}
	for _, tc := range hevcCases {
		sets, err := ParameterSets(unhex(t, tc.hvcC), true)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var types []byte
		for _, s := range sets {
			types = append(types, (s[0]>>1)&0x3f)
		}
		if !bytes.Equal(types, []byte{h265NALVPS, h265NALSPS, h265NALPPS}) {
			t.Errorf("%s: NAL unit types %v", tc.name, types)
		}
	}
	if sets, err := ParameterSets(nil, false); err == nil || sets != nil {
		t.Errorf("no record: %x, %v", sets, err)
	}
}

// TestConfigSets follows the parameter sets that came in band.
func TestConfigSets(t *testing.T) {
	p, err := NewParamSets("avc1.640028")
	if err != nil {
		t.Fatal(err)
	}
	if p.ConfigSets() != nil {
		t.Error("sets before any came")
	}
	sets, err := ParameterSets(unhex(t, avcCases[0].avcC), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Update(append([][]byte{{0x09, 0xf0}}, sets...)); err != nil {
		t.Fatal(err)
	}
	got := p.ConfigSets()
	if len(got) != 2 || !bytes.Equal(got[0], sets[0]) || !bytes.Equal(got[1], sets[1]) {
		t.Errorf("ConfigSets %x, want %x", got, sets)
	}
}

// TestAV1SequenceHeader takes the sequence header OBU out of an av1C,
// without its size field, as mediacommon's av1.Bitstream splits OBUs.
func TestAV1SequenceHeader(t *testing.T) {
	for _, tc := range av1Cases {
		av1C := unhex(t, tc.av1C)
		obu := AV1SequenceHeader(av1C)
		if len(obu) == 0 || (obu[0]>>3)&0x0f != av1OBUSequenceHeader || obu[0]&0x02 != 0 {
			t.Fatalf("%s: OBU %x", tc.name, obu)
		}
		// av1C: 4 bytes, then the OBU header, its size (one byte here)
		// and its payload.
		if want := append([]byte{av1C[4] &^ 0x02}, av1C[6:]...); !bytes.Equal(obu, want) {
			t.Errorf("%s: OBU %x, want %x", tc.name, obu, want)
		}
		tr, err := AV1FromSequenceHeader(obu)
		if err != nil || tr.Width != tc.width || tr.Height != tc.height {
			t.Errorf("%s: the OBU describes %+v (%v)", tc.name, tr, err)
		}
	}
	for _, b := range []string{"", "81000c00", "81000c000a", "01000c000a0b000000043d07c4daf90040"} {
		if obu := AV1SequenceHeader(unhex(t, b)); obu != nil {
			t.Errorf("av1C %s: OBU %x", b, obu)
		}
	}
}

// TestAV1OBUs splits temporal units for a sender: no temporal delimiter
// or padding, no size fields, and a keyframe starts with a sequence
// header.
func TestAV1OBUs(t *testing.T) {
	av1C := unhex(t, av1Cases[0].av1C)
	seq := AV1SequenceHeader(av1C)
	sizedSeq := av1C[4:]
	td := []byte{0x12, 0x00}
	frame := []byte{0x32, 0x03, 0xaa, 0xbb, 0xcc} // OBU_FRAME, 3 bytes
	padding := []byte{0x7a, 0x01, 0x00}
	join := func(obus ...[]byte) []byte { return bytes.Join(obus, nil) }
	for _, tc := range []struct {
		name string
		tu   []byte
		key  bool
		seq  []byte
		want [][]byte
	}{
		{"keyframe without sequence header", join(td, frame), true, seq, [][]byte{seq, {0x30, 0xaa, 0xbb, 0xcc}}},
		{"keyframe with its own", join(td, sizedSeq, frame, padding), true, seq, [][]byte{seq, {0x30, 0xaa, 0xbb, 0xcc}}},
		{"keyframe, no av1C header", join(td, frame), true, nil, [][]byte{{0x30, 0xaa, 0xbb, 0xcc}}},
		{"delta frame", join(td, frame), false, seq, [][]byte{{0x30, 0xaa, 0xbb, 0xcc}}},
	} {
		got, err := AV1OBUs(tc.tu, tc.key, tc.seq)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: OBUs %x, want %x", tc.name, got, tc.want)
		}
		for i := range got {
			if !bytes.Equal(got[i], tc.want[i]) {
				t.Errorf("%s: OBU %d %x, want %x", tc.name, i, got[i], tc.want[i])
			}
		}
	}
	for _, tu := range [][]byte{nil, td, join(td, padding), {0x32, 0x09, 0xaa}} {
		if got, err := AV1OBUs(tu, true, nil); err == nil {
			t.Errorf("temporal unit %x: OBUs %x", tu, got)
		}
	}
}

// FuzzParameterSets feeds arbitrary bytes to ParameterSets,
// AV1SequenceHeader and AV1OBUs: none may panic, the parameter sets come
// from within the record, an OBU returned by AV1SequenceHeader is a
// sequence header, and AV1OBUs returns no temporal delimiter, padding or
// size field.
func FuzzParameterSets(f *testing.F) {
	for _, tc := range avcCases {
		f.Add(byte(0), unhex(f, tc.avcC))
	}
	for _, tc := range hevcCases {
		f.Add(byte(1), unhex(f, tc.hvcC))
	}
	for _, tc := range av1Cases {
		f.Add(byte(2), unhex(f, tc.av1C))
	}
	f.Add(byte(2), []byte{0x12, 0x00, 0x32, 0x03, 0xaa, 0xbb, 0xcc, 0x7a, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		switch which % 3 {
		case 0, 1:
			sets, err := ParameterSets(b, which%3 == 1)
			if err != nil {
				return
			}
			n := 0
			for _, s := range sets {
				n += len(s)
			}
			if n > len(b) {
				t.Errorf("%d bytes of parameter sets in a record of %d", n, len(b))
			}
		case 2:
			if obu := AV1SequenceHeader(b); obu != nil && (obu[0]>>3)&0x0f != av1OBUSequenceHeader {
				t.Errorf("OBU %x is not a sequence header", obu)
			}
			for _, obu := range obusOrNone(AV1OBUs(b, true, nil)) {
				if typ := (obu[0] >> 3) & 0x0f; typ == 2 || typ == 15 || obu[0]&0x02 != 0 {
					t.Errorf("OBU %x sent", obu)
				}
			}
		}
	})
}

// obusOrNone returns the OBUs, none on error.
func obusOrNone(obus [][]byte, err error) [][]byte {
	if err != nil {
		return nil
	}
	return obus
}

package sdk

import (
	"bytes"
	"fmt"
	"testing"
)

func TestAnnexBSplitJoin(t *testing.T) {
	nalus := [][]byte{{0x09, 0xf0}, {0x67, 1, 2, 3}, {0x68, 4}, {0x65, 0, 0, 3, 1, 9}}
	b := JoinAnnexB(nalus)
	want := []byte{0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 0, 1, 0x68, 4, 0, 0, 0, 1, 0x65, 0, 0, 3, 1, 9}
	if !bytes.Equal(b, want) {
		t.Fatalf("JoinAnnexB = %x, want %x", b, want)
	}
	got, err := SplitAnnexB(b)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(nalus) {
		t.Fatalf("SplitAnnexB = %x, %v", got, err)
	}
	// 3-byte start codes, as encoders write them between NAL units.
	got, err = SplitAnnexB([]byte{0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 3})
	if err != nil || fmt.Sprint(got) != fmt.Sprint([][]byte{{0x67, 1}, {0x68, 2}, {0x65, 3}}) {
		t.Fatalf("3-byte start codes: %x, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {0x65, 1, 2}, {0, 0, 0, 1}} {
		if _, err := SplitAnnexB(bad); err == nil {
			t.Errorf("SplitAnnexB(%x) did not fail", bad)
		}
	}

	avcc := JoinAVCC(nalus)
	if len(avcc) != len(b) || !bytes.Equal(avcc[:6], []byte{0, 0, 0, 2, 0x09, 0xf0}) {
		t.Fatalf("JoinAVCC = %x", avcc)
	}
	got, err = SplitAVCC(avcc, 4)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(nalus) {
		t.Fatalf("SplitAVCC = %x, %v", got, err)
	}
	conv, err := AnnexBToAVCC(b)
	if err != nil || !bytes.Equal(conv, avcc) {
		t.Fatalf("AnnexBToAVCC = %x, %v", conv, err)
	}
	conv, err = AVCCToAnnexB(avcc, 4)
	if err != nil || !bytes.Equal(conv, b) {
		t.Fatalf("AVCCToAnnexB = %x, %v", conv, err)
	}
	// Short length prefixes.
	got, err = SplitAVCC([]byte{2, 0x67, 1, 0, 1, 0x68}, 1)
	if err != nil || fmt.Sprint(got) != fmt.Sprint([][]byte{{0x67, 1}, {0x68}}) {
		t.Fatalf("SplitAVCC 1 = %x, %v", got, err)
	}
	got, err = SplitAVCC([]byte{0, 2, 0x67, 1, 0, 1, 0x68}, 2)
	if err != nil || fmt.Sprint(got) != fmt.Sprint([][]byte{{0x67, 1}, {0x68}}) {
		t.Fatalf("SplitAVCC 2 = %x, %v", got, err)
	}
	for _, tc := range []struct {
		b    []byte
		size int
	}{{[]byte{0, 0, 0, 5, 1}, 4}, {[]byte{3, 1}, 1}, {[]byte{0}, 2}, {[]byte{0, 0}, 2}, {[]byte{1, 1}, 3}, {nil, 4}} {
		if _, err := SplitAVCC(tc.b, tc.size); err == nil {
			t.Errorf("SplitAVCC(%x, %d) did not fail", tc.b, tc.size)
		}
	}
}

func TestParamSetsH264(t *testing.T) {
	avcC := unhex(t, avcCases[0].avcC)
	c, err := ParseAVCConfig(avcC)
	if err != nil {
		t.Fatal(err)
	}
	sps, pps := c.SPS[0], c.PPS[0]
	idr := []byte{0x65, 0x88, 0x84, 0x00}
	aud := []byte{0x09, 0xf0}
	p, err := NewParamSets("avc1.640028")
	if err != nil {
		t.Fatal(err)
	}
	if p.IsH265() || p.DecoderConfig() != nil {
		t.Fatal("fresh ParamSets")
	}
	if _, err := p.Track(); err == nil {
		t.Fatal("Track without parameter sets did not fail")
	}
	// An SPS alone is not enough.
	if changed, err := p.Update([][]byte{sps, idr}); changed || err != nil || p.DecoderConfig() != nil {
		t.Fatalf("SPS only: %v %v", changed, err)
	}
	changed, err := p.Update([][]byte{aud, pps, idr})
	if !changed || err != nil || !bytes.Equal(p.DecoderConfig(), avcC) {
		t.Fatalf("SPS then PPS: %v %v %x", changed, err, p.DecoderConfig())
	}
	if changed, err := p.Update([][]byte{aud, sps, pps, idr}); changed || err != nil {
		t.Fatalf("same parameter sets again: %v %v", changed, err)
	}
	if changed, err := p.Update([][]byte{{0x41, 1, 2}}); changed || err != nil {
		t.Fatalf("no parameter sets: %v %v", changed, err)
	}
	if !p.InConfig(sps) || !p.InConfig(pps) || p.InConfig(idr) || p.InConfig([]byte{0x68, 0xee}) {
		t.Error("InConfig")
	}
	if !p.IsAUD(aud) || p.IsAUD(idr) || !p.IsParamSet(sps) || !p.IsParamSet(pps) || p.IsParamSet(idr) {
		t.Error("IsAUD/IsParamSet")
	}
	tr, err := p.Track()
	if err != nil || tr.Codec != "avc1.640028" || tr.Width != 1920 || tr.Height != 1080 {
		t.Fatalf("Track = %+v, %v", tr, err)
	}
	// A new SPS (another stream): a new configuration.
	c2, _ := ParseAVCConfig(unhex(t, avcCases[2].avcC))
	changed, err = p.Update([][]byte{c2.SPS[0], c2.PPS[0], idr})
	if !changed || err != nil || !bytes.Equal(p.DecoderConfig(), unhex(t, avcCases[2].avcC)) {
		t.Fatalf("new SPS: %v %v %x", changed, err, p.DecoderConfig())
	}
	// A broken SPS keeps the configuration.
	before := p.DecoderConfig()
	if _, err := p.Update([][]byte{{0x67, 0xff}, pps}); err == nil {
		t.Fatal("broken SPS accepted")
	}
	if !bytes.Equal(p.DecoderConfig(), before) {
		t.Fatal("broken SPS changed the configuration")
	}
	// The parameter sets are copied.
	in := bytes.Clone(c.SPS[0])
	p2, _ := NewParamSets("avc3.640028")
	if _, err := p2.Update([][]byte{in, pps}); err != nil {
		t.Fatal(err)
	}
	in[5] ^= 0xff
	if !bytes.Equal(p2.DecoderConfig(), avcC) || !p2.InConfig(sps) {
		t.Fatal("Update kept a reference to its input")
	}
}

func TestParamSetsH265(t *testing.T) {
	hvcC := unhex(t, hevcCases[0].hvcC)
	c, err := ParseHEVCConfig(hvcC)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewParamSets("hvc1.1.6.L60.90")
	if err != nil || !p.IsH265() {
		t.Fatal(err)
	}
	idr := []byte{0x26, 0x01, 0xaf}
	aud := []byte{0x46, 0x01, 0x50}
	if changed, _ := p.Update([][]byte{c.SPS[0], c.PPS[0], idr}); changed {
		t.Fatal("complete without a VPS")
	}
	changed, err := p.Update([][]byte{aud, c.VPS[0], c.SPS[0], c.PPS[0], idr})
	if !changed || err != nil || !bytes.Equal(p.DecoderConfig(), hvcC) {
		t.Fatalf("changed %v err %v\n got %x\nwant %x", changed, err, p.DecoderConfig(), hvcC)
	}
	if !p.IsAUD(aud) || p.IsAUD(idr) || !p.InConfig(c.VPS[0]) || p.InConfig(idr) {
		t.Error("IsAUD/InConfig")
	}
	tr, err := p.Track()
	if err != nil || tr.Codec != hevcCases[0].codec || tr.Width != 322 {
		t.Fatalf("Track = %+v, %v", tr, err)
	}
	if _, err := NewParamSets("av01.0.08M.08"); err == nil {
		t.Fatal("NewParamSets(av01) did not fail")
	}
}

func FuzzSplitAnnexB(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68})
	f.Add([]byte{0, 0, 1, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		nalus, err := SplitAnnexB(b)
		if err != nil {
			return
		}
		for _, n := range nalus {
			if len(n) == 0 {
				t.Fatal("empty NAL unit")
			}
		}
		p, _ := NewParamSets("avc1")
		_, _ = p.Update(nalus)
		q, _ := NewParamSets("hvc1")
		_, _ = q.Update(nalus)
		again, err := SplitAVCC(JoinAVCC(nalus), 4)
		if err != nil || len(again) != len(nalus) {
			t.Fatalf("AVCC round trip: %v", err)
		}
	})
}

package sdk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// H.264 and H.265 carry their NAL units in one of two forms (see Frame):
// Annex B (each NAL unit after a 00 00 01 or 00 00 00 01 start code, the
// parameter sets in-band) when the track has no DecoderConfig, and
// length-prefixed (AVCC/HVCC: each NAL unit after a big-endian length of the
// size the avcC or hvcC gives) when it has one. The functions here convert
// between the two and follow in-band parameter sets, for the sinks and
// sources that meet the other form. Splitting and joining use mediacommon's
// pkg/codecs/h264 AnnexB and AVCC, which are not specific to H.264; only
// 1- and 2-byte length prefixes, which mediacommon does not read, are
// handled here.

// SplitAnnexB splits an Annex B access unit into its NAL units (without
// start codes), aliasing b. It fails when b does not begin with a start
// code, holds no NAL unit, is larger than 8 MiB or has more than 50 NAL
// units (mediacommon's limits).
func SplitAnnexB(b []byte) ([][]byte, error) {
	var a h264.AnnexB
	if err := a.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("annex b: %w", err)
	}
	return a, nil
}

// JoinAnnexB returns the NAL units as an Annex B access unit, each after a
// 4-byte start code.
func JoinAnnexB(nalus [][]byte) []byte {
	b, _ := h264.AnnexB(nalus).Marshal() // never fails
	return b
}

// SplitAVCC splits a length-prefixed access unit into its NAL units,
// aliasing b. lengthSize is the size of the length prefixes: 1, 2 or 4
// (AVCConfig.NALLengthSize, HEVCConfig.NALLengthSize). Zero-length NAL
// units are skipped. It fails on a truncated NAL unit, an access unit
// without NAL units, and beyond mediacommon's limits (8 MiB, 50 NAL units).
func SplitAVCC(b []byte, lengthSize int) ([][]byte, error) {
	if lengthSize == 4 {
		var a h264.AVCC
		if err := a.Unmarshal(b); err != nil {
			return nil, fmt.Errorf("avcc: %w", err)
		}
		return a, nil
	}
	if lengthSize != 1 && lengthSize != 2 {
		return nil, fmt.Errorf("avcc: NAL length size %d", lengthSize)
	}
	var out [][]byte
	size := 0
	for p := 0; p < len(b); {
		if len(b)-p < lengthSize {
			return nil, fmt.Errorf("avcc: truncated length at byte %d", p)
		}
		var l int
		if lengthSize == 1 {
			l = int(b[p])
		} else {
			l = int(binary.BigEndian.Uint16(b[p:]))
		}
		p += lengthSize
		if len(b)-p < l {
			return nil, fmt.Errorf("avcc: NAL unit of %d bytes at byte %d exceeds the access unit", l, p)
		}
		if l > 0 {
			out = append(out, b[p:p+l:p+l])
			size += l
		}
		p += l
	}
	switch {
	case len(out) == 0:
		return nil, fmt.Errorf("avcc: %w", h264.ErrAVCCNoNALUs)
	case len(out) > h264.MaxNALUsPerAccessUnit:
		return nil, fmt.Errorf("avcc: NALU count (%d) exceeds maximum allowed (%d)", len(out), h264.MaxNALUsPerAccessUnit)
	case size > h264.MaxAccessUnitSize:
		return nil, fmt.Errorf("avcc: access unit size (%d) is too big, maximum is %d", size, h264.MaxAccessUnitSize)
	}
	return out, nil
}

// JoinAVCC returns the NAL units as a length-prefixed access unit with
// 4-byte lengths (what AVCDecoderConfig and HEVCDecoderConfig declare).
func JoinAVCC(nalus [][]byte) []byte {
	b, _ := h264.AVCC(nalus).Marshal() // never fails
	return b
}

// AnnexBToAVCC converts an Annex B access unit to 4-byte length-prefixed
// NAL units.
func AnnexBToAVCC(b []byte) ([]byte, error) {
	nalus, err := SplitAnnexB(b)
	if err != nil {
		return nil, err
	}
	return JoinAVCC(nalus), nil
}

// AVCCToAnnexB converts a length-prefixed access unit (prefixes of
// lengthSize bytes) to Annex B with 4-byte start codes.
func AVCCToAnnexB(b []byte, lengthSize int) ([]byte, error) {
	nalus, err := SplitAVCC(b, lengthSize)
	if err != nil {
		return nil, err
	}
	return JoinAnnexB(nalus), nil
}

// ParamSets follows the parameter sets of an H.264 or H.265 stream that
// carries them in-band (Annex B without a DecoderConfig, or RTP without
// sprop parameters) and builds its decoder configuration from them: an
// avcC (AVCDecoderConfig) or hvcC (HEVCDecoderConfig) record with 4-byte
// NAL lengths. The zero value is not usable: see NewParamSets.
type ParamSets struct {
	hevc bool
	// Current parameter sets by type: SPS, PPS, and VPS for H.265.
	vps, sps, pps [][]byte
	config        []byte
}

// NewParamSets returns a ParamSets for the codec of a WebCodecs codec
// string: avc1/avc3 (H.264) or hvc1/hev1 (H.265).
func NewParamSets(codec string) (*ParamSets, error) {
	prefix, _, _ := strings.Cut(codec, ".")
	switch prefix {
	case "avc1", "avc3":
		return &ParamSets{}, nil
	case "hvc1", "hev1":
		return &ParamSets{hevc: true}, nil
	}
	return nil, fmt.Errorf("codec %q is neither H.264 nor H.265", codec)
}

// IsH265 reports whether the stream is H.265.
func (p *ParamSets) IsH265() bool { return p.hevc }

// paramSetType returns 'V', 'S' or 'P' for a VPS, SPS or PPS NAL unit, 0
// for others.
func (p *ParamSets) paramSetType(nalu []byte) byte {
	if len(nalu) == 0 {
		return 0
	}
	if p.hevc {
		switch (nalu[0] >> 1) & 0x3f {
		case h265NALVPS:
			return 'V'
		case h265NALSPS:
			return 'S'
		case h265NALPPS:
			return 'P'
		}
		return 0
	}
	switch nalu[0] & 0x1f {
	case h264NALSPS:
		return 'S'
	case h264NALPPS:
		return 'P'
	}
	return 0
}

// IsParamSet reports whether the NAL unit is a parameter set (SPS or PPS;
// for H.265 also VPS).
func (p *ParamSets) IsParamSet(nalu []byte) bool { return p.paramSetType(nalu) != 0 }

// IsAUD reports whether the NAL unit is an access unit delimiter, which an
// MP4 sample may leave out.
func (p *ParamSets) IsAUD(nalu []byte) bool {
	if len(nalu) == 0 {
		return false
	}
	if p.hevc {
		return (nalu[0]>>1)&0x3f == 35
	}
	return nalu[0]&0x1f == 9
}

// Update takes the NAL units of one access unit. The parameter sets of
// each type it holds replace the current ones of that type (a keyframe
// normally repeats them all). When that gives a complete set (SPS and PPS,
// for H.265 also VPS) other than the one the current DecoderConfig was
// built from, Update builds the new record and reports changed. The
// NAL units are copied. On error (a parameter set that does not parse)
// the previous state is kept.
func (p *ParamSets) Update(nalus [][]byte) (changed bool, err error) {
	var vps, sps, pps [][]byte
	for _, n := range nalus {
		switch p.paramSetType(n) {
		case 'V':
			vps = append(vps, n)
		case 'S':
			sps = append(sps, n)
		case 'P':
			pps = append(pps, n)
		}
	}
	if vps == nil && sps == nil && pps == nil {
		return false, nil
	}
	nv, ns, np := p.vps, p.sps, p.pps
	if vps != nil {
		nv = vps
	}
	if sps != nil {
		ns = sps
	}
	if pps != nil {
		np = pps
	}
	if equalSets(nv, p.vps) && equalSets(ns, p.sps) && equalSets(np, p.pps) {
		return false, nil
	}
	if len(ns) == 0 || len(np) == 0 || (p.hevc && len(nv) == 0) {
		// Incomplete: keep what came for later access units.
		p.vps, p.sps, p.pps = cloneSets(nv), cloneSets(ns), cloneSets(np)
		return false, nil
	}
	var cfg []byte
	if p.hevc {
		cfg, err = HEVCDecoderConfig(nv, ns, np)
	} else {
		cfg, err = AVCDecoderConfig(ns, np)
	}
	if err != nil {
		return false, err
	}
	p.vps, p.sps, p.pps = cloneSets(nv), cloneSets(ns), cloneSets(np)
	changed = !bytes.Equal(cfg, p.config)
	p.config = cfg
	return changed, nil
}

// DecoderConfig returns the avcC or hvcC record of the current parameter
// sets, nil before Update saw a complete set. The record is replaced, not
// modified, by later updates.
func (p *ParamSets) DecoderConfig() []byte { return p.config }

// InConfig reports whether the NAL unit is one of the parameter sets of
// the current DecoderConfig (byte for byte), which a sample may then leave
// out.
func (p *ParamSets) InConfig(nalu []byte) bool {
	if p.config == nil {
		return false
	}
	var sets [][]byte
	switch p.paramSetType(nalu) {
	case 'V':
		sets = p.vps
	case 'S':
		sets = p.sps
	case 'P':
		sets = p.pps
	default:
		return false
	}
	for _, s := range sets {
		if bytes.Equal(s, nalu) {
			return true
		}
	}
	return false
}

// Track returns the track the current DecoderConfig describes (see
// H264FromConfig and H265FromConfig): codec string, DecoderConfig, size
// and framerate.
func (p *ParamSets) Track() (Track, error) {
	if p.config == nil {
		return Track{}, configError(p.name(), "no complete parameter sets yet")
	}
	if p.hevc {
		return H265FromConfig(p.config)
	}
	return H264FromConfig(p.config)
}

func (p *ParamSets) name() string {
	if p.hevc {
		return "h265"
	}
	return "h264"
}

func equalSets(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func cloneSets(s [][]byte) [][]byte {
	if s == nil {
		return nil
	}
	out := make([][]byte, len(s))
	for i, n := range s {
		out[i] = bytes.Clone(n)
	}
	return out
}

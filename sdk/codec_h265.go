package sdk

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// H.265 NAL unit types used here.
const (
	h265NALVPS = 32
	h265NALSPS = 33
	h265NALPPS = 34
)

// hvcCHeaderLen is the size of the fixed part of an hvcC record.
const hvcCHeaderLen = 23

// H265FromParameterSets returns an H.265 track for a video, a sequence and a
// picture parameter set (NAL units without start codes or length prefixes):
// it builds the hvcC decoder configuration with 4-byte NAL lengths and
// derives the codec string, the size and, when the SPS has VUI timing, the
// framerate.
func H265FromParameterSets(vps, sps, pps []byte) (Track, error) {
	hvcC, err := HEVCDecoderConfig([][]byte{vps}, [][]byte{sps}, [][]byte{pps})
	if err != nil {
		return Track{}, err
	}
	return H265FromConfig(hvcC)
}

// HEVCDecoderConfig builds an HEVCDecoderConfigurationRecord (the body of an
// hvcC box, ISO/IEC 14496-15 §8.3.3.1) from parameter sets, with
// lengthSizeMinusOne 3 and the arrays marked complete (as for an hvc1
// sample entry). The general profile, tier, level and constraint flags,
// chroma format, bit depths and temporal layering come from the first SPS;
// min_spatial_segmentation_idc, parallelismType and avgFrameRate are 0
// (unknown), as ffmpeg writes them for encoders that do not signal them.
func HEVCDecoderConfig(vpss, spss, ppss [][]byte) ([]byte, error) {
	if len(spss) == 0 {
		return nil, configError("h265", "no SPS")
	}
	var sps h265.SPS
	if err := parseH265SPS(&sps, spss[0]); err != nil {
		return nil, err
	}
	rbsp := h264.EmulationPreventionRemove(spss[0][2:])
	if len(rbsp) < 13 {
		return nil, configError("h265", "SPS too short")
	}
	arrays := []struct {
		typ  byte
		nals [][]byte
	}{{h265NALVPS, vpss}, {h265NALSPS, spss}, {h265NALPPS, ppss}}
	size := hvcCHeaderLen
	for _, a := range arrays {
		if len(a.nals) > 0xffff {
			return nil, configError("h265", "too many parameter sets")
		}
		size += 3
		for _, n := range a.nals {
			if len(n) < 2 || len(n) > 0xffff || (n[0]>>1)&0x3f != a.typ {
				return nil, configError("h265", "not a NAL unit of type %d", a.typ)
			}
			size += 2 + len(n)
		}
	}
	if len(vpss) == 0 || len(ppss) == 0 {
		return nil, configError("h265", "need a VPS, an SPS and a PPS")
	}

	b := make([]byte, 0, size)
	b = append(b, 1)
	b = append(b, rbsp[1:13]...) // general_profile_tier_level up to general_level_idc
	layers := sps.MaxSubLayersMinus1 + 1
	var nested byte
	if sps.TemporalIDNestingFlag {
		nested = 1
	}
	b = append(b,
		0xf0, 0x00, // reserved, min_spatial_segmentation_idc
		0xfc,                                  // reserved, parallelismType
		0xfc|byte(sps.ChromaFormatIdc&3),      // reserved, chromaFormat
		0xf8|byte(sps.BitDepthLumaMinus8&7),   // reserved, bitDepthLumaMinus8
		0xf8|byte(sps.BitDepthChromaMinus8&7), // reserved, bitDepthChromaMinus8
		0, 0,                                  // avgFrameRate
		(layers&7)<<3|nested<<2|3, // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne
		byte(len(arrays)),         // numOfArrays
	)
	for _, a := range arrays {
		b = append(b, 0x80|a.typ) // array_completeness 1
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.nals)))
		for _, n := range a.nals {
			b = binary.BigEndian.AppendUint16(b, uint16(len(n)))
			b = append(b, n...)
		}
	}
	return b, nil
}

// HEVCConfig is a parsed HEVCDecoderConfigurationRecord.
type HEVCConfig struct {
	ProfileSpace byte   // general_profile_space, 0 to 3
	Tier         byte   // general_tier_flag
	Profile      byte   // general_profile_idc
	Compat       uint32 // general_profile_compatibility_flags, flag 0 in the top bit
	Constraints  [6]byte
	Level        byte // general_level_idc
	// NALLengthSize is the size of the NAL unit length prefixes of the
	// payload: 1, 2 or 4 bytes.
	NALLengthSize int
	VPS, SPS, PPS [][]byte // aliasing the record
}

// ParseHEVCConfig parses an hvcC record.
func ParseHEVCConfig(b []byte) (HEVCConfig, error) {
	var c HEVCConfig
	if len(b) < hvcCHeaderLen {
		return c, configError("h265", "hvcC too short (%d bytes)", len(b))
	}
	if b[0] != 1 {
		return c, configError("h265", "hvcC version %d", b[0])
	}
	c.ProfileSpace = b[1] >> 6
	c.Tier = b[1] >> 5 & 1
	c.Profile = b[1] & 0x1f
	c.Compat = binary.BigEndian.Uint32(b[2:])
	copy(c.Constraints[:], b[6:12])
	c.Level = b[12]
	c.NALLengthSize = int(b[21]&3) + 1
	if c.NALLengthSize == 3 {
		return c, configError("h265", "NAL length size 3")
	}
	n := int(b[22])
	p := hvcCHeaderLen
	for range n {
		if p+3 > len(b) {
			return c, configError("h265", "truncated hvcC array")
		}
		typ := b[p] & 0x3f
		count := int(binary.BigEndian.Uint16(b[p+1:]))
		p += 3
		for range count {
			if p+2 > len(b) {
				return c, configError("h265", "truncated hvcC NAL unit")
			}
			l := int(binary.BigEndian.Uint16(b[p:]))
			p += 2
			if p+l > len(b) {
				return c, configError("h265", "truncated hvcC NAL unit")
			}
			nal := b[p : p+l : p+l]
			p += l
			switch typ {
			case h265NALVPS:
				c.VPS = append(c.VPS, nal)
			case h265NALSPS:
				c.SPS = append(c.SPS, nal)
			case h265NALPPS:
				c.PPS = append(c.PPS, nal)
			}
		}
	}
	return c, nil
}

// Codec returns the codec string for the record (ISO/IEC 14496-15 Annex
// E.3): hvc1.[A-C]profile.compat.Ttier-level.constraints, with the
// compatibility flags bit-reversed in hex and the constraint bytes in hex
// with trailing zero bytes dropped, e.g. hvc1.1.6.L93.B0.
func (c *HEVCConfig) Codec() string {
	var sb strings.Builder
	sb.WriteString("hvc1.")
	if c.ProfileSpace > 0 {
		sb.WriteByte('A' + c.ProfileSpace - 1)
	}
	sb.WriteString(strconv.Itoa(int(c.Profile)))
	sb.WriteByte('.')
	sb.WriteString(strings.ToUpper(strconv.FormatUint(uint64(bits.Reverse32(c.Compat)), 16)))
	sb.WriteByte('.')
	if c.Tier == 1 {
		sb.WriteByte('H')
	} else {
		sb.WriteByte('L')
	}
	sb.WriteString(strconv.Itoa(int(c.Level)))
	last := len(c.Constraints)
	for last > 0 && c.Constraints[last-1] == 0 {
		last--
	}
	for _, v := range c.Constraints[:last] {
		fmt.Fprintf(&sb, ".%02X", v)
	}
	return sb.String()
}

// H265FromConfig returns an H.265 track for an hvcC record: the codec string
// (see HEVCConfig.Codec), the cropped size from the SPS and, when it has VUI
// timing, the framerate.
func H265FromConfig(hvcC []byte) (Track, error) {
	c, err := ParseHEVCConfig(hvcC)
	if err != nil {
		return Track{}, err
	}
	if len(c.SPS) == 0 {
		return Track{}, configError("h265", "hvcC has no SPS")
	}
	var sps h265.SPS
	if err := parseH265SPS(&sps, c.SPS[0]); err != nil {
		return Track{}, err
	}
	w, h := sps.Width(), sps.Height()
	if w <= 0 || h <= 0 || w > 1<<16 || h > 1<<16 {
		return Track{}, configError("h265", "SPS size %dx%d out of range", w, h)
	}
	t := Track{
		Kind:          KindVideo,
		Codec:         c.Codec(),
		DecoderConfig: hvcC,
		Width:         w,
		Height:        h,
	}
	if fps := sps.FPS(); fps > 0 && fps < 1000 {
		t.Framerate = fps
	}
	return t, nil
}

func parseH265SPS(sps *h265.SPS, b []byte) (err error) {
	defer recoverParse("h265 SPS", &err)
	if len(b) < 3 {
		return configError("h265", "SPS too short")
	}
	if err := sps.Unmarshal(b); err != nil {
		return configError("h265", "SPS: %v", err)
	}
	return nil
}

package sdk

import (
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
)

// av1OBUSequenceHeader is the OBU type of a sequence header.
const av1OBUSequenceHeader = 1

// AV1FromSequenceHeader returns an AV1 track for a sequence header OBU (with
// or without obu_has_size_field): it builds the av1C decoder configuration
// with the sequence header as its configOBUs and derives the codec string
// and the maximum frame size.
func AV1FromSequenceHeader(obu []byte) (Track, error) {
	av1C, err := AV1DecoderConfig(obu)
	if err != nil {
		return Track{}, err
	}
	return AV1FromConfig(av1C)
}

// AV1DecoderConfig builds an AV1CodecConfigurationRecord (the body of an av1C
// box, AV1 ISOBMFF binding §2.3) from a sequence header OBU, which becomes
// its configOBUs, rewritten with obu_has_size_field set if it had none.
func AV1DecoderConfig(obu []byte) ([]byte, error) {
	var sh av1.SequenceHeader
	if err := parseAV1SequenceHeader(&sh, obu); err != nil {
		return nil, err
	}
	obu, err := av1SizedOBU(obu)
	if err != nil {
		return nil, err
	}
	cc := &sh.ColorConfig
	b := make([]byte, 4, 4+len(obu))
	b[0] = 0x81 // marker, version 1
	b[1] = sh.SeqProfile<<5 | sh.SeqLevelIdx[0]&0x1f
	b[2] = flag(sh.SeqTier[0])<<7 | flag(cc.HighBitDepth)<<6 | flag(cc.TwelveBit)<<5 |
		flag(cc.MonoChrome)<<4 | flag(cc.SubsamplingX)<<3 | flag(cc.SubsamplingY)<<2 |
		byte(cc.ChromaSamplePosition)&3
	b[3] = 0 // no initial_presentation_delay
	return append(b, obu...), nil
}

// av1SizedOBU returns obu with obu_has_size_field set.
func av1SizedOBU(obu []byte) ([]byte, error) {
	hdr := 1
	if obu[0]&0x04 != 0 { // obu_extension_flag
		hdr = 2
	}
	if len(obu) < hdr {
		return nil, configError("av1", "truncated OBU header")
	}
	if obu[0]&0x02 != 0 { // obu_has_size_field
		return obu, nil
	}
	size := av1.LEB128(len(obu) - hdr)
	out := make([]byte, 0, len(obu)+size.MarshalSize())
	out = append(out, obu[:hdr]...)
	out[0] |= 0x02
	out = out[:hdr+size.MarshalSize()]
	size.MarshalTo(out[hdr:])
	return append(out, obu[hdr:]...), nil
}

func flag(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// AV1Config is a parsed AV1CodecConfigurationRecord.
type AV1Config struct {
	Profile              byte // seq_profile
	Level                byte // seq_level_idx_0
	Tier                 byte // seq_tier_0
	BitDepth             int  // 8, 10 or 12
	Monochrome           bool
	SubsamplingX         bool
	SubsamplingY         bool
	ChromaSamplePosition byte
	ConfigOBUs           []byte // aliasing the record
}

// ParseAV1Config parses an av1C record.
func ParseAV1Config(b []byte) (AV1Config, error) {
	var c AV1Config
	if len(b) < 4 {
		return c, configError("av1", "av1C too short (%d bytes)", len(b))
	}
	if b[0] != 0x81 {
		return c, configError("av1", "av1C marker/version byte %#02x", b[0])
	}
	c.Profile = b[1] >> 5
	c.Level = b[1] & 0x1f
	c.Tier = b[2] >> 7
	high, twelve := b[2]&0x40 != 0, b[2]&0x20 != 0
	switch {
	case c.Profile == 2 && high && twelve:
		c.BitDepth = 12
	case high:
		c.BitDepth = 10
	default:
		c.BitDepth = 8
	}
	c.Monochrome = b[2]&0x10 != 0
	c.SubsamplingX = b[2]&0x08 != 0
	c.SubsamplingY = b[2]&0x04 != 0
	c.ChromaSamplePosition = b[2] & 3
	c.ConfigOBUs = b[4:]
	return c, nil
}

// Codec returns the codec string for the record (AV1 ISOBMFF binding,
// "Codecs Parameter String"): av01.P.LLT.DD, followed by
// .M.CCC.cp.tc.mc.F only when the stream is monochrome or not 4:2:0 with
// colocated chroma, with colour values from sh when it is not nil and has a
// colour description, else the defaults 1.1.1.0.
func (c *AV1Config) Codec(sh *av1.SequenceHeader) string {
	tier := 'M'
	if c.Tier == 1 {
		tier = 'H'
	}
	s := fmt.Sprintf("av01.%d.%02d%c.%02d", c.Profile, c.Level, tier, c.BitDepth)
	if !c.Monochrome && c.SubsamplingX && c.SubsamplingY && c.ChromaSamplePosition == 0 {
		return s
	}
	cp, tc, mc, full := 1, 1, 1, 0
	if sh != nil {
		if cc := &sh.ColorConfig; cc.ColorDescriptionPresentFlag {
			cp, tc, mc = int(cc.ColorPrimaries), int(cc.TransferCharacteristics), int(cc.MatrixCoefficients)
		}
		if sh.ColorConfig.ColorRange {
			full = 1
		}
	}
	return fmt.Sprintf("%s.%d.%d%d%d.%02d.%02d.%02d.%d", s, flag(c.Monochrome),
		flag(c.SubsamplingX), flag(c.SubsamplingY), c.ChromaSamplePosition, cp, tc, mc, full)
}

// AV1FromConfig returns an AV1 track for an av1C record: the codec string
// (see AV1Config.Codec) and, when the record carries a sequence header in
// its configOBUs, the maximum frame size.
func AV1FromConfig(av1C []byte) (Track, error) {
	c, err := ParseAV1Config(av1C)
	if err != nil {
		return Track{}, err
	}
	t := Track{Kind: KindVideo, DecoderConfig: av1C}
	var sh *av1.SequenceHeader
	if obu := av1FindSequenceHeader(c.ConfigOBUs); obu != nil {
		var h av1.SequenceHeader
		if err := parseAV1SequenceHeader(&h, obu); err != nil {
			return Track{}, err
		}
		sh = &h
		t.Width, t.Height = h.Width(), h.Height()
	}
	t.Codec = c.Codec(sh)
	return t, nil
}

// av1FindSequenceHeader returns the first sequence header OBU in a sequence
// of OBUs with size fields, or nil.
func av1FindSequenceHeader(b []byte) []byte {
	for len(b) > 0 {
		hdr := 1
		if b[0]&0x04 != 0 {
			hdr = 2
		}
		if b[0]&0x02 == 0 || len(b) < hdr+1 {
			return nil // without a size field the OBU is the rest; not expected in av1C
		}
		var size av1.LEB128
		n, err := size.Unmarshal(b[hdr:])
		if err != nil {
			return nil
		}
		end := hdr + n + int(size)
		if end > len(b) || end < hdr+n {
			return nil
		}
		if (b[0]>>3)&0x0f == av1OBUSequenceHeader {
			return b[:end:end]
		}
		b = b[end:]
	}
	return nil
}

func parseAV1SequenceHeader(sh *av1.SequenceHeader, obu []byte) (err error) {
	defer recoverParse("av1 sequence header", &err)
	if len(obu) < 2 || (obu[0]>>3)&0x0f != av1OBUSequenceHeader {
		return configError("av1", "not a sequence header OBU")
	}
	if err := sh.Unmarshal(obu); err != nil {
		return configError("av1", "sequence header: %v", err)
	}
	if len(sh.SeqLevelIdx) == 0 || len(sh.SeqTier) == 0 {
		return configError("av1", "sequence header without operating points")
	}
	return nil
}

package sdk

import (
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
)

// ParameterSets returns the parameter sets of an avcC record (SPS, then
// PPS) or, with h265, of an hvcC record (VPS, SPS, then PPS): what a
// sender puts in front of a keyframe so that a receiver can start there.
// The sets alias config.
func ParameterSets(config []byte, h265 bool) ([][]byte, error) {
	if h265 {
		c, err := ParseHEVCConfig(config)
		if err != nil {
			return nil, err
		}
		return append(append(append([][]byte(nil), c.VPS...), c.SPS...), c.PPS...), nil
	}
	c, err := ParseAVCConfig(config)
	if err != nil {
		return nil, err
	}
	return append(append([][]byte(nil), c.SPS...), c.PPS...), nil
}

// ConfigSets returns the parameter sets of the current DecoderConfig (see
// ParameterSets), nil before there is one.
func (p *ParamSets) ConfigSets() [][]byte {
	if p.config == nil {
		return nil
	}
	sets, err := ParameterSets(p.config, p.hevc)
	if err != nil {
		return nil
	}
	return sets
}

// AV1SequenceHeader returns the sequence header OBU among the configOBUs
// of an av1C record, without its size field (the form of the OBUs that
// mediacommon's av1.Bitstream splits a temporal unit into), or nil when
// the record has none or does not parse. Senders put it in front of a
// keyframe whose temporal unit leaves it to the av1C, as MP4 samples may.
func AV1SequenceHeader(av1C []byte) []byte {
	c, err := ParseAV1Config(av1C)
	if err != nil || len(c.ConfigOBUs) == 0 {
		return nil
	}
	var bs av1.Bitstream
	if unmarshalAV1Bitstream(&bs, c.ConfigOBUs) != nil {
		return nil
	}
	for _, obu := range bs {
		if len(obu) > 0 && (obu[0]>>3)&0x0f == av1OBUSequenceHeader {
			return obu
		}
	}
	return nil
}

// unmarshalAV1Bitstream splits OBUs with size fields, turning a panic of
// the parser on bad input into an error.
func unmarshalAV1Bitstream(bs *av1.Bitstream, b []byte) (err error) {
	defer recoverParse("av1 OBUs", &err)
	return bs.Unmarshal(b)
}

package sdk

import (
	"errors"
	"fmt"

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

// AV1OBUs splits an AV1 temporal unit (OBUs with size fields, the form
// of MP4 samples and of the hang container) into the OBUs a sender hands
// to its packetizer, without their size fields. Temporal delimiters and
// padding are left out: RTP and RTMP mark temporal units themselves. A
// keyframe starts decoding, so one without a sequence header, which an
// MP4 sample may leave to the av1C, gets seq in front (see
// AV1SequenceHeader; nil adds nothing).
func AV1OBUs(tu []byte, keyframe bool, seq []byte) ([][]byte, error) {
	var bs av1.Bitstream
	if err := unmarshalAV1Bitstream(&bs, tu); err != nil {
		return nil, err
	}
	obus := bs[:0]
	hasSeq := false
	for _, obu := range bs {
		switch av1.OBUType((obu[0] >> 3) & 0xf) {
		case av1.OBUTypeTemporalDelimiter, av1.OBUTypePadding:
			continue
		case av1.OBUTypeSequenceHeader:
			hasSeq = true
		}
		obus = append(obus, obu)
	}
	if keyframe && !hasSeq && seq != nil {
		obus = append([][]byte{seq}, obus...)
	}
	if len(obus) == 0 {
		return nil, errors.New("empty AV1 temporal unit")
	}
	return obus, nil
}

// unmarshalAV1Bitstream splits OBUs with size fields (each OBU of the
// result is at least its header byte), turning a panic of the parser on
// bad input into an error.
func unmarshalAV1Bitstream(bs *av1.Bitstream, b []byte) (err error) {
	defer func() {
		if recover() != nil {
			err = errors.New("AV1 temporal unit does not parse")
		}
	}()
	if err := bs.Unmarshal(b); err != nil {
		return fmt.Errorf("AV1 temporal unit: %w", err)
	}
	return nil
}

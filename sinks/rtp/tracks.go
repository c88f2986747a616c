package rtp

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpav1"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtplpcm"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpsimpleaudio"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpvp8"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpvp9"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/moqbridge/moqbridge/sdk"
)

// supportedCodecs names what the sink sends, for errors.
const supportedCodecs = "H.264, H.265, AV1, VP8, VP9, Opus, AAC (with an AudioSpecificConfig), G.711"

// Dynamic payload types of the SDP: one per media, from 96 on (G.711 at
// 8 kHz mono takes its static type, 0 or 8).
const firstDynamicPayloadType = 96

// codecKind is a codec the sink sends.
type codecKind int

const (
	codecH264 codecKind = iota + 1
	codecH265
	codecAV1
	codecVP8
	codecVP9
	codecOpus
	codecAAC
	codecG711
)

func (c codecKind) String() string {
	return [...]string{"", "H.264", "H.265", "AV1", "VP8", "VP9", "Opus", "AAC", "G.711"}[c]
}

// outTrack is one track of the broadcast the sink sends: its RTP payload
// format (what the SDP announces) and how its frames become the payloads
// of gortsplib's encoders.
type outTrack struct {
	t     sdk.Track
	codec codecKind
	// format is the gortsplib format: the SDP's rtpmap and fmtp, and the
	// clock rate.
	format format.Format

	// H.264 and H.265: the NAL length size of length-prefixed payloads
	// (0 for Annex B), and the parameter sets, from the DecoderConfig or
	// followed in band, which every keyframe is sent with.
	lengthSize int
	ps         *sdk.ParamSets

	av1Seq []byte // AV1: the av1C's sequence header OBU, for keyframes without one
}

// newOutTrack maps an sdk.Track to an RTP payload format with payload
// type pt; the error says why the track cannot be sent.
func newOutTrack(t sdk.Track, pt uint8) (*outTrack, error) {
	prefix, _, _ := strings.Cut(t.Codec, ".")
	o := &outTrack{t: t}
	switch prefix {
	case "avc1", "avc3", "hvc1", "hev1":
		o.codec = codecH264
		if prefix[0] == 'h' {
			o.codec = codecH265
		}
		o.ps, _ = sdk.NewParamSets(t.Codec)
		var vps, sps, pps [][]byte
		if len(t.DecoderConfig) > 0 {
			if o.codec == codecH264 {
				c, err := sdk.ParseAVCConfig(t.DecoderConfig)
				if err != nil {
					return nil, err
				}
				o.lengthSize, sps, pps = c.NALLengthSize, c.SPS, c.PPS
			} else {
				c, err := sdk.ParseHEVCConfig(t.DecoderConfig)
				if err != nil {
					return nil, err
				}
				o.lengthSize, vps, sps, pps = c.NALLengthSize, c.VPS, c.SPS, c.PPS
			}
			if _, err := o.ps.Update(append(append(append([][]byte(nil), vps...), sps...), pps...)); err != nil {
				return nil, err
			}
			if o.ps.DecoderConfig() == nil {
				return nil, errors.New("the decoder configuration lacks parameter sets")
			}
		}
		// Without a DecoderConfig (Annex B) the parameter sets come in
		// band only: the SDP has no sprop parameters and receivers take
		// them from the keyframes.
		if o.codec == codecH264 {
			o.format = &format.H264{PayloadTyp: pt, PacketizationMode: 1, SPS: first(sps), PPS: first(pps)}
		} else {
			o.format = &format.H265{PayloadTyp: pt, VPS: first(vps), SPS: first(sps), PPS: first(pps)}
		}
	case "av01":
		o.codec = codecAV1
		o.format = &format.AV1{PayloadTyp: pt}
		o.av1Seq = sdk.AV1SequenceHeader(t.DecoderConfig)
	case "vp8":
		o.codec = codecVP8
		o.format = &format.VP8{PayloadTyp: pt}
	case "vp09":
		o.codec = codecVP9
		o.format = &format.VP9{PayloadTyp: pt}
	case "opus":
		channels := t.Channels
		if len(t.DecoderConfig) > 0 {
			if h, err := sdk.ParseOpusHead(t.DecoderConfig); err == nil {
				channels = int(h.Channels)
			}
		}
		if channels > 2 {
			return nil, fmt.Errorf("Opus with %d channels (RTP here sends mono and stereo Opus)", channels)
		}
		o.codec = codecOpus
		o.format = &format.Opus{PayloadTyp: pt, ChannelCount: max(channels, 1)}
	case "mp4a":
		if len(t.DecoderConfig) == 0 {
			return nil, errors.New("AAC in ADTS form (no AudioSpecificConfig) is not supported")
		}
		var asc mpeg4audio.AudioSpecificConfig
		if err := unmarshalASC(&asc, t.DecoderConfig); err != nil {
			return nil, fmt.Errorf("AAC AudioSpecificConfig: %w", err)
		}
		o.codec = codecAAC
		// AAC-hbr (RFC 3640) with the sizes ffmpeg and gortsplib write.
		o.format = &format.MPEG4Audio{PayloadTyp: pt, Config: &asc, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
	case "ulaw", "alaw":
		rate, channels := t.SampleRate, max(t.Channels, 1)
		if rate <= 0 {
			rate = 8000
		}
		if rate == 8000 && channels == 1 {
			pt = 8 // PCMA (RFC 3551)
			if prefix == "ulaw" {
				pt = 0 // PCMU
			}
		}
		o.codec = codecG711
		o.format = &format.G711{PayloadTyp: pt, MULaw: prefix == "ulaw", SampleRate: rate, ChannelCount: channels}
	default:
		return nil, fmt.Errorf("codec %q cannot be sent over RTP here (supported: %s)", t.Codec, supportedCodecs)
	}
	if isVideo := o.codec <= codecVP9; isVideo != (t.Kind == sdk.KindVideo) {
		return nil, fmt.Errorf("a %s track with the codec %q", t.Kind, t.Codec)
	}
	return o, nil
}

func first(b [][]byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b[0]
}

func (o *outTrack) video() bool { return o.t.Kind == sdk.KindVideo }

// clockRate is the RTP clock rate of the track's payload format.
func (o *outTrack) clockRate() int { return o.format.ClockRate() }

// unmarshalASC parses an AudioSpecificConfig, turning a panic of the
// parser on bad input into an error.
func unmarshalASC(c *mpeg4audio.AudioSpecificConfig, b []byte) (err error) {
	defer func() {
		if recover() != nil {
			err = errors.New("does not parse")
		}
	}()
	return c.Unmarshal(b)
}

// packetizer is a gortsplib encoder behind one signature: the packets of
// one frame, with timestamps relative to the frame's (0 but for G.711,
// which one frame may spread over several packets).
type packetizer func(o *outTrack, payload []byte, key bool) ([]*rtp.Packet, error)

// newPacketizer creates the track's encoder, whose payloads are at most
// maxPayload bytes, with a random SSRC and initial sequence number.
func (o *outTrack) newPacketizer(maxPayload int) (packetizer, uint32, error) {
	pt := o.format.PayloadType()
	switch o.codec {
	case codecH264:
		e := &rtph264.Encoder{PayloadType: pt, PacketizationMode: 1, PayloadMaxSize: maxPayload}
		if err := e.Init(); err != nil {
			return nil, 0, err
		}
		return splitEncoder((*outTrack).nalUnits, e.Encode), *e.SSRC, nil
	case codecH265:
		e := &rtph265.Encoder{PayloadType: pt, PayloadMaxSize: maxPayload}
		if err := e.Init(); err != nil {
			return nil, 0, err
		}
		return splitEncoder((*outTrack).nalUnits, e.Encode), *e.SSRC, nil
	case codecAV1:
		e := &rtpav1.Encoder{PayloadType: pt, PayloadMaxSize: maxPayload}
		if err := e.Init(); err != nil {
			return nil, 0, err
		}
		return splitEncoder((*outTrack).obus, e.Encode), *e.SSRC, nil
	case codecVP8:
		e := &rtpvp8.Encoder{PayloadType: pt, PayloadMaxSize: maxPayload}
		if err := e.Init(); err != nil {
			return nil, 0, err
		}
		return func(_ *outTrack, b []byte, _ bool) ([]*rtp.Packet, error) { return e.Encode(b) }, *e.SSRC, nil
	case codecVP9:
		e := &rtpvp9.Encoder{PayloadType: pt, PayloadMaxSize: maxPayload}
		if err := e.Init(); err != nil {
			return nil, 0, err
		}
		return func(_ *outTrack, b []byte, _ bool) ([]*rtp.Packet, error) { return e.Encode(b) }, *e.SSRC, nil
	case codecOpus:
		e := &rtpsimpleaudio.Encoder{PayloadType: pt, PayloadMaxSize: maxPayload}
		if err := e.Init(); err != nil {
			return nil, 0, err
		}
		return func(_ *outTrack, b []byte, _ bool) ([]*rtp.Packet, error) {
			if len(b) > maxPayload {
				return nil, fmt.Errorf("an Opus packet of %d bytes does not fit in one RTP packet of the MTU", len(b))
			}
			p, err := e.Encode(b)
			if err != nil {
				return nil, err
			}
			p.Marker = false
			return []*rtp.Packet{p}, nil
		}, *e.SSRC, nil
	case codecAAC:
		f := o.format.(*format.MPEG4Audio)
		e := &rtpmpeg4audio.Encoder{PayloadType: pt, SizeLength: f.SizeLength, IndexLength: f.IndexLength,
			IndexDeltaLength: f.IndexDeltaLength, PayloadMaxSize: maxPayload}
		if err := e.Init(); err != nil {
			return nil, 0, err
		}
		return func(_ *outTrack, b []byte, _ bool) ([]*rtp.Packet, error) { return e.Encode([][]byte{b}) }, *e.SSRC, nil
	default: // G.711
		f := o.format.(*format.G711)
		e := &rtplpcm.Encoder{PayloadType: pt, BitDepth: 8, ChannelCount: f.ChannelCount, PayloadMaxSize: maxPayload}
		if err := e.Init(); err != nil {
			return nil, 0, err
		}
		return func(_ *outTrack, b []byte, _ bool) ([]*rtp.Packet, error) { return e.Encode(b) }, *e.SSRC, nil
	}
}

// splitEncoder is the packetizer of a format whose encoder takes a frame
// split into parts (NAL units, OBUs) by split.
func splitEncoder(split func(o *outTrack, b []byte, key bool) ([][]byte, error), encode func([][]byte) ([]*rtp.Packet, error)) packetizer {
	return func(o *outTrack, b []byte, key bool) ([]*rtp.Packet, error) {
		parts, err := split(o, b, key)
		if err != nil {
			return nil, err
		}
		return encode(parts)
	}
}

// nalUnits splits an H.264 or H.265 frame into the NAL units to send:
// access unit delimiters are left out, and a keyframe starts with the
// parameter sets (from the DecoderConfig, or its own in band), so that a
// receiver that joins, or lost packets, can start decoding at any
// keyframe.
func (o *outTrack) nalUnits(b []byte, key bool) ([][]byte, error) {
	var nalus [][]byte
	var err error
	if o.lengthSize == 0 {
		nalus, err = sdk.SplitAnnexB(b)
	} else {
		nalus, err = sdk.SplitAVCC(b, o.lengthSize)
	}
	if err != nil {
		return nil, err
	}
	keep := nalus[:0]
	hasParams := false
	for _, n := range nalus {
		switch {
		case len(n) == 0 || o.ps.IsAUD(n):
			continue
		case o.ps.IsParamSet(n):
			hasParams = true
		}
		keep = append(keep, n)
	}
	if len(keep) == 0 {
		return nil, errors.New("no NAL unit besides access unit delimiters")
	}
	if key && hasParams && o.lengthSize == 0 {
		_, _ = o.ps.Update(keep) // Annex B: follow the parameter sets in band
	}
	if key && !hasParams {
		if sets := o.ps.ConfigSets(); len(sets) > 0 {
			keep = append(sets, keep...)
		}
	}
	return keep, nil
}

// obus splits an AV1 temporal unit into the OBUs RTP carries (RFC 9628:
// no temporal delimiters; gortsplib's encoder writes the sizes), a
// keyframe starting with a sequence header.
func (o *outTrack) obus(b []byte, key bool) ([][]byte, error) {
	return sdk.AV1OBUs(b, key, o.av1Seq)
}

// randomUint32 is a random RTP timestamp base.
func randomUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

package rtmp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"

	"github.com/moqbridge/moqbridge/sdk"
)

// codecKind is a codec the sink can send.
type codecKind int

const (
	codecH264 codecKind = iota + 1
	codecH265
	codecAV1
	codecVP9
	codecAAC
	codecOpus
)

func (c codecKind) String() string {
	return [...]string{"", "H.264", "H.265", "AV1", "VP9", "AAC", "Opus"}[c]
}

// legacy reports whether the codec goes in legacy FLV tags (the others
// need Enhanced RTMP).
func (c codecKind) legacy() bool { return c == codecH264 || c == codecAAC }

// errNotConfigured reports an H.264 or H.265 track in Annex B form whose
// parameter sets have not come yet.
var errNotConfigured = errors.New("no parameter sets yet")

// outTrack is one track of the broadcast that the sink sends: how its
// sdk.Frames become what gortmplib's Writer takes.
type outTrack struct {
	t     sdk.Track
	codec codecKind

	// H.264 and H.265: the NAL length size of length-prefixed payloads,
	// 0 for Annex B (no DecoderConfig), and the parameter sets: from the
	// DecoderConfig, or followed in-band.
	lengthSize int
	ps         *sdk.ParamSets

	asc      *mpeg4audio.AudioSpecificConfig // AAC
	opusHead *opus.IDHeader                  // Opus
	av1Seq   []byte                          // AV1: the sequence header OBU of the av1C, if any
}

// newOutTrack maps an sdk.Track; the error says why it cannot be sent.
func newOutTrack(t sdk.Track) (*outTrack, error) {
	prefix, _, _ := strings.Cut(t.Codec, ".")
	o := &outTrack{t: t}
	switch prefix {
	case "avc1", "avc3", "hvc1", "hev1":
		o.codec = codecH264
		if prefix[0] == 'h' {
			o.codec = codecH265
		}
		o.ps, _ = sdk.NewParamSets(t.Codec)
		if len(t.DecoderConfig) == 0 {
			return o, nil // Annex B, parameter sets in-band
		}
		var sets [][]byte
		if o.codec == codecH264 {
			c, err := sdk.ParseAVCConfig(t.DecoderConfig)
			if err != nil {
				return nil, err
			}
			o.lengthSize, sets = c.NALLengthSize, append(c.SPS, c.PPS...)
		} else {
			c, err := sdk.ParseHEVCConfig(t.DecoderConfig)
			if err != nil {
				return nil, err
			}
			o.lengthSize, sets = c.NALLengthSize, append(append(append([][]byte(nil), c.VPS...), c.SPS...), c.PPS...)
		}
		if _, err := o.ps.Update(sets); err != nil {
			return nil, err
		}
		if o.ps.DecoderConfig() == nil {
			return nil, fmt.Errorf("the decoder configuration lacks parameter sets")
		}
	case "av01":
		o.codec = codecAV1
		o.av1Seq = sdk.AV1SequenceHeader(t.DecoderConfig)
	case "vp09":
		o.codec = codecVP9
	case "mp4a":
		if len(t.DecoderConfig) == 0 {
			return nil, fmt.Errorf("AAC in ADTS form (no AudioSpecificConfig) is not supported")
		}
		var asc mpeg4audio.AudioSpecificConfig
		if err := unmarshalASC(&asc, t.DecoderConfig); err != nil {
			return nil, fmt.Errorf("AAC AudioSpecificConfig: %w", err)
		}
		o.codec, o.asc = codecAAC, &asc
	case "opus":
		head := t.DecoderConfig
		if len(head) == 0 {
			ot, err := sdk.OpusFromChannels(t.Channels)
			if err != nil {
				return nil, err
			}
			head = ot.DecoderConfig
		}
		// mediacommon's IDHeader reads the little-endian fields as
		// big-endian and writes them back the same way, so the header
		// goes out byte for byte as it came.
		var h opus.IDHeader
		if err := h.Unmarshal(head); err != nil {
			return nil, fmt.Errorf("OpusHead: %w", err)
		}
		o.codec, o.opusHead = codecOpus, &h
	default:
		return nil, fmt.Errorf("codec %q cannot be sent over RTMP here (supported: H.264, H.265, AV1, VP9, AAC, Opus)", t.Codec)
	}
	if isVideo := o.codec <= codecVP9; isVideo != (t.Kind == sdk.KindVideo) {
		return nil, fmt.Errorf("a %s track with the codec %q", t.Kind, t.Codec)
	}
	return o, nil
}

// unmarshalASC parses an AudioSpecificConfig, turning a panic of the
// parser on bad input into an error.
func unmarshalASC(c *mpeg4audio.AudioSpecificConfig, b []byte) (err error) {
	defer func() {
		if recover() != nil {
			err = fmt.Errorf("does not parse")
		}
	}()
	return c.Unmarshal(b)
}

func (o *outTrack) video() bool { return o.t.Kind == sdk.KindVideo }

// gortmplibCodec returns the codec gortmplib's Writer announces at the
// start of a connection: for H.264 and H.265 with the current parameter
// sets (errNotConfigured while an Annex B track has none yet).
func (o *outTrack) gortmplibCodec() (codecs.Codec, error) {
	switch o.codec {
	case codecH264:
		cfg := o.ps.DecoderConfig()
		if cfg == nil {
			return nil, errNotConfigured
		}
		c, err := sdk.ParseAVCConfig(cfg)
		if err != nil || len(c.PPS) == 0 {
			return nil, errNotConfigured
		}
		return &codecs.H264{SPS: c.SPS[0], PPS: c.PPS[0]}, nil
	case codecH265:
		cfg := o.ps.DecoderConfig()
		if cfg == nil {
			return nil, errNotConfigured
		}
		c, err := sdk.ParseHEVCConfig(cfg)
		if err != nil || len(c.VPS) == 0 || len(c.SPS) == 0 || len(c.PPS) == 0 {
			return nil, errNotConfigured
		}
		return &codecs.H265{VPS: c.VPS[0], SPS: c.SPS[0], PPS: c.PPS[0]}, nil
	case codecAV1:
		return &codecs.AV1{}, nil
	case codecVP9:
		return &codecs.VP9{}, nil
	case codecAAC:
		return &codecs.MPEG4Audio{Config: o.asc}, nil
	default:
		return &codecs.Opus{IDHeader: o.opusHead}, nil
	}
}

// unit is a frame ready for the writer: the NAL units of an H.264 or H.265
// access unit, or the OBUs of an AV1 temporal unit, or the payload.
type unit struct {
	nalus   [][]byte
	payload []byte
	// newConfig: an Annex B keyframe brought parameter sets other than
	// those the connection announced.
	newConfig bool
}

// prepare splits a frame into what its Writer call takes. For Annex B
// keyframes it follows the in-band parameter sets.
func (o *outTrack) prepare(f *sdk.Frame) (unit, error) {
	switch o.codec {
	case codecH264, codecH265:
		var nalus [][]byte
		var err error
		if o.lengthSize == 0 {
			nalus, err = sdk.SplitAnnexB(f.Payload)
		} else {
			nalus, err = sdk.SplitAVCC(f.Payload, o.lengthSize)
		}
		if err != nil {
			return unit{}, err
		}
		var u unit
		if o.lengthSize == 0 && f.Keyframe {
			if u.newConfig, err = o.ps.Update(nalus); err != nil {
				return unit{}, err
			}
		}
		keep := nalus[:0]
		for _, n := range nalus {
			if !o.ps.IsAUD(n) {
				keep = append(keep, n)
			}
		}
		if len(keep) == 0 {
			return unit{}, fmt.Errorf("no NAL unit besides access unit delimiters")
		}
		u.nalus = keep
		return u, nil
	case codecAV1:
		// gortmplib writes the temporal delimiter.
		obus, err := sdk.AV1OBUs(f.Payload, f.Keyframe, o.av1Seq)
		if err != nil {
			return unit{}, err
		}
		return unit{nalus: obus}, nil
	default:
		return unit{payload: f.Payload}, nil
	}
}

// write sends a prepared frame with its times on the connection's clock.
func (o *outTrack) write(w *gortmplib.Writer, gt *gortmplib.Track, u unit, pts, dts time.Duration) error {
	switch o.codec {
	case codecH264:
		return w.WriteH264(gt, pts, dts, u.nalus)
	case codecH265:
		return w.WriteH265(gt, pts, dts, u.nalus)
	case codecAV1:
		return w.WriteAV1(gt, pts, u.nalus)
	case codecVP9:
		return w.WriteVP9(gt, pts, u.payload)
	case codecAAC:
		return w.WriteMPEG4Audio(gt, pts, u.payload)
	default:
		return w.WriteOpus(gt, pts, u.payload)
	}
}

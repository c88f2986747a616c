package rtp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpav1"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpfragmented"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpvp8"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpvp9"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/moqbridge/moqbridge/sdk"
)

// unit is one frame a depacketizer made of an access unit's packets.
type unit struct {
	offset  int64 // in clock ticks after the access unit's RTP timestamp (several AAC frames in one packet)
	payload []byte
	key     bool
}

// depacketizer turns the packets of whole, undamaged access units of one
// payload format into frames, and knows the format's track.
type depacketizer interface {
	// decode decodes the packets of one access unit: all of them, in
	// sequence order, sharing one timestamp, the last one marked. An
	// error means the access unit is damaged.
	decode(pkts []*rtp.Packet) ([]unit, error)
	// track returns the track once its configuration is known: from the
	// SDP, or from the first access units carrying it in band.
	track() (sdk.Track, bool, error)
	// video reports whether losses must wait for the next keyframe.
	video() bool
	// singlePacket reports whether every packet is a whole access unit
	// (so that a lost packet damages no other).
	singlePacket() bool
	// reset forgets the state of partly decoded packets (after a loss or
	// a change of sender).
	reset()
	// startsAU reports whether a packet is surely the first of an access
	// unit, so that a loss right before it, after an access unit that
	// ended, took nothing of its own. False when unsure.
	startsAU(p *rtp.Packet) bool
	// observe looks at every packet in sequence order, even of access
	// units that turn out damaged: parameter sets sent in packets of
	// their own make the track known although its first keyframe was
	// damaged.
	observe(p *rtp.Packet)
}

// errIncomplete is a decoder that wanted more packets than the access
// unit had.
var errIncomplete = errors.New("incomplete access unit")

// newDepacketizer returns the depacketizer of a supported format.
func newDepacketizer(f format.Format, log *slog.Logger) (depacketizer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch f := f.(type) {
	case *format.H264:
		d := &h26x{newDec: func() (auDecoder, error) { return f.CreateDecoder() }}
		d.ps, _ = sdk.NewParamSets("avc1")
		// Parameter sets from the SDP that do not parse (some cameras
		// announce stale or truncated ones) are ignored: the ones in band
		// are taken instead.
		if f.SPS != nil && f.PPS != nil {
			if t, err := sdk.H264FromParameterSets(f.SPS, f.PPS); err == nil {
				_, _ = d.ps.Update([][]byte{f.SPS, f.PPS})
				d.static = &t
			} else {
				log.Warn("rtp: the SDP's sprop-parameter-sets do not parse; waiting for parameter sets in band", "error", err)
			}
		}
		d.log = log
		return d, d.init()
	case *format.H265:
		d := &h26x{hevc: true, newDec: func() (auDecoder, error) { return f.CreateDecoder() }}
		d.ps, _ = sdk.NewParamSets("hvc1")
		if f.VPS != nil && f.SPS != nil && f.PPS != nil {
			if t, err := sdk.H265FromParameterSets(f.VPS, f.SPS, f.PPS); err == nil {
				_, _ = d.ps.Update([][]byte{f.VPS, f.SPS, f.PPS})
				d.static = &t
			} else {
				log.Warn("rtp: the SDP's sprop-vps/sps/pps do not parse; waiting for parameter sets in band", "error", err)
			}
		}
		d.log = log
		return d, d.init()
	case *format.AV1:
		d := &av1Depacketizer{newDec: f.CreateDecoder}
		return d, d.init()
	case *format.VP8:
		d := &frameDepacketizer{vp8: true, newDec: func() (frameDecoder, error) { return f.CreateDecoder() }}
		return d, d.init()
	case *format.VP9:
		d := &frameDepacketizer{newDec: func() (frameDecoder, error) { return f.CreateDecoder() }}
		return d, d.init()
	case *format.Opus:
		channels := f.ChannelCount
		if channels <= 0 {
			channels = 2
		}
		t, err := sdk.OpusFromChannels(channels)
		if err != nil {
			return nil, err
		}
		d := &audioDepacketizer{t: t, single: true, newDec: func() (func(*rtp.Packet) ([][]byte, error), error) {
			dec, err := f.CreateDecoder()
			if err != nil {
				return nil, err
			}
			return func(p *rtp.Packet) ([][]byte, error) { b, err := dec.Decode(p); return [][]byte{b}, err }, nil
		}}
		return d, d.init()
	case *format.G711:
		codec := "alaw"
		if f.MULaw {
			codec = "ulaw"
		}
		channels := max(f.ChannelCount, 1)
		t := sdk.Track{Kind: sdk.KindAudio, Codec: codec, SampleRate: f.SampleRate, Channels: channels}
		d := &audioDepacketizer{t: t, single: true, newDec: func() (func(*rtp.Packet) ([][]byte, error), error) {
			dec, err := f.CreateDecoder()
			if err != nil {
				return nil, err
			}
			return func(p *rtp.Packet) ([][]byte, error) { b, err := dec.Decode(p); return [][]byte{b}, err }, nil
		}}
		return d, d.init()
	case *format.MPEG4Audio:
		asc, err := f.Config.Marshal()
		if err != nil {
			return nil, fmt.Errorf("AudioSpecificConfig: %w", err)
		}
		t, err := sdk.AACFromConfig(asc)
		if err != nil {
			return nil, fmt.Errorf("AudioSpecificConfig: %w", err)
		}
		d := &audioDepacketizer{t: t, frameTicks: aacFrameTicks(f.Config, f.ClockRate()), newDec: func() (func(*rtp.Packet) ([][]byte, error), error) {
			dec, err := f.CreateDecoder()
			if err != nil {
				return nil, err
			}
			return dec.Decode, nil
		}}
		return d, d.init()
	case *format.MPEG4AudioLATM:
		smc := f.StreamMuxConfig
		cfg := smc.Programs[0].Layers[0].AudioSpecificConfig
		asc, err := cfg.Marshal()
		if err != nil {
			return nil, fmt.Errorf("StreamMuxConfig: %w", err)
		}
		t, err := sdk.AACFromConfig(asc)
		if err != nil {
			return nil, fmt.Errorf("StreamMuxConfig: %w", err)
		}
		d := &audioDepacketizer{t: t, frameTicks: aacFrameTicks(cfg, f.ClockRate()), newDec: func() (func(*rtp.Packet) ([][]byte, error), error) {
			dec, err := f.CreateDecoder()
			if err != nil {
				return nil, err
			}
			return func(p *rtp.Packet) ([][]byte, error) {
				b, err := dec.Decode(p)
				if err != nil {
					return nil, err
				}
				el := mpeg4audio.AudioMuxElement{StreamMuxConfig: smc}
				if err := el.Unmarshal(b); err != nil {
					return nil, fmt.Errorf("AudioMuxElement: %w", err)
				}
				var aus [][]byte
				for _, sub := range el.Payloads {
					if len(sub) > 0 && len(sub[0]) > 0 {
						aus = append(aus, sub[0][0])
					}
				}
				return aus, nil
			}, nil
		}}
		return d, d.init()
	}
	return nil, fmt.Errorf("payload format %s is not supported (supported: %s)", formatName(f), supportedFormats)
}

// aacFrameTicks is the duration of one AAC frame in RTP clock ticks: 1024
// samples (960 with the short frame length) at the core sample rate.
func aacFrameTicks(c *mpeg4audio.AudioSpecificConfig, clockRate int) int64 {
	n := int64(1024)
	if c.FrameLengthFlag {
		n = 960
	}
	if c.SampleRate > 0 && clockRate > 0 {
		n = n * int64(clockRate) / int64(c.SampleRate)
	}
	return n
}

// auDecoder is gortsplib's H.264, H.265 and AV1 decoders: NAL units or
// OBUs per access unit.
type auDecoder interface {
	Decode(*rtp.Packet) ([][]byte, error)
}

// frameDecoder is gortsplib's VP8 and VP9 decoders: one frame per
// access unit.
type frameDecoder interface {
	Decode(*rtp.Packet) ([]byte, error)
}

// decodeAll feeds an access unit's packets to a decoder and returns what
// the last one completed. The caller has marked the last packet, so a
// decoder that still wants more found the access unit incomplete.
func decodeAll[T any](pkts []*rtp.Packet, decode func(*rtp.Packet) (T, error), more ...error) (out T, err error) {
	isMore := func(err error) bool {
		for _, m := range more {
			if errors.Is(err, m) {
				return true
			}
		}
		return false
	}
	for i, p := range pkts {
		out, err = decode(p)
		if err != nil {
			if !isMore(err) {
				return out, err
			}
			if i == len(pkts)-1 {
				return out, errIncomplete
			}
			continue
		}
		if i < len(pkts)-1 {
			return out, errors.New("access unit ended before its last packet")
		}
	}
	return out, nil
}

// h26x depacketizes H.264 and H.265. Frames are 4-byte length-prefixed NAL
// units, without access unit delimiters and parameter sets (the track's
// decoder configuration has them), as the avcC and hvcC built by
// sdk.ParamSets declare.
type h26x struct {
	hevc    bool
	newDec  func() (auDecoder, error)
	dec     auDecoder
	ps      *sdk.ParamSets
	static  *sdk.Track // from the SDP's sprop parameters
	added   bool
	changed bool
	log     *slog.Logger
}

func (d *h26x) init() (err error) {
	d.dec, err = d.newDec()
	return err
}

func (d *h26x) video() bool { return true }
func (d *h26x) startsAU(p *rtp.Packet) bool {
	if d.hevc {
		return h265StartsAU(p.Payload)
	}
	return h264StartsAU(p.Payload)
}
func (d *h26x) singlePacket() bool { return false }
func (d *h26x) reset()             { _ = d.init() }

func (d *h26x) observe(p *rtp.Packet) {
	if d.static != nil || d.ps.DecoderConfig() != nil {
		return
	}
	var nalus [][]byte
	b := p.Payload
	if d.hevc {
		switch {
		case len(b) < 2:
		case (b[0]>>1)&0x3f == 48: // aggregation packet
			nalus = splitAggregated(b[2:])
		default:
			nalus = [][]byte{b}
		}
	} else {
		switch {
		case len(b) < 1:
		case b[0]&0x1f == 24: // STAP-A
			nalus = splitAggregated(b[1:])
		default:
			nalus = [][]byte{b}
		}
	}
	for _, n := range nalus {
		if d.ps.IsParamSet(n) {
			_, _ = d.ps.Update([][]byte{n})
		}
	}
}

// splitAggregated splits the units of an aggregation packet (16-bit
// sizes, each followed by a NAL unit), as far as they are whole.
func splitAggregated(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 2 {
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n == 0 || n > len(b) {
			break
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func (d *h26x) track() (sdk.Track, bool, error) {
	if d.static != nil {
		return *d.static, true, nil
	}
	if d.ps.DecoderConfig() == nil {
		return sdk.Track{}, false, nil
	}
	t, err := d.ps.Track()
	return t, err == nil, err
}

func (d *h26x) decode(pkts []*rtp.Packet) ([]unit, error) {
	more := rtph264.ErrMorePacketsNeeded
	if d.hevc {
		more = rtph265.ErrMorePacketsNeeded
	}
	au, err := decodeAll(pkts, d.dec.Decode, more)
	if err != nil {
		d.reset()
		return nil, err
	}
	var buf []byte
	params := false
	for _, n := range au {
		switch {
		case len(n) == 0 || d.ps.IsAUD(n):
		case d.ps.IsParamSet(n):
			params = true
		default:
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(n)))
			buf = append(buf, n...)
		}
	}
	if params {
		had := d.ps.DecoderConfig() != nil
		changed, err := d.ps.Update(au)
		if err == nil && changed && had && !d.changed && d.static == nil {
			d.changed = true
			d.log.Warn("rtp: the parameter sets changed in mid-stream; the track keeps its first decoder configuration")
		}
	}
	if len(buf) == 0 {
		return nil, nil
	}
	var key bool
	if d.hevc {
		key = h265.IsRandomAccess(au)
	} else {
		key = h264.IsRandomAccess(au)
	}
	return []unit{{payload: buf, key: key}}, nil
}

// av1Depacketizer depacketizes AV1 temporal units into OBUs with sizes,
// without temporal delimiters and padding (as in MP4 samples); its track
// is known at the first sequence header.
// inBandTrack is the track of a format whose configuration comes in
// band (AV1's sequence header, a VP8 or VP9 keyframe): unknown until the
// first access unit that carries it.
type inBandTrack struct {
	t *sdk.Track
}

func (b *inBandTrack) track() (sdk.Track, bool, error) {
	if b.t == nil {
		return sdk.Track{}, false, nil
	}
	return *b.t, true, nil
}

type av1Depacketizer struct {
	newDec func() (*rtpav1.Decoder, error)
	dec    *rtpav1.Decoder
	inBandTrack
}

func (d *av1Depacketizer) init() (err error) {
	d.dec, err = d.newDec()
	return err
}

func (d *av1Depacketizer) video() bool                 { return true }
func (d *av1Depacketizer) startsAU(p *rtp.Packet) bool { return false }
func (d *av1Depacketizer) observe(*rtp.Packet)         {}
func (d *av1Depacketizer) singlePacket() bool          { return false }
func (d *av1Depacketizer) reset()                      { _ = d.init() }

func (d *av1Depacketizer) decode(pkts []*rtp.Packet) ([]unit, error) {
	tu, err := decodeAll(pkts, d.dec.Decode, rtpav1.ErrMorePacketsNeeded)
	if err != nil {
		d.reset()
		return nil, err
	}
	var obus [][]byte
	for _, obu := range tu {
		if len(obu) == 0 {
			continue
		}
		typ := (obu[0] >> 3) & 0xf
		if typ == 1 && d.t == nil { // OBU_SEQUENCE_HEADER
			t, err := sdk.AV1FromSequenceHeader(obu)
			if err != nil {
				return nil, fmt.Errorf("AV1 sequence header: %w", err)
			}
			d.t = &t
		}
		if typ != 2 && typ != 15 { // temporal delimiters and padding stay out of samples
			obus = append(obus, obu)
		}
	}
	if len(obus) == 0 {
		return nil, nil
	}
	payload, err := av1.Bitstream(obus).Marshal()
	if err != nil {
		return nil, fmt.Errorf("AV1 temporal unit: %w", err)
	}
	return []unit{{payload: payload, key: av1IsRandomAccess(tu)}}, nil
}

// av1IsRandomAccess is mediacommon's check, which must not panic on
// hostile OBUs.
func av1IsRandomAccess(tu [][]byte) (key bool) {
	defer func() {
		if recover() != nil {
			key = false
		}
	}()
	return av1.IsRandomAccess2(tu)
}

// frameDepacketizer depacketizes VP8 and VP9 frames; the track is known at
// the first keyframe (its size is in the keyframe's header).
type frameDepacketizer struct {
	vp8    bool
	newDec func() (frameDecoder, error)
	dec    frameDecoder
	inBandTrack
}

func (d *frameDepacketizer) init() (err error) {
	d.dec, err = d.newDec()
	return err
}

func (d *frameDepacketizer) video() bool         { return true }
func (d *frameDepacketizer) observe(*rtp.Packet) {}

// startsAU reads the payload descriptor: VP8's S bit with partition 0
// (RFC 7741 4.2), VP9's B bit (RFC 9628 4.2).
func (d *frameDepacketizer) startsAU(p *rtp.Packet) bool {
	if len(p.Payload) == 0 {
		return false
	}
	if d.vp8 {
		return p.Payload[0]&0x10 != 0 && p.Payload[0]&0x07 == 0
	}
	return p.Payload[0]&0x08 != 0
}
func (d *frameDepacketizer) singlePacket() bool { return false }
func (d *frameDepacketizer) reset()             { _ = d.init() }

func (d *frameDepacketizer) decode(pkts []*rtp.Packet) ([]unit, error) {
	more := rtpvp9.ErrMorePacketsNeeded
	if d.vp8 {
		more = rtpvp8.ErrMorePacketsNeeded
	}
	frame, err := decodeAll(pkts, d.dec.Decode, more)
	if err != nil {
		d.reset()
		return nil, err
	}
	if len(frame) == 0 {
		return nil, nil
	}
	var key bool
	if d.vp8 {
		key = frame[0]&1 == 0 // the frame tag's inverse keyframe bit (RFC 6386 9.1)
		if key && d.t == nil {
			t, err := vp8Track(frame)
			if err != nil {
				return nil, err
			}
			d.t = &t
		}
	} else {
		key = sdk.VP9Keyframe(frame)
		if key && d.t == nil {
			t, err := sdk.VP9FromKeyframe(frame)
			if err != nil {
				return nil, fmt.Errorf("VP9 keyframe: %w", err)
			}
			d.t = &t
		}
	}
	return []unit{{payload: frame, key: key}}, nil
}

// vp8Track reads the size of a VP8 keyframe (RFC 6386 9.1: a 3-byte frame
// tag, the start code 9d 01 2a, then 14-bit width and height).
func vp8Track(frame []byte) (sdk.Track, error) {
	if len(frame) < 10 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return sdk.Track{}, errors.New("VP8 keyframe without its start code")
	}
	w := int(binary.LittleEndian.Uint16(frame[6:]) & 0x3fff)
	h := int(binary.LittleEndian.Uint16(frame[8:]) & 0x3fff)
	return sdk.Track{Kind: sdk.KindVideo, Codec: "vp8", Width: w, Height: h}, nil
}

// audioDepacketizer depacketizes audio whose track the SDP describes:
// Opus and G.711 (a packet per frame), AAC (several frames in a packet,
// or a frame in several).
type audioDepacketizer struct {
	t          sdk.Track
	single     bool
	frameTicks int64 // between the frames of one packet
	newDec     func() (func(*rtp.Packet) ([][]byte, error), error)
	dec        func(*rtp.Packet) ([][]byte, error)
}

func (d *audioDepacketizer) init() (err error) {
	d.dec, err = d.newDec()
	return err
}

func (d *audioDepacketizer) video() bool                     { return false }
func (d *audioDepacketizer) startsAU(p *rtp.Packet) bool     { return d.single }
func (d *audioDepacketizer) observe(*rtp.Packet)             {}
func (d *audioDepacketizer) singlePacket() bool              { return d.single }
func (d *audioDepacketizer) reset()                          { _ = d.init() }
func (d *audioDepacketizer) track() (sdk.Track, bool, error) { return d.t, true, nil }

func (d *audioDepacketizer) decode(pkts []*rtp.Packet) ([]unit, error) {
	aus, err := decodeAll(pkts, d.dec, rtpmpeg4audio.ErrMorePacketsNeeded, rtpfragmented.ErrMorePacketsNeeded)
	if err != nil {
		d.reset()
		return nil, err
	}
	out := make([]unit, 0, len(aus))
	for i, au := range aus {
		if len(au) > 0 {
			out = append(out, unit{offset: int64(i) * d.frameTicks, payload: au, key: true})
		}
	}
	return out, nil
}

// h264StartsAU reports whether an H.264 RTP payload (RFC 6184) begins an
// access unit: its first NAL unit is one that precedes the slices (SEI,
// parameter set, delimiter) or the first slice of a picture
// (first_mb_in_slice 0: the slice header's first bit is set).
func h264StartsAU(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	typ, body := b[0]&0x1f, b[1:]
	switch typ {
	case 24: // STAP-A: the first aggregated unit
		if len(b) < 5 {
			return false
		}
		typ, body = b[3]&0x1f, b[4:]
	case 28: // FU-A: only its start
		if b[1]&0x80 == 0 || len(b) < 3 {
			return false
		}
		typ, body = b[1]&0x1f, b[2:]
	}
	switch typ {
	case 6, 7, 8, 9:
		return true
	case 1, 5:
		return len(body) > 0 && body[0]&0x80 != 0
	}
	return false
}

// h265StartsAU is h264StartsAU for H.265 (RFC 7798; no DONL fields):
// VPS, SPS, PPS, delimiter or prefix SEI, or a slice segment with
// first_slice_segment_in_pic_flag.
func h265StartsAU(b []byte) bool {
	if len(b) < 3 {
		return false
	}
	typ, body := (b[0]>>1)&0x3f, b[2:]
	switch typ {
	case 48: // aggregation packet: the first unit, after its size
		if len(b) < 7 {
			return false
		}
		typ, body = (b[4]>>1)&0x3f, b[6:]
	case 49: // fragmentation unit: only its start
		if b[2]&0x80 == 0 || len(b) < 4 {
			return false
		}
		typ, body = b[2]&0x3f, b[3:]
	}
	switch {
	case typ >= 32 && typ <= 35, typ == 39:
		return true
	case typ <= 31:
		return len(body) > 0 && body[0]&0x80 != 0
	}
	return false
}

package sdk

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// aacSampleRates is the sampling frequency table of ISO/IEC 14496-3.
var aacSampleRates = [...]int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// AACFromConfig returns an AAC track for an AudioSpecificConfig: codec
// string mp4a.40.N with N the first audio object type of the config (2 for
// AAC-LC, 5 for HE-AAC and 29 for HE-AACv2 with explicit signalling), the
// output sample rate (the SBR rate when SBR is signalled explicitly) and the
// channel count. Channels is 0 when the config defers the channel layout to
// a program config element; set it before adding the track.
func AACFromConfig(asc []byte) (Track, error) {
	aot, rate, channels, err := parseASC(asc)
	if err != nil {
		return Track{}, err
	}
	return Track{
		Kind:          KindAudio,
		Codec:         "mp4a.40." + strconv.Itoa(aot),
		DecoderConfig: asc,
		SampleRate:    rate,
		Channels:      channels,
	}, nil
}

// parseASC returns the first audio object type, the output sample rate and
// the channel count of an AudioSpecificConfig. mediacommon parses the
// object types it supports (AAC-LC, SBR, PS); the others only need the
// common header, read here.
func parseASC(asc []byte) (aot, rate, channels int, err error) {
	var c mpeg4audio.AudioSpecificConfig
	if err := unmarshalASC(&c, asc); err == nil {
		aot, rate = int(c.Type), c.SampleRate
		if c.ExtensionType != 0 {
			aot, rate = int(c.ExtensionType), c.ExtensionSampleRate
		}
		channels = aacChannels(int(c.ChannelConfig))
		if c.ExtensionType == mpeg4audio.ObjectTypePS && channels == 1 {
			channels = 2
		}
		return aot, rate, channels, nil
	}
	return parseASCHeader(asc)
}

func unmarshalASC(c *mpeg4audio.AudioSpecificConfig, asc []byte) (err error) {
	defer recoverParse("aac AudioSpecificConfig", &err)
	return c.Unmarshal(asc)
}

// aacChannels maps a channel configuration to a channel count (0: defined
// by a program config element, or unknown).
func aacChannels(cfg int) int {
	switch {
	case cfg >= 1 && cfg <= 6:
		return cfg
	case cfg == 7 || cfg == 12 || cfg == 14:
		return 8
	case cfg == 11:
		return 7
	case cfg == 13:
		return 24
	default:
		return 0
	}
}

// bitReader reads big-endian bit fields.
type bitReader struct {
	b   []byte
	pos int
	err bool
}

func (r *bitReader) read(n int) int {
	v := 0
	for range n {
		if r.pos >= len(r.b)*8 {
			r.err = true
			return 0
		}
		v = v<<1 | int(r.b[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

// parseASCHeader reads the common header of an AudioSpecificConfig
// (ISO/IEC 14496-3 §1.6.2.1): audio object type, sampling frequency and
// channel configuration, with the explicit SBR/PS extension.
func parseASCHeader(asc []byte) (aot, rate, channels int, err error) {
	r := bitReader{b: asc}
	readAOT := func() int {
		v := r.read(5)
		if v == 31 {
			v = 32 + r.read(6)
		}
		return v
	}
	readRate := func() int {
		idx := r.read(4)
		if idx == 15 {
			return r.read(24)
		}
		if idx < len(aacSampleRates) {
			return aacSampleRates[idx]
		}
		return 0
	}
	aot = readAOT()
	rate = readRate()
	cfg := r.read(4)
	if aot == 5 || aot == 29 {
		rate = readRate()
	}
	// Object types end at 45 (ISO/IEC 14496-3:2019); rates above 384 kHz
	// are not audio anyone sends.
	if r.err || aot == 0 || aot > 45 || rate <= 0 || rate > 384000 {
		return 0, 0, 0, configError("aac", "AudioSpecificConfig %x", asc)
	}
	channels = aacChannels(cfg)
	if aot == 29 && channels == 1 {
		channels = 2
	}
	return aot, rate, channels, nil
}

// opusHeadMagic starts every OpusHead.
var opusHeadMagic = []byte("OpusHead")

// OpusHead is the Opus identification header (RFC 7845 §5.1), the
// DecoderConfig of an Opus track. Its multi-byte fields are little-endian
// on the wire.
type OpusHead struct {
	Channels        int
	PreSkip         uint16 // samples at 48 kHz to discard at the start
	InputSampleRate uint32 // informational; Opus always decodes at 48 kHz
	OutputGain      int16  // Q7.8 dB
	MappingFamily   uint8
	// StreamCount, CoupledCount and Mapping are present when
	// MappingFamily is not 0; Mapping has one entry per channel.
	StreamCount  uint8
	CoupledCount uint8
	Mapping      []byte
}

// ParseOpusHead parses an OpusHead. Versions 1 to 15 (major version 0) are
// accepted, as RFC 7845 asks.
func ParseOpusHead(b []byte) (OpusHead, error) {
	var h OpusHead
	if len(b) < 19 || !bytes.Equal(b[:8], opusHeadMagic) {
		return h, configError("opus", "not an OpusHead")
	}
	if b[8] == 0 || b[8] > 15 {
		return h, configError("opus", "OpusHead version %d", b[8])
	}
	h.Channels = int(b[9])
	h.PreSkip = binary.LittleEndian.Uint16(b[10:])
	h.InputSampleRate = binary.LittleEndian.Uint32(b[12:])
	h.OutputGain = int16(binary.LittleEndian.Uint16(b[16:]))
	h.MappingFamily = b[18]
	if h.Channels == 0 {
		return h, configError("opus", "OpusHead with 0 channels")
	}
	if h.MappingFamily == 0 {
		if h.Channels > 2 {
			return h, configError("opus", "mapping family 0 with %d channels", h.Channels)
		}
		return h, nil
	}
	if len(b) < 21+h.Channels {
		return h, configError("opus", "OpusHead channel mapping truncated")
	}
	h.StreamCount, h.CoupledCount = b[19], b[20]
	if h.StreamCount == 0 || h.CoupledCount > h.StreamCount {
		return h, configError("opus", "OpusHead stream counts %d/%d", h.StreamCount, h.CoupledCount)
	}
	h.Mapping = b[21 : 21+h.Channels : 21+h.Channels]
	return h, nil
}

// Marshal encodes the header (version 1).
func (h OpusHead) Marshal() []byte {
	b := make([]byte, 19, 21+len(h.Mapping))
	copy(b, opusHeadMagic)
	b[8] = 1
	b[9] = byte(h.Channels)
	binary.LittleEndian.PutUint16(b[10:], h.PreSkip)
	binary.LittleEndian.PutUint32(b[12:], h.InputSampleRate)
	binary.LittleEndian.PutUint16(b[16:], uint16(h.OutputGain))
	b[18] = h.MappingFamily
	if h.MappingFamily != 0 {
		b = append(b, h.StreamCount, h.CoupledCount)
		b = append(b, h.Mapping...)
	}
	return b
}

// OpusFromHead returns an Opus track for an OpusHead: codec "opus", sample
// rate 48000 (Opus always decodes at 48 kHz, whatever the input rate) and
// the channel count.
func OpusFromHead(head []byte) (Track, error) {
	h, err := ParseOpusHead(head)
	if err != nil {
		return Track{}, err
	}
	return Track{
		Kind:          KindAudio,
		Codec:         "opus",
		DecoderConfig: head,
		SampleRate:    48000,
		Channels:      h.Channels,
	}, nil
}

// OpusFromChannels returns a mono or stereo Opus track for a source that has
// no OpusHead (RTP, for instance): it builds one with mapping family 0, an
// input rate of 48 kHz and a pre-skip of 0, which is what the reference
// exporter assumes when it has nothing better.
func OpusFromChannels(channels int) (Track, error) {
	if channels != 1 && channels != 2 {
		return Track{}, configError("opus", "%d channels need an OpusHead with a channel mapping", channels)
	}
	return OpusFromHead(OpusHead{Channels: channels, InputSampleRate: 48000}.Marshal())
}

package sdk

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
)

// VP9Config holds the fields of a VP Codec Configuration Record (vpcC,
// "VP Codec ISO Media File Format Binding" §2.2), which are also the fields
// of the vp09 codec string. VP9 tracks have no DecoderConfig in the hang
// catalog: the codec string carries everything, and an fMP4 writer rebuilds
// the vpcC box from it (ParseVP9Codec, VP9Config.VPCC).
type VP9Config struct {
	Profile                 uint8 // 0 to 3
	Level                   uint8 // level × 10: 10, 11, 20, … 62
	BitDepth                uint8 // 8, 10 or 12
	ChromaSubsampling       uint8 // 0 4:2:0 vertical, 1 4:2:0 colocated, 2 4:2:2, 3 4:4:4
	ColourPrimaries         uint8 // ISO/IEC 23091-4 codes; 1 BT.709, 2 unspecified
	TransferCharacteristics uint8
	MatrixCoefficients      uint8
	FullRange               bool
}

// Codec returns the codec string vp09.PP.LL.DD, followed by
// .CC.cp.tc.mc.FF when the chroma subsampling is not 4:2:0 colocated, the
// range is full, or a colour value is neither BT.709 (the default) nor
// unspecified — which is what ffmpeg writes for ordinary streams.
func (c VP9Config) Codec() string {
	s := fmt.Sprintf("vp09.%02d.%02d.%02d", c.Profile, c.Level, c.BitDepth)
	plain := func(v uint8) bool { return v == 1 || v == 2 }
	if c.ChromaSubsampling == 1 && !c.FullRange &&
		plain(c.ColourPrimaries) && plain(c.TransferCharacteristics) && plain(c.MatrixCoefficients) {
		return s
	}
	return fmt.Sprintf("%s.%02d.%02d.%02d.%02d.%02d", s, c.ChromaSubsampling,
		c.ColourPrimaries, c.TransferCharacteristics, c.MatrixCoefficients, flag(c.FullRange))
}

// VPCC returns the body of a vpcC box (version 1 FullBox, no codec
// initialization data).
func (c VP9Config) VPCC() []byte {
	return []byte{
		1, 0, 0, 0, // version 1, flags
		c.Profile, c.Level,
		c.BitDepth<<4 | (c.ChromaSubsampling&7)<<1 | flag(c.FullRange),
		c.ColourPrimaries, c.TransferCharacteristics, c.MatrixCoefficients,
		0, 0, // codecIntializationDataSize
	}
}

// ParseVPCC parses the body of a vpcC box.
func ParseVPCC(b []byte) (VP9Config, error) {
	if len(b) < 12 {
		return VP9Config{}, configError("vp9", "vpcC too short (%d bytes)", len(b))
	}
	if b[0] != 1 {
		return VP9Config{}, configError("vp9", "vpcC version %d", b[0])
	}
	c := VP9Config{
		Profile:                 b[4],
		Level:                   b[5],
		BitDepth:                b[6] >> 4,
		ChromaSubsampling:       b[6] >> 1 & 7,
		FullRange:               b[6]&1 != 0,
		ColourPrimaries:         b[7],
		TransferCharacteristics: b[8],
		MatrixCoefficients:      b[9],
	}
	return c, c.check()
}

func (c VP9Config) check() error {
	if c.Profile > 3 {
		return configError("vp9", "profile %d", c.Profile)
	}
	if c.BitDepth != 8 && c.BitDepth != 10 && c.BitDepth != 12 {
		return configError("vp9", "bit depth %d", c.BitDepth)
	}
	if c.ChromaSubsampling > 3 {
		return configError("vp9", "chroma subsampling %d", c.ChromaSubsampling)
	}
	return nil
}

// ParseVP9Codec parses a vp09 codec string, short or long form; omitted
// fields take the defaults of the specification (4:2:0 colocated, BT.709,
// limited range).
func ParseVP9Codec(s string) (VP9Config, error) {
	parts := strings.Split(s, ".")
	if parts[0] != "vp09" || (len(parts) != 4 && len(parts) != 9) {
		return VP9Config{}, configError("vp9", "codec string %q", s)
	}
	v := make([]uint8, 0, 8)
	for _, p := range parts[1:] {
		if len(p) != 2 {
			return VP9Config{}, configError("vp9", "codec string %q", s)
		}
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return VP9Config{}, configError("vp9", "codec string %q", s)
		}
		v = append(v, uint8(n))
	}
	c := VP9Config{Profile: v[0], Level: v[1], BitDepth: v[2],
		ChromaSubsampling: 1, ColourPrimaries: 1, TransferCharacteristics: 1, MatrixCoefficients: 1}
	if len(v) == 8 {
		c.ChromaSubsampling, c.ColourPrimaries, c.TransferCharacteristics, c.MatrixCoefficients =
			v[3], v[4], v[5], v[6]
		if v[7] > 1 {
			return VP9Config{}, configError("vp9", "codec string %q", s)
		}
		c.FullRange = v[7] == 1
	}
	return c, c.check()
}

// VP9FromConfig returns a VP9 track for c: the codec string and no
// DecoderConfig; the caller sets the size.
func VP9FromConfig(c VP9Config) (Track, error) {
	if err := c.check(); err != nil {
		return Track{}, err
	}
	return Track{Kind: KindVideo, Codec: c.Codec()}, nil
}

// vp9Levels maps VP9 levels to their maximum luma picture size (VP9
// bitstream specification, Annex A).
var vp9Levels = []struct {
	level uint8
	size  int
}{
	{10, 36864}, {11, 73728}, {20, 122880}, {21, 245760}, {30, 552960},
	{31, 983040}, {40, 2228224}, {50, 8912896}, {60, 35651584},
}

// VP9FromKeyframe returns a VP9 track for the uncompressed header of a key
// frame: profile, bit depth, chroma subsampling, range and size from the
// header, and the lowest level whose maximum picture size fits (the header
// carries no level). Colours are left unspecified.
func VP9FromKeyframe(frame []byte) (t Track, err error) {
	defer recoverParse("vp9 frame header", &err)
	var h vp9.Header
	if err := h.Unmarshal(frame); err != nil {
		return Track{}, configError("vp9", "frame header: %v", err)
	}
	if h.NonKeyFrame || h.ColorConfig == nil || h.FrameSize == nil {
		return Track{}, configError("vp9", "not a key frame")
	}
	c := VP9Config{
		Profile:                 h.Profile,
		BitDepth:                h.ColorConfig.BitDepth,
		ChromaSubsampling:       h.ChromaSubsampling(),
		FullRange:               h.ColorConfig.ColorRange,
		ColourPrimaries:         2,
		TransferCharacteristics: 2,
		MatrixCoefficients:      2,
		Level:                   62,
	}
	w, hh := h.Width(), h.Height()
	for _, l := range vp9Levels {
		if w*hh <= l.size {
			c.Level = l.level
			break
		}
	}
	t, err = VP9FromConfig(c)
	t.Width, t.Height = w, hh
	return t, err
}

// VP9Keyframe reports whether a VP9 frame is a keyframe (mediacommon
// parses the uncompressed header; a header it cannot parse is not one).
func VP9Keyframe(frame []byte) (key bool) {
	defer func() {
		if recover() != nil {
			key = false
		}
	}()
	var h vp9.Header
	if err := h.Unmarshal(frame); err != nil {
		return false
	}
	return !h.NonKeyFrame && !h.ShowExistingFrame
}

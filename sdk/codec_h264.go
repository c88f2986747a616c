package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// errBadConfig is wrapped by every decoder configuration parsing error.
var errBadConfig = errors.New("invalid decoder configuration")

func configError(codec, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", codec, errBadConfig, fmt.Sprintf(format, args...))
}

// H.264 NAL unit types used here.
const (
	h264NALSPS = 7
	h264NALPPS = 8
)

// H264FromParameterSets returns an H.264 track for a sequence and a picture
// parameter set (NAL units without start codes or length prefixes): it
// builds the avcC decoder configuration with 4-byte NAL lengths and derives
// the codec string (avc1.PPCCLL), the size and, when the SPS has VUI timing,
// the framerate.
func H264FromParameterSets(sps, pps []byte) (Track, error) {
	avcC, err := AVCDecoderConfig([][]byte{sps}, [][]byte{pps})
	if err != nil {
		return Track{}, err
	}
	return H264FromConfig(avcC)
}

// AVCDecoderConfig builds an AVCDecoderConfigurationRecord (the body of an
// avcC box, ISO/IEC 14496-15 §5.3.3.1) from parameter sets, with
// lengthSizeMinusOne 3 (4-byte NAL lengths). Profile, constraint flags and
// level come from the first SPS; for profiles other than Baseline, Main and
// Extended the chroma format and bit depth extension is appended, as ffmpeg
// does.
func AVCDecoderConfig(spss, ppss [][]byte) ([]byte, error) {
	if len(spss) == 0 || len(spss) > 31 {
		return nil, configError("h264", "need 1 to 31 SPS, got %d", len(spss))
	}
	if len(ppss) == 0 || len(ppss) > 255 {
		return nil, configError("h264", "need 1 to 255 PPS, got %d", len(ppss))
	}
	var sps h264.SPS
	if err := parseH264SPS(&sps, spss[0]); err != nil {
		return nil, err
	}
	size := 7
	for _, s := range spss {
		if len(s) < 4 || len(s) > 0xffff || s[0]&0x1f != h264NALSPS {
			return nil, configError("h264", "not an SPS NAL unit")
		}
		size += 2 + len(s)
	}
	for _, p := range ppss {
		if len(p) < 1 || len(p) > 0xffff || p[0]&0x1f != h264NALPPS {
			return nil, configError("h264", "not a PPS NAL unit")
		}
		size += 2 + len(p)
	}
	s0 := spss[0]
	ext := avcHasExtension(s0[1])
	if ext {
		size += 4
	}
	b := make([]byte, 0, size)
	b = append(b, 1, s0[1], s0[2], s0[3], 0xfc|3, 0xe0|byte(len(spss)))
	for _, s := range spss {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	b = append(b, byte(len(ppss)))
	for _, p := range ppss {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	if ext {
		b = append(b,
			0xfc|byte(sps.ChromaFormatIdc&3),
			0xf8|byte(sps.BitDepthLumaMinus8&7),
			0xf8|byte(sps.BitDepthChromaMinus8&7),
			0) // numOfSequenceParameterSetExt
	}
	return b, nil
}

// avcHasExtension reports whether an avcC for this profile_idc carries the
// chroma format and bit depth fields.
func avcHasExtension(profile byte) bool {
	return profile != 66 && profile != 77 && profile != 88
}

// AVCConfig is a parsed AVCDecoderConfigurationRecord.
type AVCConfig struct {
	Profile, Constraints, Level byte
	// NALLengthSize is the size of the NAL unit length prefixes of the
	// payload: 1, 2 or 4 bytes.
	NALLengthSize int
	SPS, PPS      [][]byte // aliasing the record
}

// ParseAVCConfig parses an avcC record.
func ParseAVCConfig(b []byte) (AVCConfig, error) {
	var c AVCConfig
	if len(b) < 7 {
		return c, configError("h264", "avcC too short (%d bytes)", len(b))
	}
	if b[0] != 1 {
		return c, configError("h264", "avcC version %d", b[0])
	}
	c.Profile, c.Constraints, c.Level = b[1], b[2], b[3]
	c.NALLengthSize = int(b[4]&3) + 1
	if c.NALLengthSize == 3 {
		return c, configError("h264", "NAL length size 3")
	}
	p := 5
	var err error
	if c.SPS, p, err = readParamSets(b, p, int(b[p]&0x1f)); err != nil {
		return c, err
	}
	if p >= len(b) {
		return c, configError("h264", "avcC has no PPS count")
	}
	if c.PPS, _, err = readParamSets(b, p, int(b[p])); err != nil {
		return c, err
	}
	if len(c.SPS) == 0 {
		return c, configError("h264", "avcC has no SPS")
	}
	return c, nil
}

// readParamSets reads n 16-bit length-prefixed NAL units from b after the
// count byte at p.
func readParamSets(b []byte, p, n int) ([][]byte, int, error) {
	p++
	out := make([][]byte, 0, n)
	for range n {
		if p+2 > len(b) {
			return nil, p, configError("h26x", "truncated parameter set")
		}
		l := int(binary.BigEndian.Uint16(b[p:]))
		p += 2
		if l == 0 || p+l > len(b) {
			return nil, p, configError("h26x", "truncated parameter set")
		}
		out = append(out, b[p:p+l:p+l])
		p += l
	}
	return out, p, nil
}

// H264FromConfig returns an H.264 track for an avcC record: codec string
// avc1.PPCCLL (profile_idc, constraint flags, level_idc in lowercase hex),
// the cropped size and, when the SPS has VUI timing, the framerate.
func H264FromConfig(avcC []byte) (Track, error) {
	c, err := ParseAVCConfig(avcC)
	if err != nil {
		return Track{}, err
	}
	var sps h264.SPS
	if err := parseH264SPS(&sps, c.SPS[0]); err != nil {
		return Track{}, err
	}
	w, h := sps.Width(), sps.Height()
	if w <= 0 || h <= 0 || w > 1<<16 || h > 1<<16 {
		return Track{}, configError("h264", "SPS size %dx%d out of range", w, h)
	}
	t := Track{
		Kind:          KindVideo,
		Codec:         fmt.Sprintf("avc1.%02x%02x%02x", c.Profile, c.Constraints, c.Level),
		DecoderConfig: avcC,
		Width:         w,
		Height:        h,
	}
	if fps := sps.FPS(); fps > 0 && fps < 1000 {
		t.Framerate = fps
	}
	return t, nil
}

func parseH264SPS(sps *h264.SPS, b []byte) (err error) {
	defer recoverParse("h264 SPS", &err)
	if len(b) < 4 {
		return configError("h264", "SPS too short")
	}
	if err := sps.Unmarshal(b); err != nil {
		return configError("h264", "SPS: %v", err)
	}
	return nil
}

// recoverParse turns a panic in a third-party parser into an error, so
// that bad input can never take a pipeline down.
func recoverParse(what string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: %w: parser panic: %v", what, errBadConfig, r)
	}
}

package sdk

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// The decoder configurations below were produced offline by ffmpeg 5.1
// (libx264, libx265, libaom-av1, libvpx-vp9, aac, libopus) from lavfi test
// sources and extracted from the MP4 sample entries or Ogg headers; the
// expected codec strings for H.264, AV1, VP9 and AAC are the CODECS values
// ffmpeg's DASH muxer wrote for the same files, except where noted.

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

var avcCases = []struct {
	name          string
	avcC          string
	codec         string
	width, height int
	fps           float64
}{
	{
		// hang-format §2.3 example A: libx264 1920x1080 High@4.0.
		name:  "high 1080p",
		avcC:  "01640028ffe1001967640028acb403c0113f2e0220000003002000000791e3065401000468ef3cb0fdf8f800",
		codec: "avc1.640028", width: 1920, height: 1080, fps: 30,
	},
	{
		name:  "high 322x242 cropped",
		avcC:  "0164000dffe1001b6764000dacd94150878888c044000003000400000300c83c50a65801000668ebe3cb22c0fdf8f800",
		codec: "avc1.64000d", width: 322, height: 242, fps: 25,
	},
	{
		name:  "constrained baseline",
		avcC:  "0142c00dffe100186742c00dd90141fb0110000003001000000303c0f142a48001000568cb83cb20",
		codec: "avc1.42c00d", width: 320, height: 240, fps: 30,
	},
	{
		name:  "high 4:2:2 10-bit",
		avcC:  "017a000dffe1001b677a000db6cd9415087888fc0440000003004000000c83c50a658001000668ebe3cb22c0fefafa00",
		codec: "avc1.7a000d", width: 322, height: 242, fps: 25,
	},
}

func TestH264(t *testing.T) {
	for _, tc := range avcCases {
		t.Run(tc.name, func(t *testing.T) {
			avcC := unhex(t, tc.avcC)
			tr, err := H264FromConfig(avcC)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Kind != KindVideo || tr.Codec != tc.codec || tr.Width != tc.width || tr.Height != tc.height || tr.Framerate != tc.fps {
				t.Errorf("got %v %q %dx%d %v fps, want %q %dx%d %v fps", tr.Kind, tr.Codec, tr.Width, tr.Height, tr.Framerate, tc.codec, tc.width, tc.height, tc.fps)
			}
			if !bytes.Equal(tr.DecoderConfig, avcC) {
				t.Error("DecoderConfig is not the avcC")
			}
			// Rebuilding the avcC from the raw parameter sets gives
			// ffmpeg's record byte for byte.
			c, err := ParseAVCConfig(avcC)
			if err != nil {
				t.Fatal(err)
			}
			if c.NALLengthSize != 4 || len(c.SPS) != 1 || len(c.PPS) != 1 {
				t.Fatalf("parsed %+v", c)
			}
			tr2, err := H264FromParameterSets(c.SPS[0], c.PPS[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tr2.DecoderConfig, avcC) {
				t.Errorf("built avcC\n %x\nwant\n %x", tr2.DecoderConfig, avcC)
			}
			if tr2.Codec != tc.codec || tr2.Width != tc.width || tr2.Height != tc.height {
				t.Errorf("from parameter sets: %+v", tr2)
			}
		})
	}
}

var hevcCases = []struct {
	name          string
	hvcC          string
	codec         string // derived by hand from ISO/IEC 14496-15 Annex E (ffmpeg 5.1 writes only "hvc1")
	width, height int
	fps           float64
}{
	{
		name:  "main",
		hvcC:  "0101600000009000000000003cf000fcfdf8f800000f03a00001001840010c01ffff01600000030090000003000003003c959809a10001002b42010101600000030090000003000003003ca00a480f9c9265959a4932bc05a02000000300200000030321a2000100074401c172b46240",
		codec: "hvc1.1.6.L60.90", width: 322, height: 242, fps: 25,
	},
	{
		name:  "main10",
		hvcC:  "0102200000009000000000003cf000fcfdfafa00000f03a00001001840010c01ffff02200000030090000003000003003c959809a10001002c42010102200000030090000003000003003ca00a480f9c92365959a4932bc05a020000030002000003003210a2000100074401c172b46240",
		codec: "hvc1.2.4.L60.90", width: 322, height: 242, fps: 25,
	},
	{
		name:  "main high tier 720p level 4.1",
		hvcC:  "0121600000009000000000007bf000fcfdf8f800000f03a00001001840010c01ffff21600000030090000003000003007b959809a10001002b42010121600000030090000003000003007ba00280802d165959a4932bc05a020000030002000003003c10a2000100074401c172b46240",
		codec: "hvc1.1.6.H123.90", width: 1280, height: 720, fps: 30,
	},
}

func TestH265(t *testing.T) {
	for _, tc := range hevcCases {
		t.Run(tc.name, func(t *testing.T) {
			hvcC := unhex(t, tc.hvcC)
			tr, err := H265FromConfig(hvcC)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Kind != KindVideo || tr.Codec != tc.codec || tr.Width != tc.width || tr.Height != tc.height || tr.Framerate != tc.fps {
				t.Errorf("got %q %dx%d %v fps, want %q %dx%d %v fps", tr.Codec, tr.Width, tr.Height, tr.Framerate, tc.codec, tc.width, tc.height, tc.fps)
			}
			c, err := ParseHEVCConfig(hvcC)
			if err != nil {
				t.Fatal(err)
			}
			if c.NALLengthSize != 4 || len(c.VPS) != 1 || len(c.SPS) != 1 || len(c.PPS) != 1 {
				t.Fatalf("parsed %+v", c)
			}
			tr2, err := H265FromParameterSets(c.VPS[0], c.SPS[0], c.PPS[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tr2.DecoderConfig, hvcC) {
				t.Errorf("built hvcC\n %x\nwant\n %x", tr2.DecoderConfig, hvcC)
			}
		})
	}
}

func TestHEVCCodecString(t *testing.T) {
	// Examples of ISO/IEC 14496-15 Annex E and of the WebCodecs registry.
	cases := []struct {
		c    HEVCConfig
		want string
	}{
		{HEVCConfig{Profile: 1, Compat: 0x60000000, Level: 93, Constraints: [6]byte{0xb0}}, "hvc1.1.6.L93.B0"},
		{HEVCConfig{Profile: 1, Compat: 0x60000000, Level: 120, Constraints: [6]byte{0xb0}}, "hvc1.1.6.L120.B0"},
		{HEVCConfig{ProfileSpace: 1, Tier: 1, Profile: 4, Compat: 0x08000000, Level: 186, Constraints: [6]byte{0x90, 0, 0, 0x20}}, "hvc1.A4.10.H186.90.00.00.20"},
		{HEVCConfig{Profile: 2, Compat: 0x20000000, Level: 0}, "hvc1.2.4.L0"},
	}
	for _, tc := range cases {
		if got := tc.c.Codec(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.c, got, tc.want)
		}
	}
}

var av1Cases = []struct {
	name          string
	av1C          string
	codec         string
	width, height int
}{
	{"8-bit 4:2:0", "81000c000a0b000000043d07c4daf90040", "av01.0.00M.08", 322, 242},
	{"10-bit 4:2:0", "81004c000a0b000000043d07c4daf94040", "av01.0.00M.10", 322, 242},
	// ffmpeg writes the short form av01.1.00M.08 here, which by the
	// codec string rules would mean 4:2:0; the long form carries 4:4:4.
	{"8-bit 4:4:4", "812000000a0a200000043d07c4daf902", "av01.1.00M.08.0.000.01.01.01.0", 322, 242},
}

func TestAV1(t *testing.T) {
	for _, tc := range av1Cases {
		t.Run(tc.name, func(t *testing.T) {
			av1C := unhex(t, tc.av1C)
			tr, err := AV1FromConfig(av1C)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Codec != tc.codec || tr.Width != tc.width || tr.Height != tc.height {
				t.Errorf("got %q %dx%d, want %q %dx%d", tr.Codec, tr.Width, tr.Height, tc.codec, tc.width, tc.height)
			}
			c, err := ParseAV1Config(av1C)
			if err != nil {
				t.Fatal(err)
			}
			tr2, err := AV1FromSequenceHeader(c.ConfigOBUs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tr2.DecoderConfig, av1C) {
				t.Errorf("built av1C %x, want %x", tr2.DecoderConfig, av1C)
			}
			// The same sequence header without obu_has_size_field.
			obu := c.ConfigOBUs
			unsized := append([]byte{obu[0] &^ 0x02}, obu[2:]...)
			tr3, err := AV1FromSequenceHeader(unsized)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tr3.DecoderConfig, av1C) {
				t.Errorf("built av1C from an unsized OBU %x, want %x", tr3.DecoderConfig, av1C)
			}
		})
	}
	// A record without configOBUs still gives the codec string.
	tr, err := AV1FromConfig(unhex(t, "81084c00"))
	if err != nil || tr.Codec != "av01.0.08M.10" || tr.Width != 0 {
		t.Errorf("bare av1C: %+v, %v", tr, err)
	}
}

func TestVP9(t *testing.T) {
	cases := []struct {
		name, vpcC, codec string
		keyframe          string // start of the first frame
		width, height     int
	}{
		{"profile 0", "010000000014820202020000", "vp09.00.20.08", "824983420014100f160438241c184a000b607fd9fa3e8fe7", 322, 242},
		{"profile 2 10-bit", "010000000214a20202020000", "vp09.02.20.10", "92498342000a08078b011c120e0c2c0005307fd5fa3e8fe7", 322, 242},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseVPCC(unhex(t, tc.vpcC))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := VP9FromConfig(c)
			if err != nil || tr.Codec != tc.codec || tr.DecoderConfig != nil {
				t.Fatalf("got %+v, %v; want %q", tr, err, tc.codec)
			}
			if got := c.VPCC(); !bytes.Equal(got, unhex(t, tc.vpcC)) {
				t.Errorf("VPCC() = %x", got)
			}
			// The codec string round-trips up to the colour values
			// the short form leaves out.
			back, err := ParseVP9Codec(tc.codec)
			if err != nil || back.Profile != c.Profile || back.Level != c.Level || back.BitDepth != c.BitDepth {
				t.Errorf("ParseVP9Codec: %+v, %v", back, err)
			}
			kf, err := VP9FromKeyframe(unhex(t, tc.keyframe))
			if err != nil {
				t.Fatal(err)
			}
			if kf.Codec != tc.codec || kf.Width != tc.width || kf.Height != tc.height {
				t.Errorf("from keyframe: %q %dx%d", kf.Codec, kf.Width, kf.Height)
			}
		})
	}
	long := VP9Config{Profile: 1, Level: 41, BitDepth: 8, ChromaSubsampling: 3, ColourPrimaries: 1, TransferCharacteristics: 1, MatrixCoefficients: 1}
	if got := long.Codec(); got != "vp09.01.41.08.03.01.01.01.00" {
		t.Errorf("4:4:4 codec %q", got)
	}
	if back, err := ParseVP9Codec(long.Codec()); err != nil || back != long {
		t.Errorf("long form round trip: %+v, %v", back, err)
	}
	for _, bad := range []string{"vp09", "vp09.00.10", "vp08.00.10.08", "vp09.00.10.09", "vp09.0.10.08", "vp09.00.10.08.01.01.01.01.02"} {
		if _, err := ParseVP9Codec(bad); err == nil {
			t.Errorf("ParseVP9Codec(%q) succeeded", bad)
		}
	}
}

func TestAAC(t *testing.T) {
	cases := []struct {
		name, asc, codec string
		rate, channels   int
	}{
		{"ffmpeg lc 48k stereo with sync extension", "119056e500", "mp4a.40.2", 48000, 2},
		{"ffmpeg lc 44.1k mono with sync extension", "120856e500", "mp4a.40.2", 44100, 1},
		{"lc 48k stereo", "1190", "mp4a.40.2", 48000, 2},
		{"lc 44.1k stereo", "1210", "mp4a.40.2", 44100, 2},
		{"lc 48k mono", "1188", "mp4a.40.2", 48000, 1},
		{"lc explicit rate", "1780562208", "mp4a.40.2", 44100, 1},
		{"he-aac explicit", "2b118800", "mp4a.40.5", 48000, 2},
		{"he-aac v2 explicit", "eb098800", "mp4a.40.29", 48000, 2},
		{"aac-ld (header only)", "b990", "mp4a.40.23", 48000, 2},
		{"escaped object type 42", "f94640", "mp4a.40.42", 48000, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := AACFromConfig(unhex(t, tc.asc))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Kind != KindAudio || tr.Codec != tc.codec || tr.SampleRate != tc.rate || tr.Channels != tc.channels {
				t.Errorf("got %q %d Hz %d ch, want %q %d Hz %d ch", tr.Codec, tr.SampleRate, tr.Channels, tc.codec, tc.rate, tc.channels)
			}
		})
	}
	for _, bad := range []string{"", "10", "0000", "1f90"} {
		if _, err := AACFromConfig(unhex(t, bad)); err == nil {
			t.Errorf("AACFromConfig(%s) succeeded", bad)
		}
	}
}

func TestOpus(t *testing.T) {
	stereo := unhex(t, "4f707573486561640102380180bb0000000000") // libopus stereo, pre-skip 312
	tr, err := OpusFromHead(stereo)
	if err != nil || tr.Codec != "opus" || tr.SampleRate != 48000 || tr.Channels != 2 {
		t.Fatalf("stereo: %+v, %v", tr, err)
	}
	h, err := ParseOpusHead(stereo)
	if err != nil || h.PreSkip != 312 || h.InputSampleRate != 48000 || h.MappingFamily != 0 {
		t.Fatalf("stereo head: %+v, %v", h, err)
	}
	if !bytes.Equal(h.Marshal(), stereo) {
		t.Errorf("Marshal() = %x", h.Marshal())
	}
	// ffmpeg's dOps for the same stream converts to the same OpusHead.
	if got, err := ParseDOps(unhex(t, "000201380000bb80000000")); err != nil || !bytes.Equal(got.Marshal(), stereo) {
		t.Errorf("dOps → OpusHead %x, %v", got.Marshal(), err)
	}

	surround := unhex(t, "4f707573486561640106380180bb00000000010402000401020305") // libopus 5.1
	tr, err = OpusFromHead(surround)
	if err != nil || tr.Channels != 6 {
		t.Fatalf("5.1: %+v, %v", tr, err)
	}
	h, err = ParseOpusHead(surround)
	if err != nil || h.StreamCount != 4 || h.CoupledCount != 2 || !bytes.Equal(h.Mapping, []byte{0, 4, 1, 2, 3, 5}) {
		t.Fatalf("5.1 head: %+v, %v", h, err)
	}
	if !bytes.Equal(h.Marshal(), surround) {
		t.Errorf("Marshal() = %x", h.Marshal())
	}

	mono, err := OpusFromChannels(1)
	if err != nil || mono.Channels != 1 || mono.SampleRate != 48000 {
		t.Fatalf("OpusFromChannels(1): %+v, %v", mono, err)
	}
	if _, err := OpusFromChannels(3); err == nil {
		t.Error("OpusFromChannels(3) succeeded")
	}
	for _, bad := range []string{"", "4f70757348656164", "4f707573486561640002380180bb0000000000", "4f707573486561640103380180bb0000000000", "4f707573486561640106380180bb0000000001"} {
		if _, err := OpusFromHead(unhex(t, bad)); err == nil {
			t.Errorf("OpusFromHead(%s) succeeded", bad)
		}
	}
}

func TestBadConfigs(t *testing.T) {
	ctors := map[string]func([]byte) (Track, error){
		"h264": H264FromConfig, "h265": H265FromConfig, "av1": AV1FromConfig,
		"aac": AACFromConfig, "opus": OpusFromHead,
	}
	for name, fn := range ctors {
		for _, in := range [][]byte{nil, {1}, {1, 2, 3, 4, 5, 6, 7}, bytes.Repeat([]byte{0xff}, 40)} {
			if _, err := fn(in); err == nil {
				t.Errorf("%s(%x) succeeded", name, in)
			} else if !errors.Is(err, errBadConfig) {
				t.Errorf("%s(%x): error %v does not wrap errBadConfig", name, in, err)
			}
		}
	}
	if _, err := H264FromParameterSets([]byte{0x68, 1, 2, 3}, []byte{0x68}); err == nil {
		t.Error("H264FromParameterSets with a PPS as SPS succeeded")
	}
	if _, err := H265FromParameterSets(nil, nil, nil); err == nil {
		t.Error("H265FromParameterSets without parameter sets succeeded")
	}
	if _, err := AV1FromSequenceHeader([]byte{0x12, 0}); err == nil {
		t.Error("AV1FromSequenceHeader with a temporal delimiter succeeded")
	}
}

// FuzzDecoderConfig feeds arbitrary bytes to every decoder configuration
// parser: none may panic, and whatever parses must describe a track.
func FuzzDecoderConfig(f *testing.F) {
	for _, tc := range avcCases {
		f.Add(byte(0), unhex(f, tc.avcC))
	}
	for _, tc := range hevcCases {
		f.Add(byte(1), unhex(f, tc.hvcC))
	}
	for _, tc := range av1Cases {
		f.Add(byte(2), unhex(f, tc.av1C))
	}
	f.Add(byte(3), unhex(f, "119056e500"))
	f.Add(byte(4), unhex(f, "4f707573486561640106380180bb00000000010402000401020305"))
	f.Add(byte(5), unhex(f, "010000000014820202020000"))
	f.Add(byte(6), unhex(f, "824983420014100f160438241c184a000b607fd9fa3e8fe7"))
	f.Add(byte(7), unhex(f, "6764000dacd94150878888c044000003000400000300c83c50a658"))
	f.Add(byte(8), unhex(f, "0a0b000000043d07c4daf90040"))
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		var tr Track
		var err error
		switch which % 9 {
		case 0:
			tr, err = H264FromConfig(b)
		case 1:
			tr, err = H265FromConfig(b)
		case 2:
			tr, err = AV1FromConfig(b)
		case 3:
			tr, err = AACFromConfig(b)
		case 4:
			tr, err = OpusFromHead(b)
		case 5:
			var c VP9Config
			if c, err = ParseVPCC(b); err == nil {
				tr, err = VP9FromConfig(c)
			}
		case 6:
			tr, err = VP9FromKeyframe(b)
		case 7:
			if _, err = AVCDecoderConfig([][]byte{b}, [][]byte{{0x68, 0xce}}); err == nil {
				tr, err = H264FromParameterSets(b, []byte{0x68, 0xce})
			}
		case 8:
			tr, err = AV1FromSequenceHeader(b)
		}
		if err != nil {
			return
		}
		if tr.Codec == "" || (tr.Kind != KindVideo && tr.Kind != KindAudio) {
			t.Fatalf("parsed into %+v", tr)
		}
	})
}

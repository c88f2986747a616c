package sdk

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
)

// The expected samples are ffprobe's packet listing of the test files
// (ffmpeg 5.1, -movflags cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame);
// for the B-frame file ffprobe adds its dts_shift (512) to every pts, which
// is taken off here: in the file the keyframes have composition offset 0
// and the B-frames −512.
var cmafCases = []struct {
	file       string
	timescale  uint32
	audio      bool
	config     string
	dts, pts   []int64
	key        []bool
	sizes      []int
	width      int
	height     int
	channels   int
	sampleRate int
	entry      string
}{
	{
		file: "testdata/h264_bframes_cmaf.mp4", timescale: 15360, entry: "avc1", width: 160, height: 96,
		dts:   []int64{0, 512, 1024, 1536, 2048, 2560, 3072, 3584},
		pts:   []int64{0, 1536, 512, 1024, 2048, 3584, 2560, 3072},
		key:   []bool{true, false, false, false, true, false, false, false},
		sizes: []int{2684, 507, 445, 318, 2160, 513, 358, 374},
	},
	{
		file: "testdata/aac_cmaf.mp4", timescale: 48000, audio: true, entry: "mp4a", config: "119056e500", channels: 2, sampleRate: 48000,
		dts:   []int64{0, 1024, 2048, 3072, 4096, 5120},
		pts:   []int64{0, 1024, 2048, 3072, 4096, 5120},
		key:   []bool{true, true, true, true, true, true},
		sizes: []int{132, 224, 118, 121, 144, 144},
	},
	{
		file: "testdata/opus_cmaf.mp4", timescale: 48000, audio: true, entry: "Opus", config: "4f707573486561640102380180bb0000000000", channels: 2, sampleRate: 48000,
		dts:   []int64{0, 960, 1920, 2880, 3840, 4800},
		pts:   []int64{0, 960, 1920, 2880, 3840, 4800},
		key:   []bool{true, true, true, true, true, true},
		sizes: []int{84, 71, 75, 78, 76, 57},
	},
}

func TestCMAF(t *testing.T) {
	for _, tc := range cmafCases {
		t.Run(tc.file, func(t *testing.T) {
			f := readCMAFFile(t, tc.file)
			in, err := parseCMAFInit(f.init)
			if err != nil {
				t.Fatal(err)
			}
			if in.timescale != tc.timescale || in.audio != tc.audio || in.trackID != 1 || in.entry != tc.entry ||
				in.width != tc.width || in.height != tc.height || in.channels != tc.channels || in.sampleRate != tc.sampleRate {
				t.Errorf("init %+v", in)
			}
			if tc.config != "" && hex.EncodeToString(in.config) != tc.config {
				t.Errorf("config %x, want %s", in.config, tc.config)
			}
			if tc.entry == "avc1" {
				if tr, err := H264FromConfig(in.config); err != nil || tr.Width != 160 {
					t.Errorf("avcC from the init: %+v, %v", tr, err)
				}
			}
			if len(f.frags) != len(tc.dts) {
				t.Fatalf("%d fragments", len(f.frags))
			}
			for i, frag := range f.frags {
				ss, err := in.parseFragment(frag, nil)
				if err != nil {
					t.Fatalf("fragment %d: %v", i, err)
				}
				if len(ss) != 1 {
					t.Fatalf("fragment %d: %d samples", i, len(ss))
				}
				s := ss[0]
				if int64(s.dts) != tc.dts[i] || int64(s.dts)+s.cts != tc.pts[i] || in.keyframe(s.flags) != tc.key[i] || len(s.data) != tc.sizes[i] {
					t.Errorf("fragment %d: dts %d pts %d key %v size %d; want %d %d %v %d", i,
						s.dts, int64(s.dts)+s.cts, in.keyframe(s.flags), len(s.data), tc.dts[i], tc.pts[i], tc.key[i], tc.sizes[i])
				}
				// The sample is the mdat body.
				if mdat := frag[len(frag)-len(s.data):]; !bytes.Equal(mdat, s.data) {
					t.Errorf("fragment %d: payload is not the mdat body", i)
				}
			}
		})
	}
}

// TestCMAFMultiSample reads a fragment with several samples, negative
// composition offsets and explicit sample flags, written by mediacommon.
func TestCMAFMultiSample(t *testing.T) {
	in, err := parseCMAFInit(readCMAFFile(t, "testdata/h264_bframes_cmaf.mp4").init)
	if err != nil {
		t.Fatal(err)
	}
	part := fmp4.Part{SequenceNumber: 7, Tracks: []*fmp4.PartTrack{{
		ID:       1,
		BaseTime: 90000,
		Samples: []*fmp4.Sample{
			{Duration: 512, PTSOffset: 0, Payload: []byte{1, 2, 3}},
			{Duration: 512, PTSOffset: 1024, IsNonSyncSample: true, Payload: []byte{4, 5}},
			{Duration: 512, PTSOffset: -512, IsNonSyncSample: true, Payload: []byte{6}},
		},
	}}}
	var buf seekablebuffer.Buffer
	if err := part.Marshal(&buf); err != nil {
		t.Fatal(err)
	}
	ss, err := in.parseFragment(buf.Bytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		dts, pts int64
		key      bool
		data     []byte
	}{{90000, 90000, true, []byte{1, 2, 3}}, {90512, 91536, false, []byte{4, 5}}, {91024, 90512, false, []byte{6}}}
	if len(ss) != len(want) {
		t.Fatalf("%d samples", len(ss))
	}
	for i, w := range want {
		s := ss[i]
		if int64(s.dts) != w.dts || int64(s.dts)+s.cts != w.pts || in.keyframe(s.flags) != w.key || !bytes.Equal(s.data, w.data) {
			t.Errorf("sample %d: %+v, want %+v", i, s, w)
		}
	}
	// Time conversion is exact to the nanosecond and reversible.
	d, err := in.ticks(91536)
	if err != nil || (int64(d)*int64(in.timescale)+500_000_000)/1_000_000_000 != 91536 {
		t.Errorf("ticks(91536) = %v, %v", d, err)
	}
}

func TestCMAFErrors(t *testing.T) {
	f := readCMAFFile(t, "testdata/h264_bframes_cmaf.mp4")
	in, err := parseCMAFInit(f.init)
	if err != nil {
		t.Fatal(err)
	}
	frag := f.frags[0]
	for name, b := range map[string][]byte{
		"empty":          nil,
		"mdat only":      frag[len(frag)-100:],
		"truncated":      frag[:len(frag)-1],
		"moof only":      frag[:108],
		"garbage header": {0, 0, 0, 4, 'm', 'o', 'o', 'f'},
	} {
		if ss, err := in.parseFragment(b, nil); err == nil {
			t.Errorf("%s: parsed %d samples", name, len(ss))
		}
	}
	for name, b := range map[string][]byte{
		"empty":        nil,
		"ftyp only":    f.init[:28],
		"moov no trak": {0, 0, 0, 8, 'm', 'o', 'o', 'v'},
	} {
		if _, err := parseCMAFInit(b); err == nil {
			t.Errorf("init %s parsed", name)
		}
	}
}

// FuzzCMAF parses arbitrary init segments and fragments (against a real
// init): no panic, no sample outside its fragment, bounded sample counts.
func FuzzCMAF(f *testing.F) {
	var inits [][]byte
	for _, tc := range cmafCases {
		file := readCMAFFile(f, tc.file)
		inits = append(inits, file.init)
		f.Add(true, file.init)
		for _, frag := range file.frags[:2] {
			f.Add(false, frag)
		}
	}
	in, err := parseCMAFInit(inits[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, isInit bool, b []byte) {
		if isInit {
			in, err := parseCMAFInit(b)
			if err != nil {
				return
			}
			if in.timescale == 0 {
				t.Fatal("init without timescale accepted")
			}
			return
		}
		ss, err := in.parseFragment(b, nil)
		if err != nil {
			return
		}
		if len(ss) > maxCMAFSamples {
			t.Fatalf("%d samples", len(ss))
		}
		for _, s := range ss {
			if len(s.data) > len(b) {
				t.Fatal("sample larger than the fragment")
			}
			if _, err := in.ticks(int64(s.dts) + s.cts); err != nil {
				continue
			}
		}
	})
}

// BenchmarkCMAFFragment parses one fragment of a single-sample B-frame
// video track into a reused sample slice, as the reader does per frame.
func BenchmarkCMAFFragment(b *testing.B) {
	f := readCMAFFile(b, "testdata/h264_bframes_cmaf.mp4")
	in, err := parseCMAFInit(f.init)
	if err != nil {
		b.Fatal(err)
	}
	var ss []cmafSample
	b.ReportAllocs()
	for b.Loop() {
		if ss, err = in.parseFragment(f.frags[1], ss); err != nil || len(ss) != 1 {
			b.Fatal(err)
		}
	}
}

package fmp4

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

// annexBClip encodes seconds of a test picture of the given size at 30
// fps with ffmpeg into a raw Annex B stream (-f h264 / -f hevc: parameter
// sets in-band before every keyframe, an access unit delimiter before every
// access unit, no B-frames, GOP 0.5 s) and returns it as a video track
// without a DecoderConfig and its access units, one sample per frame at
// timescale 30.
func annexBClip(t testing.TB, dir, vcodec, size string, seconds int) (sdk.Track, *clipTrack) {
	t.Helper()
	f := dir + "/clip-" + vcodec + "-" + size + ".annexb"
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc2=size=" + size + ":rate=30", "-t", strconv.Itoa(seconds),
		"-c:v", vcodec, "-pix_fmt", "yuv420p", "-g", "15", "-keyint_min", "15", "-bf", "0"}
	hevc := vcodec == "libx265"
	if hevc {
		args = append(args, "-preset", "veryfast", "-x265-params", "log-level=error:aud=1:scenecut=0:bframes=0", "-f", "hevc", f)
	} else {
		args = append(args, "-preset", "veryfast", "-sc_threshold", "0", "-x264-params", "aud=1", "-f", "h264", f)
	}
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := sdk.NewParamSets(map[bool]string{false: "avc1", true: "hvc1"}[hevc])
	ct := &clipTrack{timescale: 30}
	for i, au := range splitAccessUnits(t, b, ps) {
		nalus, err := sdk.SplitAnnexB(au)
		if err != nil {
			t.Fatalf("access unit %d: %v", i, err)
		}
		key := h264.IsRandomAccess(nalus)
		if hevc {
			key = h265.IsRandomAccess(nalus)
		}
		if key {
			if _, err := ps.Update(nalus); err != nil {
				t.Fatal(err)
			}
		}
		ct.samples = append(ct.samples, clipSample{dts: int64(i), pts: int64(i), key: key, data: au})
	}
	tr, err := ps.Track()
	if err != nil {
		t.Fatal(err)
	}
	// As the browser publisher announces it: a codec string, the size,
	// no description.
	tr.DecoderConfig = nil
	tr.Name = "video"
	tr.Framerate = 30
	return tr, ct
}

// splitAccessUnits cuts an Annex B stream before every access unit
// delimiter.
func splitAccessUnits(t testing.TB, b []byte, ps *sdk.ParamSets) [][]byte {
	t.Helper()
	var starts []int // offsets of the start codes of AUDs
	for i := 0; i+4 <= len(b); {
		j := bytes.Index(b[i:], []byte{0, 0, 1})
		if j < 0 {
			break
		}
		sc := i + j
		if sc > 0 && b[sc-1] == 0 {
			sc--
		}
		if n := i + j + 3; n < len(b) && ps.IsAUD(b[n:min(n+2, len(b))]) {
			starts = append(starts, sc)
		}
		i += j + 3
	}
	if len(starts) == 0 || starts[0] != 0 {
		t.Fatalf("the stream does not start with an access unit delimiter")
	}
	var aus [][]byte
	for i, s := range starts {
		end := len(b)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		aus = append(aus, b[s:end])
	}
	return aus
}

// recordTracks is recordInto with the sdk tracks given rather than taken
// from the clip's codecs. With lockstep, every frame waits until the sink
// received the previous ones, so frames arrive in the order written.
func recordTracks(t testing.TB, cfg Config, tracks []sdk.Track, cts []*clipTrack, lockstep ...bool) (*Sink, error) {
	t.Helper()
	s := newTestSink(cfg)
	if len(lockstep) > 0 && lockstep[0] {
		// Every frame as it comes, or the lock step waits a batch per frame.
		s.cfg.ReadBatch = -1
	}
	p, tws := newPipeline(t, tracks...)
	ready := make(chan struct{})
	s.cfg.OnSubscribed = func() { close(ready) }
	started := make(chan struct{})
	s.cfg.OnStart = func() { close(started) }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, p.r) }()
	select {
	case <-ready:
	case err := <-done:
		return s, err
	}
	var pace func(int)
	if len(lockstep) > 0 && lockstep[0] {
		pace = func(i int) {
			deadline := time.Now().Add(10 * time.Second)
			for s.Stats().Frames < uint64(i) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	writeFrames(t, started, tws, cts, pace, done)
	if err := p.w.Close(); err != nil {
		t.Fatal(err)
	}
	return s, <-done
}

// probeSize returns the width and height ffprobe reports for the video.
func probeSize(t testing.TB, f string) string {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "stream=width,height", "-of", "csv=p=0", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", f, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestAnnexBFFmpeg records H.264 and H.265 that ffmpeg wrote as raw Annex
// B (parameter sets in-band, AUDs), announced without a description as the
// browser publisher does: the sample entry is built from the in-band
// parameter sets and the file decodes cleanly with every frame and
// keyframe; its samples are length-prefixed, without AUDs or the
// parameter sets of the sample entry.
func TestAnnexBFFmpeg(t *testing.T) {
	testkit.NeedFFmpeg(t)
	for _, vcodec := range []string{"libx264", "libx265"} {
		t.Run(vcodec, func(t *testing.T) {
			if vcodec == "libx265" && !hasEncoder(t, vcodec) {
				t.Skip("ffmpeg has no libx265")
			}
			tr, ct := annexBClip(t, t.TempDir(), vcodec, "160x96", 3)
			s, err := recordTracks(t, Config{Dir: t.TempDir(), Path: "live/test", VideoTimescale: 15360}, []sdk.Track{tr}, []*clipTrack{ct})
			if err != nil {
				t.Fatal(err)
			}
			files := s.Files()
			if len(files) != 1 {
				t.Fatalf("files %v, want one", files)
			}
			res := testkit.CheckFMP4(t, files[0], "v:0")
			if res.Packets != 90 || res.Decoded != 90 || res.Keyframes != 6 {
				t.Errorf("%d packets, %d decoded, %d keyframes; want 90, 90, 6", res.Packets, res.Decoded, res.Keyframes)
			}
			if got := probeSize(t, files[0]); got != "160,96" {
				t.Errorf("size %s", got)
			}
			out := readClip(t, files[0])
			if len(out) != 1 || len(out[0].samples) != 90 {
				t.Fatalf("read back %d tracks", len(out))
			}
			ps, _ := sdk.NewParamSets(tr.Codec)
			switch c := out[0].codec.(type) {
			case *codecs.H264:
				_, _ = ps.Update([][]byte{c.SPS, c.PPS})
			case *codecs.H265:
				_, _ = ps.Update([][]byte{c.VPS, c.SPS, c.PPS})
			default:
				t.Fatalf("codec %T", c)
			}
			for i, smp := range out[0].samples {
				nalus, err := sdk.SplitAVCC(smp.data, 4)
				if err != nil {
					t.Fatalf("sample %d: %v", i, err)
				}
				for _, n := range nalus {
					if ps.IsAUD(n) || ps.IsParamSet(n) {
						t.Fatalf("sample %d has a NAL unit of type %x", i, n[0])
					}
				}
				want, _ := sdk.SplitAnnexB(ct.samples[i].data)
				var slices [][]byte
				for _, n := range want {
					if !ps.IsAUD(n) && !ps.IsParamSet(n) {
						slices = append(slices, n)
					}
				}
				if !bytes.Equal(smp.data, sdk.JoinAVCC(slices)) {
					t.Fatalf("sample %d differs from the Annex B access unit", i)
				}
			}
		})
	}
}

func hasEncoder(t testing.TB, name string) bool {
	out, err := exec.Command("ffmpeg", "-hide_banner", "-encoders").Output()
	return err == nil && bytes.Contains(out, []byte(" "+name+" "))
}

// TestAnnexBWithAudio records an ffmpeg clip with B-frames and AAC whose
// H.264 was turned into Annex B (AUD, SPS and PPS before every keyframe,
// as h264_mp4toannexb does) and announced without a description: both
// tracks are recorded, the video samples are the original ones byte for
// byte, and the file decodes cleanly.
func TestAnnexBWithAudio(t *testing.T) {
	testkit.NeedFFmpeg(t)
	in := readFFmpegClip(t, makeClip(t, t.TempDir(), 3, "aac"))
	vt := sdkTrack(t, in[0])
	c, err := sdk.ParseAVCConfig(vt.DecoderConfig)
	if err != nil {
		t.Fatal(err)
	}
	annexB := &clipTrack{timescale: in[0].timescale}
	for _, smp := range in[0].samples {
		nalus, err := sdk.SplitAVCC(smp.data, c.NALLengthSize)
		if err != nil {
			t.Fatal(err)
		}
		if smp.key {
			nalus = append([][]byte{{0x09, 0x10}, c.SPS[0], c.PPS[0]}, nalus...)
		}
		smp.data = sdk.JoinAnnexB(nalus)
		annexB.samples = append(annexB.samples, smp)
	}
	vt.DecoderConfig = nil
	s, err := recordTracks(t, Config{Dir: t.TempDir(), Path: "live/test", VideoTimescale: in[0].timescale},
		[]sdk.Track{vt, sdkTrack(t, in[1])}, []*clipTrack{annexB, in[1]})
	if err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	if len(files) != 1 {
		t.Fatalf("files %v, want one", files)
	}
	v := testkit.CheckFMP4(t, files[0], "v:0")
	a := testkit.CheckFMP4(t, files[0], "a:0")
	if v.Packets != len(in[0].samples) || v.Decoded != len(in[0].samples) || a.Packets < len(in[1].samples)-1 {
		t.Errorf("video %+v audio %+v; the clip has %d video and %d audio samples", v, a, len(in[0].samples), len(in[1].samples))
	}
	out := readClip(t, files[0])
	if len(out) != 2 {
		t.Fatalf("%d tracks", len(out))
	}
	for i, smp := range out[0].samples {
		if !bytes.Equal(smp.data, in[0].samples[i].data) {
			t.Fatalf("video sample %d differs from the original", i)
		}
	}
}

// TestAnnexBParameterSetChange records an Annex B track whose encoder is
// reconfigured (160x96, then 320x192, timestamps going on): the recording
// goes on in a new file at the keyframe with the new parameter sets; each
// file decodes cleanly at its size and no frame is lost.
func TestAnnexBParameterSetChange(t *testing.T) {
	testkit.NeedFFmpeg(t)
	dir := t.TempDir()
	tr, a := annexBClip(t, dir, "libx264", "160x96", 1)
	_, b := annexBClip(t, dir, "libx264", "320x192", 1)
	for _, smp := range b.samples {
		smp.dts += int64(len(a.samples))
		smp.pts += int64(len(a.samples))
		a.samples = append(a.samples, smp)
	}
	s, err := recordTracks(t, Config{Dir: t.TempDir(), Path: "live/test"}, []sdk.Track{tr}, []*clipTrack{a})
	if err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	if len(files) != 2 {
		t.Fatalf("files %v, want two", files)
	}
	for i, want := range []string{"160,96", "320,192"} {
		res := testkit.CheckFMP4(t, files[i], "v:0")
		if res.Packets != 30 || res.Decoded != 30 || res.Keyframes != 2 {
			t.Errorf("%s: %+v, want 30 frames and 2 keyframes", files[i], res)
		}
		if got := probeSize(t, files[i]); got != want {
			t.Errorf("%s: size %s, want %s", files[i], got, want)
		}
	}
}

// TestAnnexBNoParameterSets records audio with an Annex B video track
// that never brings parameter sets: the video is left out of the file
// (mvhd's next_track_ID still above its ID) and the audio is recorded.
func TestAnnexBNoParameterSets(t *testing.T) {
	in := readClip(t, "../../sdk/testdata/opus_cmaf.mp4")
	vt := sdk.Track{Name: "video", Kind: sdk.KindVideo, Codec: "avc1.64000c", Width: 160, Height: 96}
	video := &clipTrack{timescale: 1000}
	for i := range 10 {
		video.samples = append(video.samples, clipSample{dts: int64(i * 33), pts: int64(i * 33), key: i == 0,
			data: sdk.JoinAnnexB([][]byte{{0x65, 0x88, byte(i)}})})
	}
	s, err := recordTracks(t, Config{Dir: t.TempDir(), Path: "live/test"}, []sdk.Track{vt, sdkTrack(t, in[0])}, []*clipTrack{video, in[0]})
	if err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	out := readClip(t, files[0])
	if len(out) != 1 || out[0].id != 2 || len(out[0].samples) != len(in[0].samples) {
		t.Fatalf("recorded %d tracks", len(out))
	}
	if _, ok := out[0].codec.(*codecs.Opus); !ok {
		t.Fatalf("codec %T", out[0].codec)
	}
	b, _ := os.ReadFile(files[0])
	i := bytes.Index(b, []byte("mvhd"))
	if next := int(b[i-4+104])<<24 | int(b[i-4+105])<<16 | int(b[i-4+106])<<8 | int(b[i-4+107]); next != 3 {
		t.Errorf("next_track_ID %d, want 3", next)
	}
	if s.Stats().Dropped < 10 {
		t.Errorf("stats %+v: the video frames were not dropped", s.Stats())
	}
}

// TestAnnexBLateParameterSets records AAC with an Annex B H.264 track
// whose keyframes lack parameter sets for the first 6 s: the audio, which
// waits at most 5 s for video, starts a file of its own; the first
// keyframe with parameter sets ends it, and the recording goes on in a
// second file with both tracks from that keyframe. Both decode cleanly.
func TestAnnexBLateParameterSets(t *testing.T) {
	testkit.NeedFFmpeg(t)
	in := readFFmpegClip(t, makeClip(t, t.TempDir(), 8, "aac"))
	vt := sdkTrack(t, in[0])
	c, err := sdk.ParseAVCConfig(vt.DecoderConfig)
	if err != nil {
		t.Fatal(err)
	}
	annexB := &clipTrack{timescale: in[0].timescale}
	late := int64(6 * in[0].timescale)
	first := -1 // index of the first keyframe with parameter sets
	for i, smp := range in[0].samples {
		nalus, err := sdk.SplitAVCC(smp.data, c.NALLengthSize)
		if err != nil {
			t.Fatal(err)
		}
		if smp.key && smp.dts >= late {
			nalus = append([][]byte{c.SPS[0], c.PPS[0]}, nalus...)
			if first < 0 {
				first = i
			}
		}
		smp.data = sdk.JoinAnnexB(nalus)
		annexB.samples = append(annexB.samples, smp)
	}
	vt.DecoderConfig = nil
	s, err := recordTracks(t, Config{Dir: t.TempDir(), Path: "live/test", VideoTimescale: in[0].timescale},
		[]sdk.Track{vt, sdkTrack(t, in[1])}, []*clipTrack{annexB, in[1]}, true)
	if err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	if len(files) != 2 {
		t.Fatalf("files %v, want two", files)
	}
	if got := probeStreamTypes(t, files[0]); got != "audio" {
		t.Errorf("%s has %s, want audio only", files[0], got)
	}
	if got := probeStreamTypes(t, files[1]); got != "video,audio" {
		t.Errorf("%s has %s, want video and audio", files[1], got)
	}
	a0 := testkit.CheckFMP4(t, files[0], "a:0")
	v := testkit.CheckFMP4(t, files[1], "v:0")
	a1 := testkit.CheckFMP4(t, files[1], "a:0")
	if want := len(in[0].samples) - first; v.Packets != want || v.Decoded != want {
		t.Errorf("video %+v, want %d frames", v, want)
	}
	if n := a0.Packets + a1.Packets; n < len(in[1].samples)-1 {
		t.Errorf("audio %d + %d packets, the clip has %d", a0.Packets, a1.Packets, len(in[1].samples))
	}
}

// probeStreamTypes lists the codec types of a file's streams.
func probeStreamTypes(t testing.TB, f string) string {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", f, err, out)
	}
	return strings.Join(strings.Fields(string(out)), ",")
}

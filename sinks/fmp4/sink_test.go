package fmp4

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

const childEnv = "MOQBRIDGE_FMP4_CHILD"

// TestMain fails the package if a test leaves a goroutine running. With
// childEnv set, the binary is the recording process of TestKillMidSegment.
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childRecord(spec))
	}
	goleak.VerifyTestMain(m)
}

// output reads the single file the sink recorded.
func output(t *testing.T, s *Sink) []*clipTrack {
	t.Helper()
	files := s.Files()
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	return readClip(t, files[0])
}

// compare checks that out has the samples of in: the same bytes, keyframe
// flags and presentation times (less the common origin), and, for video,
// decode times equal to the input's shifted so that the first keyframe has
// PTS = DTS (the reconstruction of hang-format §5.3).
func compare(t *testing.T, in, out []*clipTrack, origin time.Duration) {
	t.Helper()
	if len(in) != len(out) {
		t.Fatalf("%d tracks, want %d", len(out), len(in))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.timescale != b.timescale {
			t.Errorf("track %d timescale %d, want %d", i, b.timescale, a.timescale)
		}
		if len(a.samples) != len(b.samples) {
			t.Errorf("track %d: %d samples, want %d", i, len(b.samples), len(a.samples))
			continue
		}
		o := ticks(origin, a.timescale)
		shift := a.samples[0].pts - a.samples[0].dts
		for j, s := range a.samples {
			g := b.samples[j]
			if string(g.data) != string(s.data) {
				t.Errorf("track %d sample %d: payload differs", i, j)
			}
			if g.key != s.key {
				t.Errorf("track %d sample %d: key %v, want %v", i, j, g.key, s.key)
			}
			if g.pts != s.pts-o {
				t.Errorf("track %d sample %d: pts %d, want %d", i, j, g.pts, s.pts-o)
			}
			if g.dts != s.dts+shift-o {
				t.Errorf("track %d sample %d: dts %d, want %d", i, j, g.dts, s.dts+shift-o)
			}
		}
	}
}

func firstPTS(cts []*clipTrack) time.Duration {
	first := time.Duration(-1)
	for _, ct := range cts {
		if d := tickTime(ct.samples[0].pts, ct.timescale); first < 0 || d < first {
			first = d
		}
	}
	return first
}

// TestRoundTripH264AAC records H.264 with B-frames and AAC and reads the
// file back with mediacommon.
func TestRoundTripH264AAC(t *testing.T) {
	in := append(readClip(t, "../../sdk/testdata/h264_bframes_cmaf.mp4"), readClip(t, "../../sdk/testdata/aac_cmaf.mp4")...)
	s, err := record(t, Config{Dir: t.TempDir(), Path: "live/test", VideoTimescale: in[0].timescale}, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := output(t, s)
	compare(t, in, out, firstPTS(in))
	if _, ok := out[0].codec.(*codecs.H264); !ok {
		t.Errorf("video codec %T", out[0].codec)
	}
	if _, ok := out[1].codec.(*codecs.MPEG4Audio); !ok {
		t.Errorf("audio codec %T", out[1].codec)
	}
}

// TestRoundTripOpus records Opus alone, in several fragments.
func TestRoundTripOpus(t *testing.T) {
	in := readClip(t, "../../sdk/testdata/opus_cmaf.mp4")
	s, err := record(t, Config{Dir: t.TempDir(), Path: "live/test", PartDuration: 40 * time.Millisecond}, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := output(t, s)
	compare(t, in, out, firstPTS(in))
	b, _ := os.ReadFile(s.Files()[0])
	if n := strings.Count(string(b), "moof"); n < 2 {
		t.Errorf("%d fragments, want several", n)
	}
}

// TestFFprobe checks recordings of longer ffmpeg-made clips with ffprobe
// and ffmpeg, as check-fmp4.sh does.
func TestFFprobe(t *testing.T) {
	testkit.NeedFFmpeg(t)
	for _, audio := range []string{"aac", "opus"} {
		t.Run(audio, func(t *testing.T) {
			in := readFFmpegClip(t, makeClip(t, t.TempDir(), 3, audio))
			s, err := record(t, Config{Dir: t.TempDir(), Path: "live/test", VideoTimescale: in[0].timescale}, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			f := s.Files()[0]
			compare(t, in, readClip(t, f), firstPTS(in))
			v := testkit.CheckFMP4(t, f, "v:0")
			a := testkit.CheckFMP4(t, f, "a:0")
			if v.Packets != len(in[0].samples) || v.Decoded != len(in[0].samples) || v.Keyframes != 6 {
				t.Errorf("video %+v, want %d packets and frames, 6 keyframes", v, len(in[0].samples))
			}
			if a.Packets != len(in[1].samples) {
				t.Errorf("audio %+v, want %d packets", a, len(in[1].samples))
			}
		})
	}
}

// TestRotation records several segment files that each pass the checks.
func TestRotation(t *testing.T) {
	testkit.NeedFFmpeg(t)
	in := readFFmpegClip(t, makeClip(t, t.TempDir(), 4, "aac"))
	dir := t.TempDir()
	s, err := record(t, Config{Dir: dir, Path: "/live/test", FileTemplate: "{path}/{start:20060102}-{seq}.mp4", SegmentDuration: time.Second}, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	if len(files) < 3 {
		t.Fatalf("files %v, want at least 3", files)
	}
	total := 0
	for _, f := range files {
		if !strings.HasPrefix(f, filepath.Join(dir, "live", "test")+"/") {
			t.Errorf("file %s outside %s/live/test", f, dir)
		}
		r := testkit.CheckFMP4(t, f, "v:0")
		testkit.CheckFMP4(t, f, "a:0")
		total += r.Packets
	}
	if total != len(in[0].samples) {
		t.Errorf("%d video packets over %d files, want %d", total, len(files), len(in[0].samples))
	}
}

// TestRetention deletes the oldest segments beyond MaxTotalBytes and
// MaxAge.
func TestRetention(t *testing.T) {
	in := append(readClip(t, "../../sdk/testdata/h264_bframes_cmaf.mp4"), readClip(t, "../../sdk/testdata/aac_cmaf.mp4")...)
	// Repeat the clip so that there are many GOPs.
	v, a := in[0], in[1]
	var vs, as []clipSample
	for rep := range 6 {
		for _, s := range v.samples {
			s.dts += int64(rep) * 4096
			s.pts += int64(rep) * 4096
			vs = append(vs, s)
		}
	}
	for rep := range 6 {
		for _, s := range a.samples[:4] {
			s.dts += int64(rep) * 12800
			s.pts += int64(rep) * 12800
			as = append(as, s)
		}
	}
	v.samples, a.samples = vs, as
	dir := t.TempDir()
	s, err := record(t, Config{Dir: dir, Path: "x", FileTemplate: "{seq}.mp4", SegmentDuration: time.Nanosecond, MaxTotalBytes: 20000}, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	if len(files) < 6 {
		t.Fatalf("files %v", files)
	}
	var left []string
	var total int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			left = append(left, f)
			total += st.Size()
		}
	}
	if len(left) == 0 || len(left) == len(files) || total > 20000 {
		t.Errorf("left %v (%d bytes) of %v", left, total, files)
	}
	if left[len(left)-1] != files[len(files)-1] {
		t.Errorf("newest segment deleted: left %v", left)
	}

	// MaxAge: with a clock that jumps an hour per call, every finished
	// segment but the last is too old by the time the next one closes.
	dir = t.TempDir()
	now := time.Unix(0, 0)
	s, err = record(t, Config{Dir: dir, FileTemplate: "{seq}.mp4", SegmentDuration: time.Nanosecond, MaxAge: time.Minute,
		Now: func() time.Time { now = now.Add(time.Hour); return now }}, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || len(s.Files()) < 6 {
		t.Errorf("left %v of %v", entries, s.Files())
	}
}

// TestUnwritableDir fails with an error naming the directory.
func TestUnwritableDir(t *testing.T) {
	in := readClip(t, "../../sdk/testdata/opus_cmaf.mp4")
	parent := t.TempDir()
	blocker := filepath.Join(parent, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(blocker, "rec") // below a regular file: never writable, even as root
	_, err := record(t, Config{Dir: dir}, in, nil)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err %v, want one naming %s", err, dir)
	}
}

// TestGracefulStop cancels the context mid-broadcast: the open fragment
// is written and the file is complete.
func TestGracefulStop(t *testing.T) {
	in := readClip(t, "../../sdk/testdata/h264_bframes_cmaf.mp4")
	p, tws := newPipeline(t, sdkTrack(t, in[0]))
	s := New(Config{Dir: t.TempDir(), VideoTimescale: in[0].timescale, Logger: slog.New(slog.DiscardHandler)})
	ready := make(chan struct{})
	s.cfg.OnSubscribed = func() { close(ready) }
	started := make(chan struct{})
	s.cfg.OnStart = func() { close(started) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, p.r) }()
	<-ready
	writeFrames(t, started, tws, in, nil, done)
	// Cancel once the sink has every frame: the second group is still
	// pending (no keyframe follows it) and must be flushed on the way out.
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Frames < uint64(len(in[0].samples)) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if st := s.Stats(); st.Fragments != 1 {
		t.Errorf("stats %+v before the stop, want one fragment", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := output(t, s)
	if len(out[0].samples) != len(in[0].samples) {
		t.Errorf("%d samples, want %d", len(out[0].samples), len(in[0].samples))
	}
}

// TestDiscontinuity drops video until the next keyframe after lost media
// and keeps decode times increasing.
func TestDiscontinuity(t *testing.T) {
	in := readClip(t, "../../sdk/testdata/h264_bframes_cmaf.mp4")
	cfg := New(Config{VideoTimescale: 15360, Logger: slog.New(slog.DiscardHandler)}).cfg
	rec, err := newRecorder(&cfg, []sdk.Track{sdkTrack(t, in[0])})
	if err != nil {
		t.Fatal(err)
	}
	rec.setOrigin(0)
	var got []int64
	rec.cfg.Dir = t.TempDir()
	fs := interleave(in)
	for i, tf := range fs {
		f := tf.f
		if i == 1 {
			f.Discontinuity = true // a non-key frame after a loss: dropped with the rest of its group
		}
		if err := rec.frame(0, &f); err != nil {
			t.Fatal(err)
		}
	}
	// A rewound keyframe is dropped too.
	old := fs[0].f
	if err := rec.frame(0, &old); err != nil {
		t.Fatal(err)
	}
	if err := rec.finish(); err != nil {
		t.Fatal(err)
	}
	out := readClip(t, rec.files[0])
	for _, s := range out[0].samples {
		got = append(got, s.dts)
	}
	if len(got) != 5 { // the keyframe of group 1, then all of group 2
		t.Fatalf("dts %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Errorf("dts %v not increasing", got)
		}
	}
}

// childRecord is the recording process of TestKillMidSegment: it
// publishes the clip in spec ("clip|dir") paced at 10× real time and
// records it until killed.
func childRecord(spec string) int {
	clip, dir, _ := strings.Cut(spec, "|")
	tb := &childTB{}
	in := readFFmpegClip(tb, clip)
	_, err := record(tb, Config{Dir: dir, FileTemplate: "{seq}.mp4", SegmentDuration: 1500 * time.Millisecond, Sync: SyncFragment},
		in, func(int) { time.Sleep(3 * time.Millisecond) })
	if err != nil {
		return 1
	}
	time.Sleep(time.Hour) // wait to be killed
	return 0
}

// TestKillMidSegment kills a recording process mid-segment: every file it
// left decodes cleanly up to its last complete fragment.
func TestKillMidSegment(t *testing.T) {
	testkit.NeedFFmpeg(t)
	clip := makeClip(t, t.TempDir(), 6, "aac")
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+clip+"|"+dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once the second segment has some fragments.
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := os.Stat(filepath.Join(dir, "0002.mp4"))
		if err == nil && st.Size() > 20000 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatal("the child recorded no second segment")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	files, _ := filepath.Glob(filepath.Join(dir, "*.mp4"))
	if len(files) < 2 {
		t.Fatalf("files %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if whole := completeBoxes(b); len(whole) != len(b) {
			t.Errorf("%s: %d trailing bytes of an incomplete box", f, len(b)-len(whole))
		}
		r := testkit.CheckFMP4(t, f, "v:0")
		testkit.CheckFMP4(t, f, "a:0")
		if r.Packets == 0 {
			t.Errorf("%s: no video", f)
		}
	}
}

// TestOtherVideoCodecs records H.265 (with B-frames), VP9 and AV1 with
// Opus and checks the files as TestFFprobe does.
func TestOtherVideoCodecs(t *testing.T) {
	testkit.NeedFFmpeg(t)
	for _, vc := range []string{"libx265", "libvpx-vp9", "libsvtav1"} {
		t.Run(vc, func(t *testing.T) {
			if out, _ := exec.Command("ffmpeg", "-hide_banner", "-encoders").Output(); !strings.Contains(string(out), " "+vc+" ") {
				testkit.Unavailable(t, "ffmpeg has no %s encoder (install an ffmpeg built with it)", vc)
			}
			in := readFFmpegClip(t, makeClipCodec(t, t.TempDir(), 2, vc, "opus"))
			s, err := record(t, Config{Dir: t.TempDir(), Path: "live/test", VideoTimescale: in[0].timescale}, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			f := s.Files()[0]
			compare(t, in, readClip(t, f), firstPTS(in))
			v := testkit.CheckFMP4(t, f, "v:0")
			testkit.CheckFMP4(t, f, "a:0")
			if v.Packets != len(in[0].samples) || v.Decoded != len(in[0].samples) || v.Keyframes != 4 {
				t.Errorf("video %+v, want %d packets and frames, 4 keyframes", v, len(in[0].samples))
			}
		})
	}
}

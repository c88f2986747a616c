package fmp4

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	mcfmp4 "github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"
	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// refSample is a sample as mediacommon reads it from the file.
type refSample struct {
	dts, pts time.Duration
	key      bool
	payload  []byte
}

func tickDur(v int64, ts uint32) time.Duration {
	return time.Duration(v) * time.Second / time.Duration(ts)
}

// isKey decides a video keyframe from the bitstream.
func isKey(t *testing.T, codec string, p []byte) bool {
	t.Helper()
	switch {
	case strings.HasPrefix(codec, "avc"):
		var au h264.AVCC
		if err := au.Unmarshal(p); err != nil {
			t.Fatal(err)
		}
		return h264.IsRandomAccess(au)
	case strings.HasPrefix(codec, "hvc"), strings.HasPrefix(codec, "hev"):
		var au h264.AVCC
		if err := au.Unmarshal(p); err != nil {
			t.Fatal(err)
		}
		return h265.IsRandomAccess(au)
	case strings.HasPrefix(codec, "av01"):
		var bs av1.Bitstream
		if err := bs.Unmarshal(p); err != nil {
			t.Fatal(err)
		}
		return av1.IsRandomAccess2(bs)
	case strings.HasPrefix(codec, "vp09"):
		return vp9.IsRandomAccess(p)
	}
	return true
}

// reference reads every track of a clip with mediacommon: one slice of
// samples per track, in moov order, and the codec of each track as named
// by the video flag.
func reference(t *testing.T, path string) [][]refSample {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]refSample
	var init mcfmp4.Init
	if err := init.Unmarshal(bytes.NewReader(data)); err == nil && strings.Contains(path, "progressive") == false {
		var parts mcfmp4.Parts
		if err := parts.Unmarshal(data); err != nil {
			t.Fatal(err)
		}
		idx := map[int]int{}
		for i, tr := range init.Tracks {
			idx[tr.ID] = i
			out = append(out, nil)
		}
		next := map[int]uint64{}
		for _, p := range parts {
			for _, pt := range p.Tracks {
				i := idx[pt.ID]
				ts := init.Tracks[i].TimeScale
				dts := pt.BaseTime
				for _, s := range pt.Samples {
					out[i] = append(out[i], refSample{
						dts: tickDur(int64(dts), ts), pts: tickDur(int64(dts)+int64(s.PTSOffset), ts), payload: s.Payload,
					})
					dts += uint64(s.Duration)
				}
				next[pt.ID] = dts
			}
		}
		return out
	}
	var pres pmp4.Presentation
	if err := pres.Unmarshal(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for _, tr := range pres.Tracks {
		var ss []refSample
		var dts int64
		for _, s := range tr.Samples {
			p, err := s.GetPayload()
			if err != nil {
				t.Fatal(err)
			}
			ss = append(ss, refSample{
				dts: tickDur(dts, tr.TimeScale), pts: tickDur(dts+int64(s.PTSOffset), tr.TimeScale),
				key: !s.IsNonSyncSample, payload: p,
			})
			dts += int64(s.Duration)
		}
		out = append(out, ss)
	}
	return out
}

// pipeline runs a Source into a BroadcastWriter published in an Origin
// and reads every track back through a BroadcastReader.
type result struct {
	tracks []sdk.Track
	frames map[string][]sdk.Frame
	err    error
}

func runPipeline(t *testing.T, ctx context.Context, src func(opt Options) *Source, opt Options) result {
	t.Helper()
	origin := moq.NewOrigin()
	defer origin.Close()
	pb := moq.NewBroadcast()
	w, err := sdk.NewBroadcastWriter(pb, sdk.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := origin.Publish("live/test", pb.Reader()); err != nil {
		t.Fatal(err)
	}
	var res result
	res.frames = map[string][]sdk.Frame{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var r *sdk.BroadcastReader
	var firsts []chan struct{}
	opt.OnTracks = func(tracks []sdk.Track) error {
		res.tracks = tracks
		b, err := origin.Consume("live/test")
		if err != nil {
			return err
		}
		if r, err = sdk.NewBroadcastReader(b); err != nil {
			return err
		}
		if err := r.WaitCatalog(ctx); err != nil {
			return err
		}
		for _, tr := range tracks {
			sub, err := r.Subscribe(tr.Name)
			if err != nil {
				return err
			}
			first := make(chan struct{})
			firsts = append(firsts, first)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer sub.Close()
				for {
					f, err := sub.ReadFrame(ctx)
					if err != nil {
						return
					}
					mu.Lock()
					if len(res.frames[tr.Name]) == 0 {
						close(first)
					}
					res.frames[tr.Name] = append(res.frames[tr.Name], f)
					mu.Unlock()
				}
			}()
		}
		return nil
	}
	// A subscription starts at the latest group: hold the source after
	// the first frame of each track until its reader has it.
	s := src(opt)
	written := map[int]bool{}
	s.tap = func(i int, tw *sdk.TrackWriter, f sdk.Frame) error {
		if err := tw.WriteFrame(f); err != nil {
			return err
		}
		if !written[i] && (f.Keyframe || tw.Track().Kind == sdk.KindAudio) {
			written[i] = true
			select {
			case <-firsts[i]:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	res.err = s.Run(ctx, w)
	_ = w.Close()
	wg.Wait()
	if r != nil {
		r.Close()
	}
	return res
}

func fileSource(t *testing.T, name string) func(Options) *Source {
	return func(opt Options) *Source {
		s, err := Open(filepath.Join("testdata", name), opt)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// testCtx returns a context that ends after 20 s or with the test.
func testCtx(t *testing.T) context.Context {
	return testkit.Context(t, 20*time.Second)
}

// checkClip compares what came out of the reader with mediacommon's view
// of the file: every sample's bytes, PTS (to the microsecond, all the
// legacy container carries), and keyframes (the first frame of each
// video group).
func checkClip(t *testing.T, name string, res result, wantCodecs []string, loops int) {
	t.Helper()
	if res.err != nil {
		t.Fatalf("Run: %v", res.err)
	}
	ref := reference(t, filepath.Join("testdata", name))
	if len(res.tracks) != len(ref) || len(ref) != len(wantCodecs) {
		t.Fatalf("%d tracks, mediacommon %d, want %d", len(res.tracks), len(ref), len(wantCodecs))
	}
	for i, tr := range res.tracks {
		if !strings.HasPrefix(tr.Codec, wantCodecs[i]) || !strings.HasSuffix(tr.Name, strconv.Itoa(i)) {
			t.Errorf("track %d: %s %q, want codec %s", i, tr.Name, tr.Codec, wantCodecs[i])
		}
		got := res.frames[tr.Name]
		want := ref[i]
		if len(got) != len(want)*loops {
			t.Fatalf("track %s: %d frames, want %d", tr.Name, len(got), len(want)*loops)
		}
		var span time.Duration
		if n := len(want); n > 0 {
			// The pass length: latest end over all tracks.
			for _, rs := range ref {
				if len(rs) < 2 {
					continue
				}
				last := rs[len(rs)-1]
				end := last.dts + (last.dts - rs[len(rs)-2].dts)
				span = max(span, end)
			}
		}
		for j, g := range got {
			w := want[j%len(want)]
			loop := j / len(want)
			wantPTS := (w.pts + time.Duration(loop)*span).Round(time.Microsecond)
			if loop == 0 && g.PTS != wantPTS {
				t.Errorf("track %s frame %d: PTS %v, want %v", tr.Name, j, g.PTS, wantPTS)
			}
			if !bytes.Equal(g.Payload, w.payload) {
				t.Errorf("track %s frame %d: payload differs (%d vs %d bytes)", tr.Name, j, len(g.Payload), len(w.payload))
			}
			if tr.Kind == sdk.KindVideo {
				key := isKey(t, tr.Codec, w.payload)
				if strings.Contains(name, "progressive") && key != w.key {
					t.Errorf("track %s frame %d: stss says key %v, bitstream %v", tr.Name, j, w.key, key)
				}
				if g.Keyframe != key {
					t.Errorf("track %s frame %d: keyframe %v, want %v", tr.Name, j, g.Keyframe, key)
				}
			}
			if g.HasDTS {
				t.Errorf("track %s frame %d: legacy frame with DTS", tr.Name, j)
			}
		}
	}
}

func TestClips(t *testing.T) {
	for _, c := range []struct {
		name   string
		codecs []string
	}{
		{"h264_aac_bframes.mp4", []string{"avc1.", "mp4a.40.2"}},
		{"h264_opus.mp4", []string{"avc1.", "opus"}},
		{"hevc.mp4", []string{"hvc1."}},
		{"av1.mp4", []string{"av01."}},
		{"vp9.mp4", []string{"vp09."}},
		{"progressive.mp4", []string{"avc1.", "mp4a.40.2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := runPipeline(t, testCtx(t), fileSource(t, c.name), Options{Fast: true})
			checkClip(t, c.name, res, c.codecs, 1)
		})
	}
}

// TestBFrameTimestamps checks the frames the Source hands to the writer,
// before the legacy container drops DTS: PTS and DTS from composition
// offsets, in decode order.
func TestBFrameTimestamps(t *testing.T) {
	for _, name := range []string{"h264_aac_bframes.mp4", "progressive.mp4"} {
		t.Run(name, func(t *testing.T) {
			ref := reference(t, filepath.Join("testdata", name))
			var got [][]sdk.Frame
			err := captureFrames(t, name, func(i int, f sdk.Frame) {
				for len(got) <= i {
					got = append(got, nil)
				}
				got[i] = append(got[i], f)
			})
			if err != nil {
				t.Fatal(err)
			}
			reordered := 0
			for i := range ref {
				if len(got[i]) != len(ref[i]) {
					t.Fatalf("track %d: %d frames, want %d", i, len(got[i]), len(ref[i]))
				}
				for j, f := range got[i] {
					w := ref[i][j]
					if f.PTS != w.pts || f.DecodeTime() != w.dts || f.HasDTS != (w.pts != w.dts) {
						t.Errorf("track %d frame %d: pts %v dts %v (has %v), want %v %v", i, j, f.PTS, f.DecodeTime(), f.HasDTS, w.pts, w.dts)
					}
					if f.HasDTS {
						reordered++
					}
				}
			}
			if reordered == 0 {
				t.Error("no frame with PTS ≠ DTS: the clip has no B-frames")
			}
		})
	}
}

// captureFrames runs a clip with every TrackWriter replaced by fn, by
// reading the frames the Source produces through write.
func captureFrames(t *testing.T, name string, fn func(track int, f sdk.Frame)) error {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return forEachFrame(context.Background(), f, fn)
}

func TestLiveStream(t *testing.T) {
	data, err := os.ReadFile("testdata/h264_opus.mp4")
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < len(data); i += 100 {
			if _, err := pw.Write(data[i:min(i+100, len(data))]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	var calls int
	var last, total int64
	start := time.Now()
	res := runPipeline(t, testCtx(t), func(opt Options) *Source { return New(io.Reader(pr), opt) }, Options{
		Progress: func(r, tt int64) { calls++; last, total = r, tt },
	})
	checkClip(t, "h264_opus.mp4", res, []string{"avc1.", "opus"}, 1)
	if calls == 0 || last != int64(len(data)) || total != -1 {
		t.Errorf("progress: %d calls, last %d/%d", calls, last, total)
	}
	// Streams are not paced: the 1-s clip must go through faster than
	// real time (TestPaced checks that a paced file takes at least 0.9 s;
	// unpaced this takes milliseconds, tens under -race).
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("1-s stream took %v; streams must not be paced", d)
	}
}

func TestPaced(t *testing.T) {
	start := time.Now()
	var last, total int64
	res := runPipeline(t, testCtx(t), fileSource(t, "h264_opus.mp4"), Options{
		Progress: func(r, tt int64) { last, total = r, tt },
	})
	checkClip(t, "h264_opus.mp4", res, []string{"avc1.", "opus"}, 1)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("paced 1-s clip took %v", d)
	}
	if last != total || total <= 0 {
		t.Errorf("progress %d/%d", last, total)
	}
}

func TestLoop(t *testing.T) {
	for _, name := range []string{"h264_aac_bframes.mp4", "progressive.mp4"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			ref := reference(t, filepath.Join("testdata", name))
			n := 0
			var lastKey [2]time.Duration
			var keys int
			err := forEachFrameOpt(ctx, name, Options{Fast: true, Loop: true}, func(i int, f sdk.Frame) {
				if i == 0 && f.Keyframe {
					if keys > 0 && f.PTS <= lastKey[0] {
						t.Errorf("keyframe PTS %v after %v", f.PTS, lastKey[0])
					}
					lastKey[0] = f.PTS
					keys++
				}
				n++
				if n == 3*(len(ref[0])+len(ref[1])) {
					cancel()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
			if keys < 6 {
				t.Errorf("%d keyframes in three passes", keys)
			}
		})
	}
}

func TestCorrupt(t *testing.T) {
	data, err := os.ReadFile("testdata/h264_aac_bframes.mp4")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		in   []byte
		off  bool // a *FormatError is expected
	}{
		{"empty", nil, false},
		{"truncated header", data[:5], true},
		{"truncated moov", data[:100], true},
		{"truncated in fragment", data[:len(data)/2+3], true},
		{"bad size", append([]byte{0, 0, 0, 3, 'f', 't', 'y', 'p'}, data...), true},
		{"moof first", data[bytes.Index(data, []byte("moof"))-4:], true},
		{"huge box", append([]byte{0, 0, 0, 1, 'm', 'o', 'o', 'v', 0x7f, 0, 0, 0, 0, 0, 0, 0}, data...), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := forEachFrame(testCtx(t), bytes.NewReader(c.in), func(int, sdk.Frame) {})
			if err == nil {
				t.Fatal("no error")
			}
			var fe *FormatError
			if c.off != errors.As(err, &fe) {
				t.Fatalf("error %v", err)
			}
			t.Log(err)
		})
	}
}

// forEachFrame runs a Source in Fast mode on r and hands every frame to fn
// before the writer sees it.
func forEachFrame(ctx context.Context, r io.Reader, fn func(track int, f sdk.Frame)) error {
	s := New(r, Options{Fast: true})
	s.tap = func(i int, _ *sdk.TrackWriter, f sdk.Frame) error { fn(i, f); return nil }
	return s.Run(ctx, nil)
}

func forEachFrameOpt(ctx context.Context, name string, opt Options, fn func(track int, f sdk.Frame)) error {
	s, err := Open(filepath.Join("testdata", name), opt)
	if err != nil {
		return err
	}
	s.tap = func(i int, _ *sdk.TrackWriter, f sdk.Frame) error { fn(i, f); return nil }
	return s.Run(ctx, nil)
}

// TestFragmentInterleaved: a paced file whose fragments hold one track
// each (a GOP of video, then the audio of the same half second, as
// ffmpeg's separate_moof cuts them) hands out its samples in decode time
// order across the tracks, so that audio comes with its video rather than
// a fragment's worth at once after it.
func TestFragmentInterleaved(t *testing.T) {
	var last time.Duration
	frames := map[int]int{}
	err := forEachFrameOpt(testkit.Context(t, 30*time.Second), "h264_opus.mp4", Options{}, func(track int, fr sdk.Frame) {
		d := fr.PTS
		if fr.HasDTS {
			d = fr.DTS
		}
		if d < last {
			t.Errorf("track %d frame at %v after a frame at %v", track, d, last)
		}
		last = d
		frames[track]++
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 2 || frames[0] < 25 || frames[1] < 45 {
		t.Fatalf("frames per track %v, want about 30 video and 50 audio", frames)
	}
}

package fmp4

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// shiftClip returns a copy of cts with every timestamp moved by d.
func shiftClip(cts []*clipTrack, d time.Duration) []*clipTrack {
	out := make([]*clipTrack, len(cts))
	for i, ct := range cts {
		c := *ct
		off := ticks(d, ct.timescale)
		c.samples = make([]clipSample, len(ct.samples))
		for j, s := range ct.samples {
			s.pts += off
			s.dts += off
			c.samples[j] = s
		}
		out[i] = &c
	}
	return out
}

// repeatClip returns cts played n times, each copy period after the last.
func repeatClip(cts []*clipTrack, n int, period time.Duration) []*clipTrack {
	out := shiftClip(cts, 0)
	for rep := 1; rep < n; rep++ {
		for i, c := range shiftClip(cts, time.Duration(rep)*period) {
			out[i].samples = append(out[i].samples, c.samples...)
		}
	}
	return out
}

// tail returns the tracks of cts with their first n[i] samples left out.
func tail(cts []*clipTrack, n []int) []*clipTrack {
	out := make([]*clipTrack, len(cts))
	for i, ct := range cts {
		c := *ct
		c.samples = ct.samples[n[i]:]
		out[i] = &c
	}
	return out
}

// fileLayout lists the top-level boxes of an fMP4 file: how many of each
// type, and the mfhd sequence number of every moof.
func fileLayout(t *testing.T, b []byte) (count map[string]int, seqs []uint32) {
	t.Helper()
	count = map[string]int{}
	for off := 0; off+8 <= len(b); {
		size := int(binary.BigEndian.Uint32(b[off:]))
		typ := string(b[off+4 : off+8])
		if size < 8 || off+size > len(b) {
			t.Fatalf("bad box %q at %d", typ, off)
		}
		count[typ]++
		if typ == "moof" {
			if string(b[off+12:off+16]) != "mfhd" {
				t.Fatalf("moof at %d does not start with mfhd", off)
			}
			seqs = append(seqs, binary.BigEndian.Uint32(b[off+20:]))
		}
		off += size
	}
	return count, seqs
}

// checkOneRecording checks the layout of a file written over several
// Runs: one init segment, then fragments with consecutive mfhd sequence
// numbers (they continue from file to file).
func checkOneRecording(t *testing.T, f string) {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	count, seqs := fileLayout(t, b)
	if count["ftyp"] != 1 || count["moov"] != 1 || count["moof"] != count["mdat"] || count["moof"] < 2 {
		t.Errorf("%s: boxes %v, want one init segment and fragments", f, count)
	}
	for i, s := range seqs {
		if s != seqs[0]+uint32(i) {
			t.Errorf("%s: mfhd sequence numbers %v, want consecutive ones", f, seqs)
			break
		}
	}
}

// checkIncreasing checks that decode times strictly increase in every
// track of a parsed file.
func checkIncreasing(t *testing.T, out []*clipTrack) {
	t.Helper()
	for i, ct := range out {
		for j := 1; j < len(ct.samples); j++ {
			if ct.samples[j].dts <= ct.samples[j-1].dts {
				t.Errorf("track %d sample %d: dts %d after %d", i, j, ct.samples[j].dts, ct.samples[j-1].dts)
				break
			}
		}
	}
}

// TestResumeSameTracks runs a Sink twice over broadcasts with the same
// tracks, as `moqbridge record` does when a relay restarts: the second
// Run appends to the file of the first, whose timestamps continue after a
// gap or, when the publisher restarted its clock, after what was written.
func TestResumeSameTracks(t *testing.T) {
	testkit.NeedFFmpeg(t)
	in := readFFmpegClip(t, makeClip(t, t.TempDir(), 3, "aac"))
	for _, c := range []struct {
		name  string
		shift time.Duration // of the second broadcast's timestamps
	}{
		{"gap", 5 * time.Second}, // the clip lasts 3 s: a 2 s gap
		{"restart", 0},           // timestamps from 0 again
	} {
		t.Run(c.name, func(t *testing.T) {
			in2 := shiftClip(in, c.shift)
			s := newTestSink(Config{Dir: t.TempDir(), Path: "live/test", FileTemplate: "{seq}.mp4", VideoTimescale: in[0].timescale})
			if err := recordInto(t, s, in, nil, nil); err != nil {
				t.Fatal(err)
			}
			first := s.Files()
			if err := recordInto(t, s, in2, nil, nil); err != nil {
				t.Fatal(err)
			}
			files := s.Files()
			if len(files) != 1 || len(first) != 1 || files[0] != first[0] {
				t.Fatalf("files %v after the first Run, %v after the second: want the same one", first, files)
			}
			if st := s.Stats(); st.Segments != 1 {
				t.Errorf("stats %+v, want one segment", st)
			}
			f := files[0]
			checkOneRecording(t, f)
			out := readClip(t, f)
			checkIncreasing(t, out)
			n := []int{len(in[0].samples), len(in[1].samples)}
			for i := range out {
				if len(out[i].samples) != 2*n[i] {
					t.Fatalf("track %d: %d samples, want %d from each Run", i, len(out[i].samples), n[i])
				}
			}
			// Both Runs' frames, as they came; the first Run's times as
			// for a single Run.
			compare(t, in, []*clipTrack{
				{timescale: out[0].timescale, samples: out[0].samples[:n[0]]},
				{timescale: out[1].timescale, samples: out[1].samples[:n[1]]},
			}, firstPTS(in))
			second := tail(out, n)
			if c.shift > 0 {
				// The origin is kept: the gap stays.
				compare(t, in2, second, firstPTS(in))
			} else {
				// Shifted once for both tracks: relative times and the
				// alignment of the tracks are kept, after the first Run.
				for i, ct := range second {
					if ct.samples[0].dts <= out[i].samples[n[i]-1].dts {
						t.Errorf("track %d: second Run starts at dts %d, before %d", i, ct.samples[0].dts, out[i].samples[n[i]-1].dts)
					}
					for j, smp := range ct.samples {
						want := in2[i].samples[j].pts - in2[i].samples[0].pts
						if got := smp.pts - ct.samples[0].pts; got != want || !bytes.Equal(smp.data, in2[i].samples[j].data) {
							t.Fatalf("track %d sample %d of the second Run: pts +%d, want +%d (or payload differs)", i, j, got, want)
						}
					}
				}
				skewIn := tickTime(in2[1].samples[0].pts, in2[1].timescale) - tickTime(in2[0].samples[0].pts, in2[0].timescale)
				skewOut := tickTime(second[1].samples[0].pts, second[1].timescale) - tickTime(second[0].samples[0].pts, second[0].timescale)
				if d := skewOut - skewIn; d < -time.Millisecond || d > time.Millisecond {
					t.Errorf("audio starts %v after video in the second Run, want %v", skewOut, skewIn)
				}
			}
			v := testkit.CheckFMP4(t, f, "v:0")
			a := testkit.CheckFMP4(t, f, "a:0")
			if v.Packets != 2*n[0] || v.Decoded != 2*n[0] || v.Keyframes != 12 {
				t.Errorf("video %+v, want %d packets and frames, 12 keyframes", v, 2*n[0])
			}
			if a.Packets != 2*n[1] {
				t.Errorf("audio %+v, want %d packets", a, 2*n[1])
			}
		})
	}
}

// TestResumeOtherTracks runs a Sink over a broadcast with other tracks:
// the second Run starts a new file, numbered after the first, with
// timestamps after the first file's.
func TestResumeOtherTracks(t *testing.T) {
	testkit.NeedFFmpeg(t)
	dir := t.TempDir()
	aac := readFFmpegClip(t, makeClip(t, dir, 2, "aac"))
	opus := readFFmpegClip(t, makeClip(t, dir, 2, "opus"))
	rec := t.TempDir()
	s := newTestSink(Config{Dir: rec, Path: "live/test", FileTemplate: "{seq}.mp4", VideoTimescale: aac[0].timescale})
	if err := recordInto(t, s, aac, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := recordInto(t, s, opus, nil, nil); err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	want := []string{filepath.Join(rec, "0001.mp4"), filepath.Join(rec, "0002.mp4")}
	if strings.Join(files, " ") != strings.Join(want, " ") {
		t.Fatalf("files %v, want %v", files, want)
	}
	if st := s.Stats(); st.Segments != 2 {
		t.Errorf("stats %+v, want two segments", st)
	}
	out1, out2 := readClip(t, files[0]), readClip(t, files[1])
	if n := len(out1[0].samples); n != len(aac[0].samples) || len(out2[0].samples) != len(opus[0].samples) {
		t.Errorf("%d and %d video samples, want %d and %d", n, len(out2[0].samples), len(aac[0].samples), len(opus[0].samples))
	}
	if last, next := out1[0].samples[len(out1[0].samples)-1].dts, out2[0].samples[0].dts; next <= last {
		t.Errorf("second file's video starts at dts %d, not after the first's %d", next, last)
	}
	for _, f := range files {
		checkOneRecording(t, f)
		testkit.CheckFMP4(t, f, "v:0")
		testkit.CheckFMP4(t, f, "a:0")
	}
}

// TestResumeRetention: a Run that finds rotation due starts a new file;
// numbering and retention carry over from the Runs before.
func TestResumeRetention(t *testing.T) {
	in := append(readClip(t, "../../sdk/testdata/h264_bframes_cmaf.mp4"), readClip(t, "../../sdk/testdata/aac_cmaf.mp4")...)
	in = repeatClip(in, 3, time.Second)
	dir := t.TempDir()
	s := newTestSink(Config{Dir: dir, Path: "x", FileTemplate: "{seq}.mp4", SegmentDuration: time.Nanosecond, MaxTotalBytes: 1 << 40})
	if err := recordInto(t, s, in, nil, nil); err != nil {
		t.Fatal(err)
	}
	n1 := len(s.Files())
	if n1 < 3 {
		t.Fatalf("files %v", s.Files())
	}
	var size1 int64
	for _, f := range s.Files() {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		size1 += st.Size()
	}
	// Retention down to about one Run's worth: the second Run deletes the
	// first Run's files.
	s.cfg.MaxTotalBytes = size1
	if err := recordInto(t, s, in, nil, nil); err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	if len(files) != 2*n1 {
		t.Fatalf("files %v, want %d", files, 2*n1)
	}
	for i, f := range files {
		if want := filepath.Join(dir, fmt.Sprintf("%04d.mp4", i+1)); f != want {
			t.Errorf("file %d is %s, want %s", i, f, want)
		}
	}
	if _, err := os.Stat(files[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("first Run's oldest file %s not deleted by retention in the second: %v", files[0], err)
	}
	if _, err := os.Stat(files[len(files)-1]); err != nil {
		t.Errorf("newest file: %v", err)
	}
}

// TestSourceLost: a broadcast lost mid-way (its tracks end with an error)
// ends Run with ErrSourceLost after the file is closed with everything
// received; the next Run continues the file.
func TestSourceLost(t *testing.T) {
	in := append(readClip(t, "../../sdk/testdata/h264_bframes_cmaf.mp4"), readClip(t, "../../sdk/testdata/aac_cmaf.mp4")...)
	s := newTestSink(Config{Dir: t.TempDir(), Path: "live/test", VideoTimescale: in[0].timescale})
	errLost := errors.New("connection to the relay lost")
	total := uint64(len(in[0].samples) + len(in[1].samples))
	err := recordInto(t, s, in, nil, func(p *pipeline) {
		deadline := time.Now().Add(10 * time.Second)
		for s.Stats().Frames < total {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v", s.Stats())
			}
			time.Sleep(time.Millisecond)
		}
		_ = p.pb.CloseWithError(errLost)
	})
	if !errors.Is(err, ErrSourceLost) || !errors.Is(err, errLost) {
		t.Fatalf("err %v, want one wrapping ErrSourceLost and the track's error", err)
	}
	if !strings.Contains(err.Error(), "video") && !strings.Contains(err.Error(), "audio") {
		t.Errorf("err %q names no track", err)
	}
	f := s.Files()[0]
	compare(t, in, readClip(t, f), firstPTS(in))
	if b, _ := os.ReadFile(f); len(completeBoxes(b)) != len(b) {
		t.Errorf("%s ends with an incomplete box", f)
	}
	if testkit.CheckWith("ffmpeg", "ffprobe") {
		testkit.CheckFMP4(t, f, "v:0")
		testkit.CheckFMP4(t, f, "a:0")
	}

	// The broadcast is back, from timestamp 0 again.
	if err := recordInto(t, s, in, nil, nil); err != nil {
		t.Fatal(err)
	}
	if files := s.Files(); len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	checkOneRecording(t, f)
	out := readClip(t, f)
	checkIncreasing(t, out)
	if len(out[0].samples) != 2*len(in[0].samples) || len(out[1].samples) != 2*len(in[1].samples) {
		t.Errorf("%d and %d samples, want twice %d and %d", len(out[0].samples), len(out[1].samples), len(in[0].samples), len(in[1].samples))
	}
	if testkit.CheckWith("ffmpeg", "ffprobe") {
		testkit.CheckFMP4(t, f, "v:0")
		testkit.CheckFMP4(t, f, "a:0")
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory (root only).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
		}
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFullTmpfs records more than a small file system holds: Run ends
// with ENOSPC naming the file, logged at ERROR level, and the file left
// there plays cleanly up to its last fragment; a file that could not get
// one fragment is removed.
func TestDiskFullTmpfs(t *testing.T) {
	testkit.NeedFFmpeg(t)
	clip := readFFmpegClip(t, makeClip(t, t.TempDir(), 3, "aac")) // about 120 kB
	for _, c := range []struct {
		name, size string
		left       bool
	}{
		{"partial", "300k", true},
		{"nothing", "4k", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := mountTmpfs(t, c.size)
			in := repeatClip(clip, 4, 3100*time.Millisecond)
			var logs bytes.Buffer // written by Run only, read once it returned
			s := newTestSink(Config{Dir: dir, Path: "live/test", FileTemplate: "{seq}.mp4", VideoTimescale: in[0].timescale,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			err := recordInto(t, s, in, nil, nil)
			name := filepath.Join(dir, "0001.mp4")
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), name) {
				t.Fatalf("err %v, want ENOSPC naming %s", err, name)
			}
			if s.rec.seg != nil {
				t.Error("segment left open")
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), name) {
				t.Errorf("no error logged naming %s:\n%s", name, logs.String())
			}
			entries, _ := os.ReadDir(dir)
			if !c.left {
				if len(entries) != 0 || len(s.Files()) != 0 {
					t.Errorf("left %v, files %v: want the file without a fragment removed", entries, s.Files())
				}
				return
			}
			if len(entries) != 1 || entries[0].Name() != "0001.mp4" {
				t.Fatalf("left %v", entries)
			}
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(completeBoxes(b)) != len(b) || len(b) < 100000 {
				t.Errorf("%s: %d bytes, %d in whole boxes", name, len(b), len(completeBoxes(b)))
			}
			checkOneRecording(t, name)
			checkIncreasing(t, readClip(t, name))
			v := testkit.CheckFMP4(t, name, "v:0")
			testkit.CheckFMP4(t, name, "a:0")
			if v.Packets < len(clip[0].samples) {
				t.Errorf("video %+v, want at least the first clip's %d frames", v, len(clip[0].samples))
			}
		})
	}
}

// TestResumeChangedFile: a file that changed since the previous Run closed
// it is left alone; the next Run starts a new one.
func TestResumeChangedFile(t *testing.T) {
	in := append(readClip(t, "../../sdk/testdata/h264_bframes_cmaf.mp4"), readClip(t, "../../sdk/testdata/aac_cmaf.mp4")...)
	dir := t.TempDir()
	s := newTestSink(Config{Dir: dir, FileTemplate: "{seq}.mp4", VideoTimescale: in[0].timescale})
	if err := recordInto(t, s, in, nil, nil); err != nil {
		t.Fatal(err)
	}
	f := s.Files()[0]
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, b[:len(b)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := recordInto(t, s, in, nil, nil); err != nil {
		t.Fatal(err)
	}
	if files := s.Files(); len(files) != 2 || files[1] != filepath.Join(dir, "0002.mp4") {
		t.Fatalf("files %v, want a second one", files)
	}
	if b2, _ := os.ReadFile(f); len(b2) != len(b)-1 {
		t.Errorf("the changed file was written to: %d bytes, want %d", len(b2), len(b)-1)
	}
	out := readClip(t, s.Files()[1])
	if len(out[0].samples) != len(in[0].samples) || len(out[1].samples) != len(in[1].samples) {
		t.Errorf("second file: %d and %d samples, want %d and %d", len(out[0].samples), len(out[1].samples), len(in[0].samples), len(in[1].samples))
	}
	if first := parseFMP4(t, b); out[0].samples[0].dts <= first[0].samples[len(first[0].samples)-1].dts {
		t.Errorf("second file's video starts at dts %d, not after the first's", out[0].samples[0].dts)
	}
}

// TestRunOverlap: a second Run of a Sink while one runs fails at once.
func TestRunOverlap(t *testing.T) {
	in := readClip(t, "../../sdk/testdata/opus_cmaf.mp4")
	p, _ := newPipeline(t, sdkTrack(t, in[0]))
	s := newTestSink(Config{Dir: t.TempDir()})
	ready := make(chan struct{})
	s.cfg.OnSubscribed = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, p.r) }()
	<-ready
	if err := s.Run(ctx, p.r); err == nil || !strings.Contains(err.Error(), "another Run") {
		t.Errorf("overlapping Run: err %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestResumeOverlap: a Run resumed on the same clock that starts with the
// group written last (a relay hands a new subscriber its latest group) is
// not taken for a restarted clock: the origin stays, the repeated frames
// are dropped, and the file holds no frame twice and no shifted time.
func TestResumeOverlap(t *testing.T) {
	testkit.NeedFFmpeg(t)
	in := readFFmpegClip(t, makeClip(t, t.TempDir(), 3, "aac"))
	// The first Run ends 2 s in; the second starts at the last keyframe
	// before that, as a relay's latest group would.
	var head, from []int
	lastKey := 0
	for i, ct := range in {
		n := 0
		for n < len(ct.samples) && ct.samples[n].dts < ticks(2*time.Second, ct.timescale) {
			if i == 0 && ct.samples[n].key {
				lastKey = n
			}
			n++
		}
		head = append(head, n)
	}
	keyTime := tickTime(in[0].samples[lastKey].pts, in[0].timescale)
	for _, ct := range in {
		n := 0
		for n < len(ct.samples) && tickTime(ct.samples[n].pts, ct.timescale) < keyTime {
			n++
		}
		from = append(from, n)
	}
	first := make([]*clipTrack, len(in))
	for i, ct := range in {
		c := *ct
		c.samples = ct.samples[:head[i]]
		first[i] = &c
	}
	s := newTestSink(Config{Dir: t.TempDir(), Path: "live/test", FileTemplate: "{seq}.mp4", VideoTimescale: in[0].timescale})
	if err := recordInto(t, s, first, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := recordInto(t, s, tail(in, from), nil, nil); err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	if len(files) != 1 {
		t.Fatalf("files %v, want one", files)
	}
	checkOneRecording(t, files[0])
	out := readClip(t, files[0])
	checkIncreasing(t, out)
	for i, ct := range out {
		if len(ct.samples) > len(in[i].samples) {
			t.Errorf("track %d: %d samples of a clip of %d: frames repeated", i, len(ct.samples), len(in[i].samples))
		}
		end := tickTime(ct.samples[len(ct.samples)-1].pts, ct.timescale)
		want := tickTime(in[i].samples[len(in[i].samples)-1].pts-in[i].samples[0].pts, in[i].timescale)
		if d := end - want; d < -50*time.Millisecond || d > 50*time.Millisecond {
			t.Errorf("track %d ends at %v, the clip at %v: the resumed Run was shifted", i, end, want)
		}
	}
}

// TestSourceLostBeforeSubscribe: a broadcast that goes away between its
// catalog and the sink's subscriptions is lost, not a plain error, so a
// recorder waits for it to come back.
func TestSourceLostBeforeSubscribe(t *testing.T) {
	in := readClip(t, "../../sdk/testdata/aac_cmaf.mp4")
	p, _ := newPipeline(t, sdkTrack(t, in[0]))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	_ = p.pb.CloseWithError(errors.New("connection to the relay lost"))
	s := newTestSink(Config{Dir: t.TempDir(), Path: "live/test"})
	if err := s.Run(ctx, p.r); !errors.Is(err, ErrSourceLost) {
		t.Fatalf("err %v, want one wrapping ErrSourceLost", err)
	}
}

package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// pipeline is a BroadcastWriter published into an in-process Origin and a
// BroadcastReader on the same path, as a source and a sink see them.
type pipeline struct {
	origin *moq.Origin
	pb     *moq.BroadcastWriter
	w      *BroadcastWriter
}

func newPipeline(t testing.TB, cache moq.CacheConfig, cfg WriterConfig) *pipeline {
	t.Helper()
	p := &pipeline{origin: moq.NewOrigin(), pb: moq.NewBroadcastWithCache(cache)}
	var err error
	if p.w, err = NewBroadcastWriter(p.pb, cfg); err != nil {
		t.Fatal(err)
	}
	if err := p.origin.Publish("live/test", p.pb.Reader()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.w.Close()
		p.origin.Close()
	})
	return p
}

// reader opens a BroadcastReader on the published path.
func (p *pipeline) reader(t testing.TB) *BroadcastReader {
	t.Helper()
	b, err := p.origin.Consume("live/test")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewBroadcastReader(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// collect reads frames from tr in a goroutine until io.EOF; the first
// frame is also sent on first.
func collect(ctx context.Context, tr *TrackReader) (first chan Frame, all chan []Frame, errc chan error) {
	first, all, errc = make(chan Frame, 1), make(chan []Frame, 1), make(chan error, 1)
	go func() {
		var frames []Frame
		for {
			f, err := tr.ReadFrame(ctx)
			if err != nil {
				all <- frames
				if errors.Is(err, io.EOF) {
					err = nil
				}
				errc <- err
				return
			}
			if len(frames) == 0 {
				first <- f
			}
			frames = append(frames, f)
		}
	}()
	return first, all, errc
}

func payload(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestRoundTrip writes H.264 video with B-frame reordering and Opus audio
// through an Origin and reads them back: payloads and presentation
// timestamps come back byte-exact, keyframes where groups start.
func TestRoundTrip(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{})
	video, err := H264FromConfig(unhex(t, avcCases[0].avcC))
	if err != nil {
		t.Fatal(err)
	}
	video.Name, video.Framerate, video.Bitrate = "video/hd", 30, 6000000
	audio, err := OpusFromChannels(2)
	if err != nil {
		t.Fatal(err)
	}
	audio.Name, audio.Jitter = "audio/data", 20*time.Millisecond
	tws, err := p.w.AddTracks(video, audio)
	if err != nil {
		t.Fatal(err)
	}
	vw, aw := tws[0], tws[1]

	r := p.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	tracks := r.Tracks()
	if len(tracks) != 2 {
		t.Fatalf("tracks %+v", tracks)
	}
	for i, want := range []Track{vw.Track(), aw.Track()} {
		want.Container, want.Priority = ContainerLegacy, want.priority()
		if want.Kind == KindVideo {
			want.Jitter = 0 // not set, so not published
		}
		if fmt.Sprint(tracks[i]) != fmt.Sprint(want) {
			t.Errorf("track %d\n%+v\nwant\n%+v", i, tracks[i], want)
		}
	}
	vr, err := r.Subscribe("video/hd")
	if err != nil {
		t.Fatal(err)
	}
	defer vr.Close()
	ar, err := r.Subscribe("audio/data")
	if err != nil {
		t.Fatal(err)
	}
	defer ar.Close()
	vFirst, vAll, vErr := collect(ctx, vr)
	aFirst, aAll, aErr := collect(ctx, ar)

	// Three GOPs of I P B B in decode order (PTS ≠ DTS), 33.333 ms frames
	// rounded to microseconds, sizes crossing the writer's slab limit.
	rng := rand.New(rand.NewPCG(1, 2))
	const frameDur = 33333 * time.Microsecond
	var vWant []Frame
	for gop := range 3 {
		base := time.Duration(gop*4) * frameDur
		for i, off := range []int{0, 3, 1, 2} {
			vWant = append(vWant, Frame{
				PTS:      base + time.Duration(off+1)*frameDur,
				DTS:      base + time.Duration(i)*frameDur,
				HasDTS:   true,
				Keyframe: i == 0,
				Payload:  payload(rng, []int{30000, 1200, 17, 400}[i]),
			})
		}
	}
	var aWant []Frame
	for i := range 60 { // 1.2 s of 20 ms packets: two groups of at most 1 s
		aWant = append(aWant, Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: payload(rng, 60+i)})
	}

	// Write the first frame of each track and wait for the readers to
	// have it, since a subscription starts at the latest group.
	if err := vw.WriteFrame(vWant[0]); err != nil {
		t.Fatal(err)
	}
	if err := aw.WriteFrame(aWant[0]); err != nil {
		t.Fatal(err)
	}
	<-vFirst
	<-aFirst
	for _, f := range vWant[1:] {
		if err := vw.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range aWant[1:] {
		if err := aw.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.w.Close(); err != nil {
		t.Fatal(err)
	}

	check := func(kind string, got, want []Frame, groups uint64, tr *TrackReader) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d frames, want %d", kind, len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.PTS != w.PTS || !bytes.Equal(g.Payload, w.Payload) || g.HasDTS || g.Discontinuity {
				t.Errorf("%s frame %d: pts %v (want %v), %d bytes (want %d, equal %v), HasDTS %v, Discontinuity %v",
					kind, i, g.PTS, w.PTS, len(g.Payload), len(w.Payload), bytes.Equal(g.Payload, w.Payload), g.HasDTS, g.Discontinuity)
			}
		}
		if st := tr.Stats(); st.Groups != groups || st.Frames != uint64(len(want)) || st.Skipped != 0 || st.Truncated != 0 || st.Invalid != 0 {
			t.Errorf("%s stats %+v", kind, st)
		}
	}
	vGot, aGot := <-vAll, <-aAll
	if err := <-vErr; err != nil {
		t.Fatal(err)
	}
	if err := <-aErr; err != nil {
		t.Fatal(err)
	}
	check("video", vGot, vWant, 3, vr)
	check("audio", aGot, aWant, 2, ar)
	for i, f := range vGot {
		if f.Keyframe != (i%4 == 0) {
			t.Errorf("video frame %d: keyframe %v", i, f.Keyframe)
		}
	}
	for i, f := range aGot {
		if !f.Keyframe {
			t.Errorf("audio frame %d: keyframe %v, want every audio frame a keyframe", i, f.Keyframe)
		}
	}
	// The decode order is kept, so the decode time of a legacy frame
	// is not known but its order is.
	if vGot[1].DecodeTime() != vWant[1].PTS {
		t.Errorf("DecodeTime without DTS: %v", vGot[1].DecodeTime())
	}
}

// rawGroup is a group as stored in the protocol track.
type rawGroup struct {
	seq    uint64
	frames [][]byte
}

// readRaw subscribes to a protocol track and reads it in a goroutine;
// started is closed once the reader holds its first group (a subscription
// starts at the latest group, so a test writes one group and waits for
// started before writing more), and result returns every group and frame
// once the track ends.
func readRaw(ctx context.Context, t *testing.T, b *moq.BroadcastReader, name string) (started <-chan struct{}, result func() []rawGroup) {
	t.Helper()
	tr, err := b.Subscribe(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []rawGroup, 1)
	first := make(chan struct{})
	go func() {
		defer tr.Close()
		var out []rawGroup
		for {
			g, err := tr.NextGroup(ctx)
			if err != nil {
				done <- out
				return
			}
			if out == nil {
				close(first)
			}
			rg := rawGroup{seq: g.Sequence()}
			for {
				f, err := g.NextFrame(ctx)
				if err != nil {
					break
				}
				rg.frames = append(rg.frames, f)
			}
			g.Close()
			out = append(out, rg)
		}
	}()
	return first, func() []rawGroup { return <-done }
}

// TestGroupCutting checks the MOQ layout of a video track: frames before
// the first keyframe dropped, a group per keyframe with consecutive
// sequence numbers, and the legacy frame header on every frame.
func TestGroupCutting(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{})
	tw, err := p.w.AddTrack(Track{Kind: KindVideo, Codec: "vp09.00.10.08", Width: 64, Height: 64})
	if err != nil {
		t.Fatal(err)
	}
	if tw.Track().Name != "video0" || tw.Track().Priority != 0 {
		t.Fatalf("track %+v", tw.Track())
	}
	started, raw := readRaw(ctx, t, p.pb.Reader(), "video0")

	key := []bool{false, false, true, false, false, true, true, false}
	for i, k := range key {
		if err := tw.WriteFrame(Frame{PTS: time.Duration(i) * 33333 * time.Microsecond, Keyframe: k, Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			<-started
		}
	}
	if tw.Dropped() != 2 {
		t.Errorf("Dropped() = %d, want 2", tw.Dropped())
	}
	if err := p.w.Close(); err != nil {
		t.Fatal(err)
	}
	got := raw()
	var seqs []uint64
	var sizes []int
	for _, g := range got {
		seqs = append(seqs, g.seq)
		sizes = append(sizes, len(g.frames))
	}
	if fmt.Sprint(seqs) != "[0 1 2]" || fmt.Sprint(sizes) != "[3 1 2]" {
		t.Fatalf("groups %v with %v frames, want [0 1 2] with [3 1 2]", seqs, sizes)
	}
	// Frame 2 (the first keyframe) at 66.666 ms: varint 66666 µs = 80 01 04 6a.
	if f := got[0].frames[0]; !bytes.Equal(f, unhex(t, "8001046a02")) {
		t.Errorf("first frame %x, want 8001046a02", f)
	}
	for gi, g := range got {
		for fi, f := range g.frames {
			pts, pl, err := DecodeLegacyFrame(f)
			if err != nil || len(pl) != 1 || pts != time.Duration(pl[0])*33333*time.Microsecond {
				t.Errorf("group %d frame %d: %x", gi, fi, f)
			}
		}
	}
}

// TestAudioOnlyGrouping checks that audio is grouped by duration and that
// a timestamp going backwards starts a group.
func TestAudioOnlyGrouping(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{AudioGroupDuration: 100 * time.Millisecond})
	tr, err := AACFromConfig(unhex(t, "1190"))
	if err != nil {
		t.Fatal(err)
	}
	tw, err := p.w.AddTrack(tr)
	if err != nil {
		t.Fatal(err)
	}
	if tw.Track().Name != "audio0" {
		t.Fatalf("name %q", tw.Track().Name)
	}
	started, raw := readRaw(ctx, t, p.pb.Reader(), "audio0")
	write := func(pts time.Duration) {
		t.Helper()
		if err := tw.WriteFrame(Frame{PTS: pts, Payload: []byte{1}}); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	<-started
	for i := 1; i < 25; i++ { // 20 ms packets up to 480 ms
		write(time.Duration(i) * 20 * time.Millisecond)
	}
	write(10 * time.Millisecond) // the clock went back: new group
	write(30 * time.Millisecond)
	if err := p.w.Close(); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for i, g := range raw() {
		if g.seq != uint64(i) {
			t.Errorf("group %d has sequence %d", i, g.seq)
		}
		sizes = append(sizes, len(g.frames))
	}
	if fmt.Sprint(sizes) != "[5 5 5 5 5 2]" {
		t.Errorf("group sizes %v, want [5 5 5 5 5 2]", sizes)
	}
}

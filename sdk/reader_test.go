package sdk

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

func trackNames(ts []Track) []string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return names
}

// waitTracks waits until the reader's catalog lists exactly names.
func waitTracks(ctx context.Context, t *testing.T, r *BroadcastReader, names string) {
	t.Helper()
	for {
		ch := r.Changed()
		if got := fmt.Sprint(trackNames(r.Tracks())); got == names {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("tracks %v, want %s", trackNames(r.Tracks()), names)
		}
	}
}

// TestCatalogRepublished checks that the catalog is published again, as a
// new group of one frame, when tracks are added or removed, and that the
// reader follows it.
func TestCatalogRepublished(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{})
	started, raw := readRaw(ctx, t, p.pb.Reader(), CatalogTrackName)
	video, err := H264FromConfig(unhex(t, avcCases[1].avcC))
	if err != nil {
		t.Fatal(err)
	}
	vw, err := p.w.AddTrack(video)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	r := p.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	waitTracks(ctx, t, r, "[video0]")

	audio, err := AACFromConfig(unhex(t, "1190"))
	if err != nil {
		t.Fatal(err)
	}
	aw, err := p.w.AddTrack(audio)
	if err != nil {
		t.Fatal(err)
	}
	waitTracks(ctx, t, r, "[video0 audio1]")
	if _, err := r.Subscribe("audio1"); err != nil {
		t.Fatal(err)
	}

	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); !errors.Is(err, moq.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if err := aw.WriteFrame(Frame{Payload: []byte{1}}); !errors.Is(err, moq.ErrClosed) {
		t.Errorf("WriteFrame after Close: %v", err)
	}
	waitTracks(ctx, t, r, "[video0]")
	if got := fmt.Sprint(trackNames(p.w.Tracks())); got != "[video0]" {
		t.Errorf("writer tracks %s", got)
	}
	if _, err := r.Subscribe("audio1"); !errors.Is(err, moq.ErrNotFound) {
		t.Errorf("subscribing a removed track: %v", err)
	}
	_ = vw

	if err := p.w.Close(); err != nil {
		t.Fatal(err)
	}
	groups := raw()
	if len(groups) != 3 {
		t.Fatalf("%d catalog groups, want 3", len(groups))
	}
	for i, want := range [][]string{{"video0"}, {"audio1", "video0"}, {"video0"}} {
		g := groups[i]
		if g.seq != uint64(i) || len(g.frames) != 1 {
			t.Fatalf("catalog group %d: sequence %d, %d frames", i, g.seq, len(g.frames))
		}
		c, err := ParseCatalog(g.frames[0])
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tr := range c.Tracks() {
			names = append(names, tr.Name)
		}
		if fmt.Sprint(names) != fmt.Sprint(rotateVideoFirst(want)) {
			t.Errorf("catalog %d lists %v, want %v", i, names, want)
		}
	}
	// The broadcast ended: the reader says so.
	select {
	case <-r.Changed():
	case <-ctx.Done():
		t.Fatal("no change at the end of the broadcast")
	}
	if err := r.Err(); !errors.Is(err, io.EOF) {
		t.Errorf("Err() = %v, want io.EOF", err)
	}
}

// rotateVideoFirst orders names as Catalog.Tracks does (video first).
func rotateVideoFirst(names []string) []string {
	var v, a []string
	for _, n := range names {
		if n[0] == 'v' {
			v = append(v, n)
		} else {
			a = append(a, n)
		}
	}
	return append(v, a...)
}

// TestReaderSkipsGroups makes a reader fall behind a track whose cache
// keeps only the latest group: it reports the skipped groups and marks the
// next frame, a keyframe, as a discontinuity.
func TestReaderSkipsGroups(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{MaxBytes: 1}, WriterConfig{})
	tw, err := p.w.AddTrack(Track{Name: "v", Kind: KindVideo, Codec: "av01.0.08M.08"})
	if err != nil {
		t.Fatal(err)
	}
	r := p.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := r.Subscribe("v")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	pts := time.Duration(0)
	write := func(key bool) {
		t.Helper()
		pts += 40 * time.Millisecond
		if err := tw.WriteFrame(Frame{PTS: pts, Keyframe: key, Payload: make([]byte, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	write(true)
	f, err := tr.ReadFrame(ctx)
	if err != nil || !f.Keyframe || f.Discontinuity || f.PTS != 40*time.Millisecond {
		t.Fatalf("first frame %+v, %v", f, err)
	}
	// The reader stops reading; five more GOPs come, of which the cache
	// keeps only the last.
	write(false)
	for range 5 {
		write(true)
		write(false)
	}
	// It finishes the group it holds (evicted groups stay readable by
	// their readers) ...
	f, err = tr.ReadFrame(ctx)
	if err != nil || f.Keyframe || f.Discontinuity || f.PTS != 80*time.Millisecond {
		t.Fatalf("second frame %+v, %v", f, err)
	}
	// ... then jumps to the latest.
	f, err = tr.ReadFrame(ctx)
	if err != nil || !f.Keyframe || !f.Discontinuity || f.PTS != 440*time.Millisecond {
		t.Fatalf("frame after the gap %+v, %v", f, err)
	}
	if tr.Skipped() != 4 {
		t.Errorf("Skipped() = %d, want 4", tr.Skipped())
	}
	f, err = tr.ReadFrame(ctx)
	if err != nil || f.Keyframe || f.Discontinuity {
		t.Fatalf("frame after %+v, %v", f, err)
	}
}

// rawBroadcast publishes a hand-made hang broadcast, as another publisher
// would: a catalog and tracks written through protocol directly.
type rawBroadcast struct {
	origin *moq.Origin
	b      *moq.BroadcastWriter
	cat    *moq.TrackWriter
}

func newRawBroadcast(t *testing.T) *rawBroadcast {
	t.Helper()
	rb := &rawBroadcast{origin: moq.NewOrigin(), b: moq.NewBroadcast()}
	var err error
	if rb.cat, err = rb.b.CreateTrack(CatalogTrackName, PriorityCatalog); err != nil {
		t.Fatal(err)
	}
	if err := rb.origin.Publish("raw", rb.b.Reader()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rb.b.Close()
		rb.origin.Close()
	})
	return rb
}

// group writes one group of frames to tw and closes it, or leaves it open.
func writeGroup(t *testing.T, tw *moq.TrackWriter, close bool, frames ...[]byte) *moq.GroupWriter {
	t.Helper()
	g, err := tw.AppendGroup()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := g.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if close {
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func (rb *rawBroadcast) reader(t *testing.T) *BroadcastReader {
	t.Helper()
	b, err := rb.origin.Consume("raw")
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

// TestReaderCMAF reads a cmaf rendition, as the 0.3.5 fMP4 importer
// publishes it: one fragment per MOQ frame, a group per keyframe, the init
// in the catalog. Timestamps come back exact, with DTS.
func TestReaderCMAF(t *testing.T) {
	ctx := testContext(t)
	rb := newRawBroadcast(t)
	file := readCMAFFile(t, "testdata/h264_bframes_cmaf.mp4")
	// No description in the catalog: the reader takes it from the init.
	cat := fmt.Sprintf(`{"video": {"renditions": {"0.m4s": {"codec": "avc1.64000b",
		"container": {"kind": "cmaf", "init": %q}}}},
		"audio": {"renditions": {"x": {"codec": "opus", "sampleRate": 48000, "numberOfChannels": 2, "container": {"kind": "loc"}}}}}`,
		base64.StdEncoding.EncodeToString(file.init))
	writeGroup(t, rb.cat, true, []byte(cat))
	tw, err := rb.b.CreateTrack("0.m4s", PriorityVideo)
	if err != nil {
		t.Fatal(err)
	}
	r := rb.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	tracks := r.Tracks()
	if len(tracks) != 1 || tracks[0].Timescale != 15360 || tracks[0].Width != 160 || tracks[0].Height != 96 || tracks[0].Container != ContainerCMAF {
		t.Fatalf("tracks %+v (the loc rendition must be left out)", tracks)
	}
	if _, err := H264FromConfig(tracks[0].DecoderConfig); err != nil {
		t.Errorf("DecoderConfig from the init: %v", err)
	}
	if _, err := r.Subscribe("x"); !errors.Is(err, ErrUnsupportedContainer) {
		t.Errorf("subscribing the loc rendition: %v", err)
	}
	tr, err := r.Subscribe("0.m4s")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// Two GOPs: the second is written once the reader holds the first.
	g := writeGroup(t, tw, false, file.frags[:4]...)
	want := cmafCases[0]
	tick := func(v int64) time.Duration { return time.Duration(v) * time.Second / 15360 }
	for i := range 8 {
		if i == 4 {
			_ = g.Close()
			writeGroup(t, tw, true, file.frags[4:]...)
		}
		f, err := tr.ReadFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !f.HasDTS || f.DTS != tick(want.dts[i]) || f.PTS != tick(want.pts[i]) || f.Keyframe != want.key[i] || len(f.Payload) != want.sizes[i] || f.Discontinuity {
			t.Errorf("frame %d: %+v", i, f)
		}
	}
}

// TestReaderAbortedGroup checks that a group that ends early marks the
// next frame and counts as truncated, and that undecodable frames and
// markers are dropped.
func TestReaderAbortedGroup(t *testing.T) {
	ctx := testContext(t)
	rb := newRawBroadcast(t)
	writeGroup(t, rb.cat, true, []byte(`{"audio": {"renditions": {"a": {"codec": "opus", "sampleRate": 48000, "numberOfChannels": 2}}}}`))
	tw, err := rb.b.CreateTrack("a", PriorityAudio)
	if err != nil {
		t.Fatal(err)
	}
	r := rb.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := r.Subscribe("a")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	frame := func(us uint64) []byte {
		b, _ := AppendLegacyFrame(nil, time.Duration(us)*time.Microsecond, []byte{byte(us)})
		return b
	}
	g := writeGroup(t, tw, false, frame(0), []byte{0x05}, frame(20)) // a marker (empty payload), then a frame
	for _, want := range []time.Duration{0, 20 * time.Microsecond} {
		f, err := tr.ReadFrame(ctx)
		if err != nil || f.PTS != want || f.Discontinuity {
			t.Fatalf("frame %+v, %v; want pts %v", f, err, want)
		}
	}
	g.Abort(nil)
	writeGroup(t, tw, true, frame(40), []byte{0x40}, frame(60)) // a truncated varint: the rest of the group goes
	writeGroup(t, tw, true, frame(80))
	f, err := tr.ReadFrame(ctx)
	if err != nil || f.PTS != 40*time.Microsecond || !f.Discontinuity || !f.Keyframe {
		t.Fatalf("frame after the aborted group %+v, %v", f, err)
	}
	f, err = tr.ReadFrame(ctx)
	if err != nil || f.PTS != 80*time.Microsecond || !f.Discontinuity {
		t.Fatalf("frame after the bad frame %+v, %v", f, err)
	}
	if st := tr.Stats(); st.Truncated != 2 || st.Invalid != 1 || st.Skipped != 0 || st.Frames != 4 || st.Groups != 3 {
		t.Errorf("stats %+v", st)
	}
	// Close unblocks a pending read.
	errc := make(chan error, 1)
	go func() {
		_, err := tr.ReadFrame(ctx)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	tr.Close()
	if err := <-errc; !errors.Is(err, moq.ErrClosed) {
		t.Errorf("ReadFrame after Close: %v", err)
	}
}

// TestReaderCatalogUpdates checks merge patches within a catalog group, a
// new group interrupting an open one, and that a bad catalog is ignored.
func TestReaderCatalogUpdates(t *testing.T) {
	ctx := testContext(t)
	rb := newRawBroadcast(t)
	r := rb.reader(t)
	g := writeGroup(t, rb.cat, false,
		[]byte(`{"video": {"renditions": {"a": {"codec": "vp8"}}}}`),
		[]byte(`{"video": {"renditions": {"b": {"codec": "vp8"}}}}`))
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	waitTracks(ctx, t, r, "[a b]")
	// A patch that makes the catalog invalid leaves the previous one in
	// effect until a later patch repairs the document.
	if err := g.WriteFrame([]byte(`{"video": {"renditions": {"c": {}}}}`)); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteFrame([]byte(`{"video": {"renditions": {"a": null, "c": null}}}`)); err != nil {
		t.Fatal(err)
	}
	waitTracks(ctx, t, r, "[b]")
	if r.LastError() == nil {
		t.Error("no LastError for the invalid catalog")
	}
	// The group stays open; a newer one replaces it.
	writeGroup(t, rb.cat, true, []byte(`{"audio": {"renditions": {"z": {"codec": "opus", "sampleRate": 48000, "numberOfChannels": 1}}}}`))
	waitTracks(ctx, t, r, "[z]")
	c := r.Catalog()
	if out, _ := json.Marshal(c); string(out) != `{"audio":{"renditions":{"z":{"codec":"opus","sampleRate":48000,"numberOfChannels":1}}}}` {
		t.Errorf("catalog %s", out)
	}
	_ = g.Close()
}

func TestReaderErrors(t *testing.T) {
	ctx := testContext(t)
	b := moq.NewBroadcast()
	if _, err := NewBroadcastReader(b.Reader()); !errors.Is(err, moq.ErrNotFound) {
		t.Errorf("no catalog track: %v", err)
	}
	if _, err := b.CreateTrack(CatalogTrackName, 100); err != nil {
		t.Fatal(err)
	}
	r, err := NewBroadcastReader(b.Reader())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := r.WaitCatalog(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitCatalog before any catalog: %v", err)
	}
	if r.Tracks() != nil || r.Catalog() != nil {
		t.Error("tracks before the catalog")
	}
	if _, err := r.Subscribe("x"); !errors.Is(err, moq.ErrNotFound) {
		t.Errorf("Subscribe before the catalog: %v", err)
	}
	_ = b.Close()
	if err := r.WaitCatalog(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("WaitCatalog after the broadcast ended: %v", err)
	}
	<-r.Done()
	if _, err := NewBroadcastReader(b.Reader()); !errors.Is(err, moq.ErrClosed) {
		t.Errorf("ended broadcast: %v", err)
	}
}

func TestWriterErrors(t *testing.T) {
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{})
	opus, _ := OpusFromChannels(2)
	for name, tr := range map[string]Track{
		"no kind":        {Codec: "opus"},
		"no codec":       {Kind: KindVideo},
		"no sample rate": {Kind: KindAudio, Codec: "opus", Channels: 2},
		"no channels":    {Kind: KindAudio, Codec: "opus", SampleRate: 48000},
		"cmaf":           {Kind: KindVideo, Codec: "vp8", Container: ContainerCMAF},
		"negative size":  {Kind: KindVideo, Codec: "vp8", Width: -1},
		"reserved name":  {Name: CatalogTrackName, Kind: KindVideo, Codec: "vp8"},
	} {
		if _, err := p.w.AddTrack(tr); err == nil {
			t.Errorf("%s: AddTrack succeeded", name)
		}
	}
	opus.Name = "a"
	tw, err := p.w.AddTrack(opus)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.w.AddTrack(opus); !errors.Is(err, moq.ErrDuplicate) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := p.w.AddTracks(Track{Name: "b", Kind: KindVideo, Codec: "vp8"}, Track{Name: "b", Kind: KindVideo, Codec: "vp8"}); !errors.Is(err, moq.ErrDuplicate) {
		t.Errorf("duplicate name in one call: %v", err)
	}
	if got := fmt.Sprint(trackNames(p.w.Tracks())); got != "[a]" {
		t.Errorf("tracks after failed adds: %s", got)
	}
	if err := tw.WriteFrame(Frame{}); !errors.Is(err, ErrEmptyPayload) {
		t.Errorf("empty payload: %v", err)
	}
	if err := tw.WriteFrame(Frame{PTS: -time.Millisecond, Payload: []byte{1}}); !errors.Is(err, ErrTimestampRange) {
		t.Errorf("negative pts: %v", err)
	}
	if err := p.w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.w.Close(); !errors.Is(err, moq.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if err := tw.WriteFrame(Frame{Payload: []byte{1}}); !errors.Is(err, moq.ErrClosed) {
		t.Errorf("WriteFrame after Close: %v", err)
	}
	if _, err := p.w.AddTrack(Track{Kind: KindVideo, Codec: "vp8"}); !errors.Is(err, moq.ErrClosed) {
		t.Errorf("AddTrack after Close: %v", err)
	}
}

// TestSourceSink runs a Source and a Sink against one Origin the way a
// pipeline does.
func TestSourceSink(t *testing.T) {
	ctx := testContext(t)
	origin := moq.NewOrigin()
	defer origin.Close()
	pb := moq.NewBroadcast()
	w, err := NewBroadcastWriter(pb, WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var src Source = SourceFunc(func(ctx context.Context, w *BroadcastWriter) error {
		tr, err := OpusFromChannels(1)
		if err != nil {
			return err
		}
		tw, err := w.AddTrack(tr)
		if err != nil {
			return err
		}
		if err := origin.Publish("s", pb.Reader()); err != nil {
			return err
		}
		close(ready)
		for i := range 100 {
			if err := tw.WriteFrame(Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: []byte{byte(i)}}); err != nil {
				return err
			}
			if i == 0 {
				time.Sleep(20 * time.Millisecond) // let the sink join at the first group
			}
		}
		return nil
	})
	got := make(chan int, 1)
	var sink Sink = SinkFunc(func(ctx context.Context, r *BroadcastReader) error {
		if err := r.WaitCatalog(ctx); err != nil {
			return err
		}
		tr, err := r.Subscribe(r.Tracks()[0].Name)
		if err != nil {
			return err
		}
		defer tr.Close()
		n := 0
		for {
			f, err := tr.ReadFrame(ctx)
			if errors.Is(err, io.EOF) {
				got <- n
				return nil
			}
			if err != nil {
				return err
			}
			if f.Payload[0] != byte(n) {
				return fmt.Errorf("frame %d has payload %d", n, f.Payload[0])
			}
			n++
		}
	})
	srcErr := make(chan error, 1)
	go func() {
		err := src.Run(ctx, w)
		_ = w.Close()
		srcErr <- err
	}()
	<-ready
	b, err := origin.Consume("s")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewBroadcastReader(b)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := sink.Run(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := <-srcErr; err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 100 {
		t.Errorf("sink read %d frames, want 100", n)
	}
}

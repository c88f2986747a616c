package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// opusSource is a Source of one Opus track that writes n frames of 20 ms,
// waiting for start (if not nil) after adding the track.
func opusSource(n int, start <-chan struct{}) Source {
	return SourceFunc(func(ctx context.Context, w *BroadcastWriter) error {
		tr, err := OpusFromChannels(2)
		if err != nil {
			return err
		}
		tw, err := w.AddTrack(tr)
		if err != nil {
			return err
		}
		if start != nil {
			select {
			case <-start:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		for i := range n {
			if err := tw.WriteFrame(Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: []byte{0xfc, byte(i)}}); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestPublishLifecycle: Publish puts the broadcast into the Origin only
// once its catalog lists the track, and takes it out, its tracks ended,
// when the source returns.
func TestPublishLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()
	ann := origin.Announced("live")
	defer ann.Close()
	start := make(chan struct{})
	done := make(chan error, 1)
	var published []string
	go func() {
		done <- Publish(ctx, origin, "live/a", opusSource(10, start), PublishOptions{Published: func(p string) { published = append(published, p) }})
	}()
	a, err := ann.Next(ctx)
	if err != nil || !a.Active || a.Path != "live/a" {
		t.Fatalf("announcement %+v, %v", a, err)
	}
	r, err := NewBroadcastReader(a.Broadcast)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.WaitCatalog(ctx); err != nil || len(r.Tracks()) != 1 {
		t.Fatalf("catalog at announcement: %v, tracks %v", err, r.Tracks())
	}
	tr, err := r.Subscribe(r.Tracks()[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	close(start)
	frames := 0
	for {
		_, err := tr.ReadFrame(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames++
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if frames != 10 {
		t.Errorf("read %d frames, want 10", frames)
	}
	if a, err := ann.Next(ctx); err != nil || a.Active {
		t.Errorf("after the source: %+v, %v; want the broadcast ended", a, err)
	}
	if !slices.Equal(published, []string{"live/a"}) {
		t.Errorf("Published called with %q", published)
	}
	st := r.Stats()[tr.Track().Name]
	if st.Frames != 10 || st.Bytes != 20 || st.Groups != 1 {
		t.Errorf("reader stats %+v", st)
	}
}

// TestPublishErrors: an invalid path is a permanent error; a source's own
// error comes back as it is, permanent only when marked.
func TestPublishErrors(t *testing.T) {
	ctx := context.Background()
	origin := moq.NewOrigin()
	defer origin.Close()
	err := Publish(ctx, origin, "live/../x", opusSource(1, nil), PublishOptions{})
	if !IsPermanent(err) || !errors.Is(err, moq.ErrInvalidPath) {
		t.Errorf("invalid path: %v (permanent %v)", err, IsPermanent(err))
	}
	boom := errors.New("boom")
	err = Publish(ctx, origin, "live/x", SourceFunc(func(context.Context, *BroadcastWriter) error { return boom }), PublishOptions{})
	if !errors.Is(err, boom) || IsPermanent(err) {
		t.Errorf("source error: %v (permanent %v)", err, IsPermanent(err))
	}
	err = Publish(ctx, origin, "live/x", SourceFunc(func(context.Context, *BroadcastWriter) error { return Permanent(boom) }), PublishOptions{})
	if !errors.Is(err, boom) || !IsPermanent(err) {
		t.Errorf("permanent source error: %v (permanent %v)", err, IsPermanent(err))
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	// A track the catalog cannot describe is a configuration error.
	err = Publish(ctx, origin, "live/y", SourceFunc(func(_ context.Context, w *BroadcastWriter) error {
		_, err := w.AddTrack(Track{Kind: KindAudio, Codec: "opus"})
		return err
	}), PublishOptions{})
	if err == nil || !IsPermanent(err) {
		t.Errorf("invalid track: %v (permanent %v)", err, IsPermanent(err))
	}
}

// TestPublisher: a listener's Publisher keeps to its prefixes and applies
// its IfLive policy at a live path.
func TestPublisher(t *testing.T) {
	origin := moq.NewOrigin()
	defer origin.Close()
	addTrack := func(b *Broadcast) {
		t.Helper()
		tr, _ := OpusFromChannels(2)
		if _, err := b.Writer().AddTrack(tr); err != nil {
			t.Fatal(err)
		}
	}
	waitLive := func(path string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := WaitBroadcast(ctx, origin, path, 0); err != nil {
			t.Fatalf("%s never went live: %v", path, err)
		}
	}

	refuse := NewPublisher(origin, PublisherOptions{Prefixes: []string{"live"}})
	defer refuse.Close()
	if _, err := refuse.Start("vod/a"); !errors.Is(err, ErrPathNotAllowed) || !IsPermanent(err) {
		t.Errorf("outside the prefixes: %v", err)
	}
	a, err := refuse.Start("live/a")
	if err != nil {
		t.Fatal(err)
	}
	addTrack(a)
	waitLive("live/a")
	if _, err := refuse.Start("live/a"); !errors.Is(err, ErrPathLive) {
		t.Errorf("a second start at a live path: %v, want ErrPathLive", err)
	}

	replace := NewPublisher(origin, PublisherOptions{IfLive: Replace})
	defer replace.Close()
	b1, err := replace.Start("live/b")
	if err != nil {
		t.Fatal(err)
	}
	addTrack(b1)
	waitLive("live/b")
	b2, err := replace.Start("live/b")
	if err != nil {
		t.Fatalf("replace: %v", err)
	}
	select {
	case <-b1.Done():
	default:
		t.Error("the replaced broadcast did not end")
	}
	addTrack(b2)
	waitLive("live/b")

	backup := NewPublisher(origin, PublisherOptions{IfLive: Backup})
	defer backup.Close()
	c, err := backup.Start("live/a")
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	addTrack(c)
	deadline := time.Now().Add(5 * time.Second)
	for origin.Backups("live/a") != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := origin.Backups("live/a"); n != 1 {
		t.Errorf("%d backups at live/a, want 1", n)
	}

	refuse.Close()
	select {
	case <-a.Done():
	default:
		t.Error("Close left a broadcast live")
	}
	if got := refuse.Live(); len(got) != 0 {
		t.Errorf("live after Close: %q", got)
	}
	if _, err := refuse.Start("live/z"); !errors.Is(err, moq.ErrClosed) {
		t.Errorf("start after Close: %v", err)
	}
}

// recordingSink counts the frames of every track until the broadcast ends.
type recordingSink struct {
	mu     sync.Mutex
	frames int
	path   string
}

func (s *recordingSink) Run(ctx context.Context, r *BroadcastReader) error {
	s.mu.Lock()
	s.path = r.Path()
	s.mu.Unlock()
	if err := r.WaitCatalog(ctx); err != nil {
		return err
	}
	tr, err := r.Subscribe(r.Tracks()[0].Name)
	if err != nil {
		return err
	}
	defer tr.Close()
	for {
		if _, err := tr.ReadFrame(ctx); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		s.mu.Lock()
		s.frames++
		s.mu.Unlock()
	}
}

// TestFollow: Follow starts a sink for every broadcast under its prefix as
// it appears, again when one comes back, and none for other paths; each
// sink learns its path and ends with its broadcast.
func TestFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()
	var mu sync.Mutex
	sinks := map[string][]*recordingSink{}
	results := make(chan string, 10)
	followCtx, stop := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() {
		followed <- Follow(followCtx, origin, "live", func(path string) (Sink, error) {
			if path == "live/bad" {
				return nil, Permanent(fmt.Errorf("no sink for %s", path))
			}
			s := &recordingSink{}
			mu.Lock()
			sinks[path] = append(sinks[path], s)
			mu.Unlock()
			return s, nil
		}, func(path string, err error) {
			results <- fmt.Sprintf("%s: %v", path, err)
		})
	}()
	publishOnce := func(path string) {
		t.Helper()
		// The source waits until the sink subscribed: a new subscription
		// starts at the latest group.
		start := make(chan struct{})
		go func() {
			for {
				mu.Lock()
				n := len(sinks[path])
				mu.Unlock()
				if n > 0 {
					time.Sleep(100 * time.Millisecond)
					close(start)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		if err := Publish(ctx, origin, path, opusSource(5, start), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{"live/a", "live/b", "live/a"} {
		publishOnce(path)
		if got := <-results; got != path+": <nil>" {
			t.Fatalf("result %q, want %q", got, path+": <nil>")
		}
	}
	// A source that ends before its broadcast is published may never be
	// announced: this one stays until the result is in.
	badDone := make(chan struct{})
	go func() {
		if got := <-results; got != "live/bad: no sink for live/bad" {
			t.Errorf("result %q", got)
		}
		close(badDone)
	}()
	if err := Publish(ctx, origin, "live/bad", opusSource(1, badDone), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Publish(ctx, origin, "other/x", opusSource(1, nil), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sinks["live/a"]) != 2 || len(sinks["live/b"]) != 1 || len(sinks["other/x"]) != 0 {
		t.Fatalf("sinks %v", sinks)
	}
	for path, ss := range sinks {
		for _, s := range ss {
			if s.path != path || s.frames == 0 {
				t.Errorf("sink of %s: path %q, %d frames", path, s.path, s.frames)
			}
		}
	}
	select {
	case r := <-results:
		t.Errorf("unexpected result %q", r)
	default:
	}
}

// TestWriterStats: a writer counts groups, frames, bytes and what it
// dropped before the first keyframe.
func TestWriterStats(t *testing.T) {
	w, err := NewBroadcastWriter(moq.NewBroadcast(), WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tr, err := H264FromConfig(unhex(t, avcCases[0].avcC))
	if err != nil {
		t.Fatal(err)
	}
	tw, err := w.AddTrack(tr)
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range []bool{false, true, false, true, false} {
		if err := tw.WriteFrame(Frame{PTS: time.Duration(i) * time.Millisecond, Keyframe: key, Payload: make([]byte, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	want := TrackStats{Groups: 2, Frames: 4, Bytes: 400, Dropped: 1}
	if got := w.Stats()[tw.Track().Name]; got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	// A track closed and one of the same name added again: both count.
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tr.Name = tw.Track().Name
	tw2, err := w.AddTrack(tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw2.WriteFrame(Frame{Keyframe: true, Payload: make([]byte, 10)}); err != nil {
		t.Fatal(err)
	}
	want = TrackStats{Groups: 3, Frames: 5, Bytes: 410, Dropped: 1}
	if got := w.Stats()[tw.Track().Name]; got != want {
		t.Errorf("stats after a track came back %+v, want %+v", got, want)
	}
	// The final counts outlive the broadcast.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats()[tw.Track().Name]; got != want {
		t.Errorf("stats after Close %+v, want %+v", got, want)
	}
}

// TestWaitTracks: a publisher that announces an empty catalog and adds its
// tracks one by one, as the reference browser publisher does, is waited
// for until its catalog lists them all and holds still.
func TestWaitTracks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mb := moq.NewBroadcast()
	defer mb.Close()
	cat, err := mb.CreateTrack(CatalogTrackName, PriorityCatalog)
	if err != nil {
		t.Fatal(err)
	}
	video, err := H264FromConfig(unhex(t, avcCases[0].avcC))
	if err != nil {
		t.Fatal(err)
	}
	video.Name = "video"
	audio, err := OpusFromChannels(2)
	if err != nil {
		t.Fatal(err)
	}
	audio.Name = "audio"
	writeCatalog := func(ts ...Track) {
		c, err := NewCatalog(ts)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		g, err := cat.AppendGroup()
		if err != nil {
			t.Fatal(err)
		}
		_ = g.WriteFrame(b)
		_ = g.Close()
	}
	writeCatalog()
	r, err := NewBroadcastReader(mb.Reader())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		time.Sleep(50 * time.Millisecond)
		writeCatalog(video)
		time.Sleep(30 * time.Millisecond)
		writeCatalog(video, audio)
	}()
	if err := r.WaitTracks(ctx, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Tracks()); n != 2 {
		t.Errorf("WaitTracks returned with %d tracks, want 2", n)
	}
	// A broadcast that ends with an empty catalog is an error.
	mb2 := moq.NewBroadcast()
	cat, _ = mb2.CreateTrack(CatalogTrackName, PriorityCatalog)
	writeCatalog()
	r2, err := NewBroadcastReader(mb2.Reader())
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = mb2.Close()
	}()
	if err := r2.WaitTracks(ctx, 200*time.Millisecond); err == nil {
		t.Error("an empty catalog that ended: no error")
	}
}

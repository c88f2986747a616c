package sdk

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// latencies records what a latency observer is told.
type latencies struct {
	mu  sync.Mutex
	got []latency
}

type latency struct {
	track string
	d     time.Duration
}

func (l *latencies) observe(track string, d time.Duration) {
	l.mu.Lock()
	l.got = append(l.got, latency{track, d})
	l.mu.Unlock()
}

func (l *latencies) take() []latency {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := l.got
	l.got = nil
	return got
}

// TestLatencyObserver writes frames with a TrackWriter and reads them with
// a TrackReader of the same process: each frame read is reported once,
// under its track's name, with a latency that fits the clock readings
// taken around the write and the read, including a frame left waiting.
func TestLatencyObserver(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{})
	tw, err := p.w.AddTrack(Track{Name: "v", Kind: KindVideo, Codec: "vp8"})
	if err != nil {
		t.Fatal(err)
	}
	r := p.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	var l latencies
	r.SetLatencyObserver(l.observe)
	tr, err := r.Subscribe("v")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	const wait = 20 * time.Millisecond
	for i := range 4 {
		f := Frame{PTS: time.Duration(i) * 40 * time.Millisecond, Keyframe: i == 0, Payload: []byte{byte(i), 1, 2}}
		beforeWrite := time.Now()
		if err := tw.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
		afterWrite := time.Now()
		if i == 3 {
			// This frame waits in the track before it is read.
			time.Sleep(wait)
		}
		beforeRead := time.Now()
		got, err := tr.ReadFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		afterRead := time.Now()
		if got.PTS != f.PTS {
			t.Fatalf("read PTS %v, want %v", got.PTS, f.PTS)
		}
		obs := l.take()
		if len(obs) != 1 || obs[0].track != "v" {
			t.Fatalf("frame %d: observed %+v, want one for track v", i, obs)
		}
		d := obs[0].d
		if lo, hi := beforeRead.Sub(afterWrite), afterRead.Sub(beforeWrite); d < lo || d > hi {
			t.Errorf("frame %d: latency %v outside [%v, %v]", i, d, lo, hi)
		}
		if i == 3 && d < wait {
			t.Errorf("frame left waiting %v: latency %v", wait, d)
		}
	}

	// nil stops the reports.
	r.SetLatencyObserver(nil)
	if err := tw.WriteFrame(Frame{PTS: time.Second, Payload: []byte{9}}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.ReadFrame(ctx); err != nil {
		t.Fatal(err)
	}
	if obs := l.take(); len(obs) != 0 {
		t.Errorf("after SetLatencyObserver(nil): observed %+v", obs)
	}
}

// TestLatencyObserverLate sets the observer after subscribing: frames
// written before are not measured (their write time was not recorded),
// frames written after are.
func TestLatencyObserverLate(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{})
	tws, err := p.w.AddTracks(Track{Name: "v", Kind: KindVideo, Codec: "vp8"}, Track{Name: "a", Kind: KindAudio, Codec: "opus", SampleRate: 48000, Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := p.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	trs := make([]*TrackReader, 2)
	for i, name := range []string{"v", "a"} {
		if trs[i], err = r.Subscribe(name); err != nil {
			t.Fatal(err)
		}
		defer trs[i].Close()
	}
	write := func(i int) {
		t.Helper()
		for _, tw := range tws {
			if err := tw.WriteFrame(Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: []byte{byte(i)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func() {
		t.Helper()
		for _, tr := range trs {
			if _, err := tr.ReadFrame(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	var l latencies
	write(0)
	r.SetLatencyObserver(l.observe)
	write(1)
	read()
	if obs := l.take(); len(obs) != 0 {
		t.Errorf("frames written before SetLatencyObserver: observed %+v", obs)
	}
	read()
	if obs := l.take(); len(obs) != 2 || obs[0].track != "v" || obs[1].track != "a" || obs[0].d < 0 || obs[1].d < 0 {
		t.Errorf("frames written after SetLatencyObserver: observed %+v, want v then a", obs)
	}
}

// TestLatencyObserverCMAF reads a cmaf rendition, one fragment per MOQ
// frame as the reference importer publishes it: every sample returned is
// measured from its fragment's write.
func TestLatencyObserverCMAF(t *testing.T) {
	ctx := testContext(t)
	rb := newRawBroadcast(t)
	file := readCMAFFile(t, "testdata/h264_bframes_cmaf.mp4")
	cat := fmt.Sprintf(`{"video": {"renditions": {"0.m4s": {"codec": "avc1.64000b", "container": {"kind": "cmaf", "init": %q}}}}}`,
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
	var l latencies
	r.SetLatencyObserver(l.observe)
	tr, err := r.Subscribe("0.m4s")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	beforeWrite := time.Now()
	writeGroup(t, tw, true, file.frags...)
	afterWrite := time.Now()
	for i := range len(file.frags) {
		beforeRead := time.Now()
		if _, err := tr.ReadFrame(ctx); err != nil {
			t.Fatal(err)
		}
		afterRead := time.Now()
		obs := l.take()
		if len(obs) != 1 || obs[0].track != "0.m4s" {
			t.Fatalf("frame %d: observed %+v", i, obs)
		}
		if lo, hi := beforeRead.Sub(afterWrite), afterRead.Sub(beforeWrite); obs[0].d < lo || obs[0].d > hi {
			t.Errorf("frame %d: latency %v outside [%v, %v]", i, obs[0].d, lo, hi)
		}
	}
}

// TestLatencyObserverAllocs checks that measuring adds no allocation to
// ReadFrame.
func TestLatencyObserverAllocs(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{})
	tw, err := p.w.AddTrack(Track{Name: "v", Kind: KindVideo, Codec: "vp8"})
	if err != nil {
		t.Fatal(err)
	}
	r := p.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	var observed int
	r.SetLatencyObserver(func(string, time.Duration) { observed++ })
	tr, err := r.Subscribe("v")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const frames = 100
	payload := make([]byte, 100)
	for i := range frames + 2 {
		if err := tw.WriteFrame(Frame{PTS: time.Duration(i) * time.Millisecond, Keyframe: i == 0, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tr.ReadFrame(ctx); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(frames, func() {
		if _, err := tr.ReadFrame(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per ReadFrame with a latency observer, want 0", n)
	}
	if observed != frames+2 {
		t.Errorf("observed %d frames, want %d", observed, frames+2)
	}
}

// BenchmarkReaderFrameLatency is BenchmarkReaderFrame with a latency
// observer: the write records its time, the read reports the latency.
func BenchmarkReaderFrameLatency(b *testing.B) {
	ctx := context.Background()
	p := newPipeline(b, moq.CacheConfig{}, WriterConfig{})
	tw, err := p.w.AddTrack(Track{Name: "v", Kind: KindVideo, Codec: "vp8"})
	if err != nil {
		b.Fatal(err)
	}
	r := p.reader(b)
	if err := r.WaitCatalog(ctx); err != nil {
		b.Fatal(err)
	}
	var sum time.Duration
	r.SetLatencyObserver(func(_ string, d time.Duration) { sum += d })
	tr, err := r.Subscribe("v")
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	f := Frame{Payload: make([]byte, 1200)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f.PTS = time.Duration(i) * 20 * time.Millisecond
		f.Keyframe = i%60 == 0
		if err := tw.WriteFrame(f); err != nil {
			b.Fatal(err)
		}
		got, err := tr.ReadFrame(ctx)
		if err != nil || got.PTS != f.PTS {
			b.Fatalf("read %v, %v", got.PTS, err)
		}
		i++
	}
	b.ReportMetric(float64(sum.Nanoseconds())/float64(i), "latency-ns/frame")
}

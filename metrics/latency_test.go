package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestLatencyEndToEnd measures the latency of frames a real
// sdk.TrackWriter writes and a real sdk.TrackReader reads through an
// Origin, as the pipeline runner wires it: the reader's latency observer
// feeds Metrics.Latency. Every frame read is counted, and the sum lies
// within the clock readings taken around each write and read.
func TestLatencyEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()
	mb := moq.NewBroadcast()
	w, err := sdk.NewBroadcastWriter(mb, sdk.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close() }()
	tws, err := w.AddTracks(
		sdk.Track{Name: "video", Kind: sdk.KindVideo, Codec: "vp8"},
		sdk.Track{Name: "audio", Kind: sdk.KindAudio, Codec: "opus", SampleRate: 48000, Channels: 2},
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := origin.Publish("live/e2e", mb.Reader()); err != nil {
		t.Fatal(err)
	}
	b, err := origin.Consume("live/e2e")
	if err != nil {
		t.Fatal(err)
	}
	r, err := sdk.NewBroadcastReader(b)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}

	m := New()
	r.SetLatencyObserver(func(track string, d time.Duration) { m.Latency("e2e", "live/e2e", track, d) })
	var trs []*sdk.TrackReader
	for _, name := range []string{"video", "audio"} {
		tr, err := r.Subscribe(name)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		trs = append(trs, tr)
	}

	const frames = 50
	var lo, hi time.Duration // bounds of the sum of the video latencies
	for i := range frames {
		beforeWrite := time.Now()
		for _, tw := range tws {
			f := sdk.Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: i%10 == 0, Payload: []byte{byte(i), 0xaa}}
			if err := tw.WriteFrame(f); err != nil {
				t.Fatal(err)
			}
		}
		afterWrite := time.Now()
		for j, tr := range trs {
			beforeRead := time.Now()
			f, err := tr.ReadFrame(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if f.PTS != time.Duration(i)*20*time.Millisecond {
				t.Fatalf("%s frame %d: PTS %v", tr.Track().Name, i, f.PTS)
			}
			if j == 0 {
				lo += beforeRead.Sub(afterWrite)
				hi += time.Since(beforeWrite)
			}
		}
	}

	got := testkit.ScrapeMetrics(t, Admin(m, nil))
	for _, track := range []string{"video", "audio"} {
		k := series(nameLatency+"_count", "pipeline", "e2e", "track", track)
		if got[k] != frames {
			t.Errorf("%s = %v, want %d", k, got[k], frames)
		}
	}
	sum := got[series(nameLatency+"_sum", "pipeline", "e2e", "track", "video")]
	if sum < lo.Seconds() || sum > hi.Seconds() {
		t.Errorf("video latency sum %vs outside [%v, %v]", sum, lo, hi)
	}
	if inf := got[series(nameLatency+"_bucket", "pipeline", "e2e", "track", "video", "le", "+Inf")]; inf != frames {
		t.Errorf("+Inf bucket %v, want %d", inf, frames)
	}
}

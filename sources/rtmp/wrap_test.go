package rtmp

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestTimestampWrap: a publisher whose RTMP timestamps start 3 s before
// the 32-bit millisecond wrap (an encoder up for 49.7 days) and cross it:
// the broadcast's clock starts at 0 and runs on across the wrap without a
// jump, for video (with a composition offset) and audio.
func TestTimestampWrap(t *testing.T) {
	sps, _ := hex.DecodeString("6742c00dd90141fb0110000003001000000303c0f142a480")
	pps, _ := hex.DecodeString("68cb83cb20")
	ctx := testkit.Context(t, 20*time.Second)
	srv := startServer(t, Config{})
	results := map[string]*trackResult{}
	subscribed := make(chan struct{})
	var pts []time.Duration // the video's presentation times
	consumed := make(chan error, 1)
	go func() {
		consumed <- sdk.Consume(ctx, srv.origin, "live/wrap", sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
			if err := r.WaitTracks(ctx, 300*time.Millisecond); err != nil {
				return err
			}
			sub, err := r.Subscribe(r.Tracks()[0].Name)
			if err != nil {
				return err
			}
			defer sub.Close()
			all := make(chan error, 1)
			go func() { all <- readAll(ctx, r, results, subscribed) }()
			for {
				f, err := sub.ReadFrame(ctx)
				if err != nil {
					return <-all
				}
				pts = append(pts, f.PTS)
			}
		}), sdk.ConsumeOptions{})
	}()

	c, err := clientPublish(ctx, t, srv.url+"/live", "wrap")
	if err != nil {
		t.Fatal(err)
	}
	video := &gortmplib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}}
	audio := &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: &mpeg4audio.AudioSpecificConfig{
		Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 2}}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{video, audio}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	base := rtmpPeriod - 3*time.Second
	for i := range 60 { // 6 s at 10 fps, a keyframe every second
		ts := base + time.Duration(i)*100*time.Millisecond
		nalType := byte(0x41)
		if i%10 == 0 {
			nalType = 0x65
		}
		// Every frame is shown 200 ms after it is decoded.
		if err := w.WriteH264(video, ts+200*time.Millisecond, ts, [][]byte{{nalType, 0x88, 0x84, byte(i)}}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteMPEG4Audio(audio, ts, []byte{0x21, 0x10, byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-subscribed:
	case <-ctx.Done():
		t.Fatal("the sink did not subscribe")
	}
	c.Close()
	if err := <-consumed; err != nil {
		t.Fatal(err)
	}
	if len(pts) != 60 {
		t.Fatalf("%d video frames, want 60", len(pts))
	}
	for i, p := range pts {
		if want := time.Duration(i)*100*time.Millisecond + 200*time.Millisecond; p != want {
			t.Errorf("video frame %d at %v, want %v", i, p, want)
		}
	}
	if len(results) != 2 {
		t.Errorf("%d tracks, want 2", len(results))
	}
	for name, r := range results {
		last := 5900 * time.Millisecond // the legacy container has presentation times only
		if r.track.Kind == sdk.KindVideo {
			last += 200 * time.Millisecond
		}
		if r.frames != 60 || r.backwards != 0 || r.last != last {
			t.Errorf("%s: %d frames, %d going back, the last at %v; want 60, 0, %v", name, r.frames, r.backwards, r.last, last)
		}
	}
}

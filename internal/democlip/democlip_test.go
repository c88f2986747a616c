package democlip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestClip: the embedded clip is small and starts like an fMP4 file.
func TestClip(t *testing.T) {
	if Size() < 100_000 || Size() > 600_000 {
		t.Errorf("the clip is %d bytes, want 100 KB to 600 KB", Size())
	}
	if clip[4:8] != "ftyp" {
		t.Errorf("the clip starts with %q, not an ftyp box", clip[4:8])
	}
}

// TestTracksAndLoop publishes NewSource's clip and checks its tracks
// (H.264 640x360 at 30 fps, AAC 48 kHz) and that its video goes on in real
// time past the end of the first pass: a keyframe every second,
// timestamps increasing across the loop.
func TestTracksAndLoop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()
	pubCtx, unpublish := context.WithCancel(ctx)
	published := make(chan error, 1)
	go func() {
		published <- sdk.Publish(pubCtx, origin, "demo", NewSource(), sdk.PublishOptions{})
	}()
	defer func() {
		unpublish()
		if err := <-published; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("publish: %v", err)
		}
	}()

	sink := sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
		if err := r.WaitTracks(ctx, 100*time.Millisecond); err != nil {
			return err
		}
		var video string
		kinds := map[sdk.Kind]sdk.Track{}
		for _, tr := range r.Tracks() {
			kinds[tr.Kind] = tr
			if tr.Kind == sdk.KindVideo {
				video = tr.Name
			}
		}
		if v := kinds[sdk.KindVideo]; !strings.HasPrefix(v.Codec, "avc1.") || v.Width != 640 || v.Height != 360 {
			t.Errorf("video track %+v, want H.264 640x360", v)
		}
		if a := kinds[sdk.KindAudio]; a.Codec != "mp4a.40.2" || a.SampleRate != 48000 {
			t.Errorf("audio track %+v, want AAC-LC 48 kHz", a)
		}
		tr, err := r.Subscribe(video)
		if err != nil {
			return err
		}
		defer tr.Close()
		// The reader may start at any group: timestamps count from the
		// first keyframe read.
		var keyframes int
		var first time.Duration
		last := time.Duration(-1)
		// One keyframe more than a pass holds: the first of the next pass.
		for keyframes <= int(Duration/time.Second)+1 {
			f, err := tr.ReadFrame(ctx)
			if err != nil {
				return err
			}
			if f.PTS <= last {
				return fmt.Errorf("frame at %v after %v", f.PTS, last)
			}
			if f.Keyframe {
				if keyframes == 0 {
					first = f.PTS
				}
				if got, want := f.PTS-first, time.Duration(keyframes)*time.Second; got-want > 50*time.Millisecond || want-got > 50*time.Millisecond {
					return fmt.Errorf("keyframe %d at %v from the first, want %v", keyframes, got, want)
				}
				keyframes++
			}
			last = f.PTS
		}
		return nil
	})
	if err := sdk.Consume(ctx, origin, "demo", sink, sdk.ConsumeOptions{Wait: 10 * time.Second}); err != nil || ctx.Err() != nil {
		t.Fatalf("consume: %v (context: %v)", err, ctx.Err())
	}
}

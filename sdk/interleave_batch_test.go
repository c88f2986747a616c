package sdk

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// TestInterleaverBatch reads a video and an audio track through a batching
// Interleaver while they are written: every frame of each track comes
// out, in its track's order, then each track's end, and frames written
// after more than a second of silence (when the Interleaver waits on a
// track instead of every Batch) still come out.
func TestInterleaverBatch(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{})
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
	tws, err := p.w.AddTracks(video, audio)
	if err != nil {
		t.Fatal(err)
	}
	r := p.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	var readers []FrameReader
	for _, name := range []string{"video", "audio"} {
		tr, err := r.Subscribe(name)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		readers = append(readers, tr)
	}
	il := NewInterleaver(ctx, InterleaverConfig{Batch: 20 * time.Millisecond}, readers...)
	defer il.Close()

	const perTrack = 40
	written := make(chan error, 1)
	go func() {
		written <- func() error {
			for i := range perTrack {
				if i == perTrack/2 {
					// Long enough for the Interleaver to go idle.
					time.Sleep(1500 * time.Millisecond)
				}
				pts := time.Duration(i) * 20 * time.Millisecond
				if err := tws[0].WriteFrame(Frame{PTS: pts, Keyframe: i%10 == 0, Payload: []byte{0, 0, 0, 1, 0x65, byte(i)}}); err != nil {
					return err
				}
				if err := tws[1].WriteFrame(Frame{PTS: pts, Keyframe: true, Payload: []byte{0xf8, byte(i)}}); err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond)
			}
			return p.w.Close()
		}()
	}()

	got := make([][]byte, 2)
	ended := make([]bool, 2)
	for !ended[0] || !ended[1] {
		it, err := il.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v after %d video and %d audio frames", err, len(got[0]), len(got[1]))
		}
		if it.Err != nil {
			if !errors.Is(it.Err, io.EOF) && !errors.Is(it.Err, moq.ErrClosed) {
				t.Errorf("track %d ended with %v", it.Track, it.Err)
			}
			ended[it.Track] = true
			continue
		}
		p := it.Frame.Payload
		got[it.Track] = append(got[it.Track], p[len(p)-1])
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	for track, seq := range got {
		if len(seq) != perTrack {
			t.Errorf("track %d: %d frames, want %d", track, len(seq), perTrack)
		}
		for i, b := range seq {
			if int(b) != i {
				t.Errorf("track %d: frame %d is %d", track, i, b)
				break
			}
		}
	}
	if _, err := il.Next(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("after both ends: %v, want io.EOF", err)
	}
}

// TestInterleaverBatchCancel: a batching Interleaver waiting for frames
// returns the context's error when it ends.
func TestInterleaverBatchCancel(t *testing.T) {
	ctx := testContext(t)
	p := newPipeline(t, moq.CacheConfig{}, WriterConfig{})
	audio, err := OpusFromChannels(2)
	if err != nil {
		t.Fatal(err)
	}
	audio.Name = "audio"
	if _, err := p.w.AddTracks(audio); err != nil {
		t.Fatal(err)
	}
	r := p.reader(t)
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := r.Subscribe("audio")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	il := NewInterleaver(ctx, InterleaverConfig{Batch: 10 * time.Millisecond}, tr)
	defer il.Close()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := il.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v, want the context's deadline", err)
	}
}

// timedReader returns its frames once their time has come, as a track
// whose frames arrive then; a frame not yet there with ctx done is
// ctx.Err().
type timedReader struct {
	start  time.Time
	frames []Frame
	at     []time.Duration // when each frame is there, from start
}

func (r *timedReader) ReadFrame(ctx context.Context) (Frame, error) {
	if len(r.frames) == 0 {
		<-ctx.Done()
		return Frame{}, ctx.Err()
	}
	wait := time.Until(r.start.Add(r.at[0]))
	if wait > 0 {
		if ctx.Err() != nil {
			return Frame{}, ctx.Err()
		}
		select {
		case <-ctx.Done():
			return Frame{}, ctx.Err()
		case <-time.After(wait):
		}
	}
	f := r.frames[0]
	r.frames, r.at = r.frames[1:], r.at[1:]
	return f, nil
}

// TestInterleaverBatchStartWait: when StartWait passes between two
// batches, the frames that arrived meanwhile are taken before the start,
// so a track whose first frame came just in time sets the origin too.
func TestInterleaverBatchStartWait(t *testing.T) {
	ctx := testContext(t)
	start := time.Now()
	video := &timedReader{start: start, frames: []Frame{{PTS: 100 * time.Millisecond, Keyframe: true, Payload: []byte{1}}}, at: []time.Duration{0}}
	audio := &timedReader{start: start, frames: []Frame{{PTS: 0, Keyframe: true, Payload: []byte{2}}}, at: []time.Duration{250 * time.Millisecond}}
	// Batches at about 0, 200 and 400 ms; StartWait passes at 300 ms,
	// after the audio frame came and before the batch that would take it.
	il := NewInterleaver(ctx, InterleaverConfig{StartWait: 300 * time.Millisecond, Batch: 200 * time.Millisecond}, video, audio)
	defer il.Close()
	for range 2 {
		if _, err := il.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if origin, ok := il.Origin(); !ok || origin != 0 {
		t.Errorf("origin %v (fixed %v), want 0: the audio frame that came before StartWait passed", origin, ok)
	}
}

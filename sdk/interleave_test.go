package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// chanReader is a FrameReader fed by a test: a frame, or an error that
// ends the track.
type chanReader chan readResult

type readResult struct {
	f   Frame
	err error
}

func (c chanReader) ReadFrame(ctx context.Context) (Frame, error) {
	select {
	case r := <-c:
		return r.f, r.err
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// frameAt is a frame with PTS at ms, and a DTS when dts >= 0.
func frameAt(pts, dts int) readResult {
	f := Frame{PTS: ms(pts), Payload: []byte{byte(pts)}}
	if dts >= 0 {
		f.DTS, f.HasDTS = ms(dts), true
	}
	return readResult{f: f}
}

// next returns what Next hands out as "track:pts" or "track:end", or the
// error.
func next(t *testing.T, ctx context.Context, il *Interleaver) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	it, err := il.Next(ctx)
	if err != nil {
		return err.Error()
	}
	if it.Err != nil {
		return fmt.Sprintf("%d:end", it.Track)
	}
	return fmt.Sprintf("%d:%d", it.Track, it.Frame.PTS/time.Millisecond)
}

// waitDrained waits until the reader goroutines took everything sent.
func waitDrained(rs ...chanReader) {
	for _, r := range rs {
		for len(r) > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(10 * time.Millisecond) // and handed it to the Interleaver
}

func TestInterleaverStartArrivalOrder(t *testing.T) {
	ctx := context.Background()
	a, b := make(chanReader, 8), make(chanReader, 8)
	received := 0
	il := NewInterleaver(ctx, InterleaverConfig{StartWait: time.Minute, OnFrame: func(int) { received++ }}, a, b)
	defer il.Close()
	a <- frameAt(100, -1)
	a <- frameAt(133, -1)
	waitDrained(a)
	if _, ok := il.Origin(); ok {
		t.Fatal("started before every track had a frame")
	}
	b <- frameAt(90, -1)
	// The frames held for the start come out track by track, after the
	// origin is fixed at the smallest first PTS; then as they arrive.
	var got []string
	for range 3 {
		got = append(got, next(t, ctx, il))
		if o, ok := il.Origin(); !ok || o != ms(90) {
			t.Fatalf("origin %v %v", o, ok)
		}
	}
	b <- frameAt(110, -1)
	got = append(got, next(t, ctx, il))
	a <- readResult{err: io.EOF}
	got = append(got, next(t, ctx, il))
	b <- readResult{err: io.EOF}
	got = append(got, next(t, ctx, il), next(t, ctx, il))
	want := "0:100 0:133 1:90 1:110 0:end 1:end EOF"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
	if received != 4 {
		t.Errorf("OnFrame called %d times", received)
	}
}

func TestInterleaverStartWait(t *testing.T) {
	ctx := context.Background()
	a, b, c := make(chanReader, 8), make(chanReader, 8), make(chanReader, 8)
	il := NewInterleaver(ctx, InterleaverConfig{StartWait: 50 * time.Millisecond}, a, b, c)
	defer il.Close()
	// A track that ends before its first frame is reported at once; the
	// start still waits for StartWait, as c has no frame.
	b <- readResult{err: errors.New("gone")}
	if got := next(t, ctx, il); got != "1:end" {
		t.Fatalf("got %s", got)
	}
	start := time.Now()
	a <- frameAt(40, -1)
	if got := next(t, ctx, il); got != "0:40" {
		t.Fatalf("got %s", got)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("started after %v, before StartWait", d)
	}
	c <- frameAt(10, -1)
	if got := next(t, ctx, il); got != "2:10" {
		t.Errorf("got %s", got)
	}
	if o, _ := il.Origin(); o != ms(40) {
		t.Errorf("origin %v", o)
	}
}

// TestInterleaverStartWaitNoFrame: once StartWait passed without a frame,
// the first frame starts at once.
func TestInterleaverStartWaitNoFrame(t *testing.T) {
	ctx := context.Background()
	a, b := make(chanReader, 8), make(chanReader, 8)
	il := NewInterleaver(ctx, InterleaverConfig{StartWait: 10 * time.Millisecond}, a, b)
	defer il.Close()
	go func() {
		time.Sleep(40 * time.Millisecond)
		a <- frameAt(5, -1)
	}()
	if got := next(t, ctx, il); got != "0:5" {
		t.Errorf("got %s", got)
	}
}

func TestInterleaverCancel(t *testing.T) {
	a, b := make(chanReader, 8), make(chanReader, 8)
	ctx, cancel := context.WithCancel(context.Background())
	il := NewInterleaver(ctx, InterleaverConfig{StartWait: time.Minute}, a, b)
	defer il.Close()
	a <- frameAt(1, -1)
	a <- frameAt(2, -1)
	go func() {
		waitDrained(a)
		cancel()
	}()
	// What was held for the start comes out, then the context's error.
	got := []string{next(t, ctx, il), next(t, ctx, il), next(t, ctx, il), next(t, ctx, il)}
	if want := "0:1 0:2 context canceled context canceled"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
}

func TestInterleaverDecodeOrder(t *testing.T) {
	ctx := context.Background()
	v, a := make(chanReader, 16), make(chanReader, 16)
	il := NewInterleaver(ctx, InterleaverConfig{MaxWait: time.Minute}, v, a)
	defer il.Close()
	// Video with B-frames: decode order, PTS ahead of DTS.
	v <- frameAt(0, 0)
	v <- frameAt(100, 33)
	v <- frameAt(66, 66)
	a <- frameAt(10, -1)
	a <- frameAt(30, -1)
	a <- frameAt(50, -1)
	a <- frameAt(70, -1)
	waitDrained(v, a)
	var got []string
	// v:66 (DTS 66) and a:70 are held: the video's next frame could come
	// before a:70, and nothing of the audio after v:66 has come.
	for range 5 {
		got = append(got, next(t, ctx, il))
	}
	v <- frameAt(133, 100)
	waitDrained(v)
	a <- readResult{err: io.EOF}
	waitDrained(a)
	for range 4 {
		got = append(got, next(t, ctx, il))
	}
	// The audio ended: the video is not waited for.
	v <- readResult{err: io.EOF}
	got = append(got, next(t, ctx, il), next(t, ctx, il))
	want := "0:0 1:10 1:30 0:100 1:50 0:66 1:70 1:end 0:133 0:end EOF"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestInterleaverMaxWait(t *testing.T) {
	ctx := context.Background()
	v, a := make(chanReader, 16), make(chanReader, 16)
	il := NewInterleaver(ctx, InterleaverConfig{MaxWait: 40 * time.Millisecond}, v, a)
	defer il.Close()
	v <- frameAt(0, -1)
	a <- frameAt(0, -1)
	if got := next(t, ctx, il) + " " + next(t, ctx, il); got != "0:0 1:0" {
		t.Fatalf("got %s", got)
	}
	// The audio stalls: the video goes out once it waited MaxWait.
	v <- frameAt(33, -1)
	start := time.Now()
	if got := next(t, ctx, il); got != "0:33" {
		t.Fatalf("got %s", got)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("released after %v, before MaxWait", d)
	}
	// Late audio comes out when it arrives, not held back any more.
	a <- frameAt(20, -1)
	v <- frameAt(66, -1)
	waitDrained(v, a)
	if got := next(t, ctx, il) + " " + next(t, ctx, il); got != "1:20 0:66" {
		t.Errorf("got %s", got)
	}
}

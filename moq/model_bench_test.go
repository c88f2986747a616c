package moq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
)

const benchFrameSize = 1024

// mallocs returns the process-wide allocation count, for per-frame figures
// more precise than the integer allocs/op.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// BenchmarkGroupFanout measures the per-frame path: one writer appends b.N
// frames to one group while every reader goroutine reads each of them. A
// warm-up group of the same track runs first, untimed, so the frame list,
// waiter lists and wake-up channels are sized and pooled as in steady
// state. One op is one frame written (and read by every reader).
func BenchmarkGroupFanout(b *testing.B) {
	for _, readers := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			benchGroupFanout(b, readers)
		})
	}
}

func benchGroupFanout(b *testing.B, readers int) {
	bw := NewBroadcastWithCache(CacheConfig{MaxBytes: 1 << 40})
	defer func() { _ = bw.Close() }()
	tw, _ := bw.CreateTrack("bench", 0)
	payload := make([]byte, benchFrameSize)
	ctx := context.Background()

	warm, _ := tw.AppendGroup()
	subs := make([]*TrackReader, readers)
	for i := range subs {
		subs[i], _ = bw.Reader().Subscribe("bench", 0)
		defer subs[i].Close()
	}
	var warmed, done sync.WaitGroup
	warmed.Add(readers)
	errs := make(chan error, readers)
	start := make(chan struct{})
	for _, tr := range subs {
		done.Go(func() {
			// Warm-up group, read while it is written so waiting and
			// waking are exercised too.
			for phase := range 2 {
				if phase == 1 {
					warmed.Done()
					<-start
				}
				g, err := tr.NextGroup(ctx)
				if err != nil {
					errs <- err
					return
				}
				for {
					_, err := g.NextFrame(ctx)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						errs <- err
						return
					}
				}
				g.Close()
			}
		})
	}
	for range min(b.N, maxFrameHint) {
		_ = warm.WriteFrame(payload)
	}
	_ = warm.Close()
	warmed.Wait()

	b.SetBytes(benchFrameSize)
	b.ReportAllocs()
	b.ResetTimer()
	before := mallocs()
	g, _ := tw.AppendGroup()
	close(start)
	for range b.N {
		if err := g.WriteFrame(payload); err != nil {
			b.Fatal(err)
		}
	}
	_ = g.Close()
	done.Wait()
	b.StopTimer()
	b.ReportMetric(float64(mallocs()-before)/float64(b.N), "allocs/frame")
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkTrackFanout measures a realistic track: groups of 30 frames (a
// one-second GOP at 30 fps), readers following the track group by group.
// Allocations here are per group: the group itself, its frame list, and
// one GroupReader per reader.
func BenchmarkTrackFanout(b *testing.B) {
	for _, readers := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			benchTrackFanout(b, readers)
		})
	}
}

func benchTrackFanout(b *testing.B, readers int) {
	const framesPerGroup = 30
	bw := NewBroadcastWithCache(CacheConfig{MaxBytes: 4 << 20})
	defer func() { _ = bw.Close() }()
	tw, _ := bw.CreateTrack("bench", 0)
	payload := make([]byte, benchFrameSize)
	ctx := context.Background()
	groups := (b.N + framesPerGroup - 1) / framesPerGroup

	// Readers pace the writer one group at a time so none of them skips
	// groups and every frame is really delivered to every reader.
	var done sync.WaitGroup
	read := make(chan struct{}, readers)
	first, _ := tw.AppendGroup()
	for range readers {
		tr, _ := bw.Reader().Subscribe("bench", 0)
		defer tr.Close()
		done.Go(func() {
			for range groups + 1 {
				g, err := tr.NextGroup(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				for {
					if _, err := g.NextFrame(ctx); err != nil {
						break
					}
				}
				g.Close()
				read <- struct{}{}
			}
		})
	}
	for range framesPerGroup {
		_ = first.WriteFrame(payload)
	}
	_ = first.Close()
	for range readers {
		<-read
	}

	b.SetBytes(benchFrameSize)
	b.ReportAllocs()
	b.ResetTimer()
	before := mallocs()
	for range groups {
		g, _ := tw.AppendGroup()
		for range framesPerGroup {
			_ = g.WriteFrame(payload)
		}
		_ = g.Close()
		for range readers {
			<-read
		}
	}
	done.Wait()
	b.StopTimer()
	n := mallocs() - before
	b.ReportMetric(float64(n)/float64(groups*framesPerGroup), "allocs/frame")
	b.ReportMetric(float64(n)/float64(groups), "allocs/group")
}

// BenchmarkTrackAppend measures the writer alone: groups of 30 frames into
// a track with the default cache, so eviction runs in steady state. One op
// is one frame.
func BenchmarkTrackAppend(b *testing.B) {
	const framesPerGroup = 30
	bw := NewBroadcast()
	defer func() { _ = bw.Close() }()
	tw, _ := bw.CreateTrack("bench", 0)
	payload := make([]byte, benchFrameSize)

	b.SetBytes(benchFrameSize)
	b.ReportAllocs()
	before := mallocs()
	var g *GroupWriter
	for i := range b.N {
		if i%framesPerGroup == 0 {
			if g != nil {
				_ = g.Close()
			}
			g, _ = tw.AppendGroup()
		}
		_ = g.WriteFrame(payload)
	}
	_ = g.Close()
	b.StopTimer()
	b.ReportMetric(float64(mallocs()-before)/float64(b.N), "allocs/frame")
}

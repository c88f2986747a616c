package sdk

import (
	"context"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// BenchmarkWriterFrame measures TrackWriter.WriteFrame into a published
// broadcast: legacy header, copy into a slab-allocated buffer, group cut
// every 60 video frames (or 1 s of audio), cache eviction once the track's
// 16 MiB budget is full.
func BenchmarkWriterFrame(b *testing.B) {
	for _, bc := range []struct {
		name string
		kind Kind
		size int
	}{
		{"video-1200B", KindVideo, 1200},
		{"video-30KiB", KindVideo, 30 << 10},
		{"audio-200B", KindAudio, 200},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newPipeline(b, moq.CacheConfig{}, WriterConfig{})
			tr := Track{Kind: bc.kind, Codec: "vp8", SampleRate: 48000, Channels: 2}
			tw, err := p.w.AddTrack(tr)
			if err != nil {
				b.Fatal(err)
			}
			pl := make([]byte, bc.size)
			f := Frame{Payload: pl}
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.PTS = time.Duration(i) * 20 * time.Millisecond
				f.Keyframe = i%60 == 0
				if err := tw.WriteFrame(f); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkReaderFrame measures a write followed by a ReadFrame of the same
// 1200-byte legacy frame through the Origin, a group every 60 frames.
func BenchmarkReaderFrame(b *testing.B) {
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
}

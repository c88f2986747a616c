package rtmp

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// BenchmarkStartup measures the start-up of an RTMP publish: from the
// publisher's first media message (its metadata and sequence headers are
// sent just before, as ffmpeg and OBS send them) to its first frame read
// by a subscriber of the broadcast joining at the latest group, as a live
// player does, in process. The RTMP handshake and
// connect are not counted. ms/first-frame is the figure in
// docs/benchmarks.md.
func BenchmarkStartup(b *testing.B) {
	srv := startServer(b, Config{Linger: -1})
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		key := "s" + strconv.Itoa(i)
		u, _ := url.Parse(srv.url + "/live#" + key)
		pub, err := newTestPublisher(ctx, b, u, nil)
		if err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		if err := pub.send(0, 0, 1); err != nil {
			b.Fatal(err)
		}
		frame := firstFrame(ctx, b, srv.origin, "live/"+key)
		total += time.Since(began)
		if frame[5] != 0 {
			b.Fatalf("first frame %x", frame)
		}
		pub.c.Close()
		cancel()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-frame")
}

// firstFrame waits for the broadcast at path and returns the payload of
// the first frame of its first video track, read from the latest group.
func firstFrame(ctx context.Context, b *testing.B, origin *moq.Origin, path string) []byte {
	mb, err := sdk.WaitBroadcast(ctx, origin, path, -1)
	if err != nil {
		b.Fatal(err)
	}
	r, err := sdk.NewBroadcastReader(mb)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if err := r.WaitCatalog(ctx); err != nil {
		b.Fatal(err)
	}
	sub, err := r.Subscribe(r.Tracks()[0].Name)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	f, err := sub.ReadFrame(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return f.Payload
}

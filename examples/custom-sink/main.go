// Custom-sink prints how many frames each track of a broadcast brings and
// at what bitrate. It shows a custom sdk.Sink: a type whose Run method
// reads the catalog and the tracks of the sdk.BroadcastReader it is given
// until the broadcast ends. protocol.Connect mirrors a relay's broadcasts
// into a local moq.Origin, and sdk.Consume runs the sink on one of them.
//
// Start moqbridge (go run ./cmd/moqbridge serves the broadcast "demo"),
// then
//
//	go run ./examples/custom-sink -url http://localhost:4443/ -broadcast demo
//
// It prints a line per track every -every (2s), and a last one when the
// broadcast ends or on Ctrl-C:
//
//	demo video0 avc1.64001f 640x360: 241 frames, 356.5 kbit/s
//	demo audio1 mp4a.40.2 48000 Hz: 376 frames, 48.1 kbit/s
//
// The bitrate is over media time (the frames' timestamps), not wall time,
// so it does not depend on when the frames arrived.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

func main() {
	url := flag.String("url", "http://localhost:4443/", "relay URL: http:// (development relay), https://, moql:// or ws://")
	broadcast := flag.String("broadcast", "demo", "path of the broadcast on the relay")
	every := flag.Duration("every", 2*time.Second, "how often to print")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *broadcast, *every, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "custom-sink:", err)
		os.Exit(1)
	}
}

// run prints the stats of broadcast on the relay at url to out until the
// broadcast ends or ctx ends.
func run(ctx context.Context, url, broadcast string, every time.Duration, out io.Writer) error {
	local := moq.NewOrigin()
	defer local.Close()
	relay, err := protocol.Connect(ctx, url, protocol.WithConsume(local))
	if err != nil {
		return err
	}
	defer relay.Close()
	// Consume waits (here up to 10 s) for the broadcast to be announced.
	return sdk.Consume(ctx, local, broadcast, statsSink{out: out, every: every}, sdk.ConsumeOptions{Wait: 10 * time.Second})
}

// statsSink is the custom Sink.
type statsSink struct {
	out   io.Writer
	every time.Duration
}

// trackCount is what has been read of one track.
type trackCount struct {
	track       sdk.Track
	frames      int
	bits        int           // of every frame but the first
	first, last time.Duration // decode times of the first and the last frame
}

// Run implements sdk.Sink: a goroutine per track reads its frames, and Run
// prints the counts every s.every and when the tracks end.
func (s statsSink) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	if err := r.WaitCatalog(ctx); err != nil {
		return err
	}
	var (
		mu     sync.Mutex // guards counts' fields
		counts []*trackCount
		wg     sync.WaitGroup
	)
	readCtx, stopReading := context.WithCancel(ctx)
	defer func() {
		stopReading()
		wg.Wait()
	}()
	// The tracks of the first catalog; r.Changed() would tell of later ones.
	tracks := r.Tracks()
	ended := make(chan struct{}, len(tracks))
	for _, t := range tracks {
		tr, err := r.Subscribe(t.Name)
		if err != nil {
			return err
		}
		c := &trackCount{track: t}
		counts = append(counts, c)
		wg.Go(func() {
			defer func() { ended <- struct{}{} }()
			defer tr.Close()
			for {
				f, err := tr.ReadFrame(readCtx)
				if err != nil {
					return // io.EOF at the end of the track, or readCtx ended
				}
				mu.Lock()
				if c.frames == 0 {
					c.first = f.DecodeTime()
				} else {
					c.bits += 8 * len(f.Payload)
				}
				c.frames++
				c.last = f.DecodeTime()
				mu.Unlock()
			}
		})
	}

	report := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range counts {
			kbps := 0.0
			if span := c.last - c.first; span > 0 {
				kbps = float64(c.bits) / span.Seconds() / 1000
			}
			fmt.Fprintf(s.out, "%s %s %s %s: %d frames, %.1f kbit/s\n", r.Path(), c.track.Name, c.track.Codec, shape(c.track), c.frames, kbps)
		}
	}
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for reading := len(tracks); ; {
		select {
		case <-tick.C:
			report()
		case <-ended:
			if reading--; reading == 0 { // the broadcast ended
				report()
				return nil
			}
		case <-ctx.Done():
			report()
			return nil
		}
	}
}

// shape is a track's size or sample rate.
func shape(t sdk.Track) string {
	if t.Kind == sdk.KindVideo {
		return fmt.Sprintf("%dx%d", t.Width, t.Height)
	}
	return fmt.Sprintf("%d Hz", t.SampleRate)
}

// Custom-source publishes a generated test pattern to a MOQ Lite relay. It
// shows a custom sdk.Source: a type whose Run method adds a track to the
// sdk.BroadcastWriter it is given and writes frames into it until its
// context ends. sdk.Publish runs it as a broadcast of a local moq.Origin,
// and protocol.Connect serves that Origin to the relay (reconnecting if the
// relay restarts).
//
// The pattern is colour bars with a square moving across them, H.264 at
// 160x96 and 10 frames per second (h264pcm.go encodes it without a codec
// library). Start a relay (go run ./cmd/moqbridge), then
//
//	go run ./examples/custom-source -url http://localhost:4443/ -broadcast pattern
//
// and watch the broadcast "pattern" with @moq/watch, look at it with
// moqbridge probe http://localhost:4443/, or record it with
// moqbridge record -o recordings http://localhost:4443/ pattern.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

func main() {
	url := flag.String("url", "http://localhost:4443/", "relay URL: http:// (development relay), https://, moql:// or ws://")
	broadcast := flag.String("broadcast", "pattern", "path of the broadcast on the relay")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *broadcast); err != nil {
		fmt.Fprintln(os.Stderr, "custom-source:", err)
		os.Exit(1)
	}
}

// run publishes the test pattern as broadcast on the relay at url until
// ctx ends.
func run(ctx context.Context, url, broadcast string) error {
	origin := moq.NewOrigin()
	defer origin.Close()
	relay, err := protocol.Connect(ctx, url, protocol.WithPublish(origin))
	if err != nil {
		return err
	}
	defer relay.Close()
	fmt.Printf("publishing %s to %s\n", broadcast, url)
	return sdk.Publish(ctx, origin, broadcast, testPattern{Width: 160, Height: 96, FPS: 10}, sdk.PublishOptions{})
}

// testPattern is the custom Source: colour bars with a white square moving
// across them. Width and Height are multiples of 16.
type testPattern struct {
	Width, Height, FPS int
}

// Run implements sdk.Source.
func (p testPattern) Run(ctx context.Context, w *sdk.BroadcastWriter) error {
	sps, pps := parameterSets(p.Width, p.Height)
	// The codec string, size and decoder configuration the catalog lists.
	track, err := sdk.H264FromParameterSets(sps, pps)
	if err != nil {
		return err
	}
	track.Framerate = float64(p.FPS)
	video, err := w.AddTrack(track) // named "video0"
	if err != nil {
		return err
	}
	interval := time.Second / time.Duration(p.FPS)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		y, cb, cr := p.draw(n)
		frame := sdk.Frame{
			PTS:      time.Duration(n) * interval,
			Keyframe: true, // every picture is an IDR: each starts a group
			Payload:  idrPicture(y, cb, cr, p.Width, p.Height, uint32(n%2)),
		}
		if err := video.WriteFrame(frame); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil // the broadcast ends when Run returns
		case <-tick.C:
		}
	}
}

// bars are 75% colour bars in Y, Cb, Cr (BT.601, limited range): white,
// yellow, cyan, green, magenta, red, blue, black.
var bars = [...][3]byte{{180, 128, 128}, {162, 44, 142}, {131, 156, 44}, {112, 72, 58}, {84, 184, 198}, {65, 100, 212}, {35, 212, 114}, {16, 128, 128}}

// draw returns picture n as 4:2:0 planes.
func (p testPattern) draw(n int) (y, cb, cr []byte) {
	y = make([]byte, p.Width*p.Height)
	cb = make([]byte, p.Width*p.Height/4)
	cr = make([]byte, p.Width*p.Height/4)
	const size = 32
	left, top := n*4%(p.Width-size), (p.Height-size)/2
	for row := range p.Height {
		for col := range p.Width {
			c := bars[col*len(bars)/p.Width]
			if col >= left && col < left+size && row >= top && row < top+size {
				c = [3]byte{235, 128, 128}
			}
			y[row*p.Width+col] = c[0]
			if row%2 == 0 && col%2 == 0 {
				i := row/2*(p.Width/2) + col/2
				cb[i], cr[i] = c[1], c[2]
			}
		}
	}
	return y, cb, cr
}

package protocol_test

import (
	"context"
	"fmt"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// liveTone is a live source: one Opus track, a 20 ms frame every 20 ms
// until ctx ends.
var liveTone = sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
	track, err := sdk.OpusFromChannels(2)
	if err != nil {
		return err
	}
	tw, err := w.AddTrack(track)
	if err != nil {
		return err
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := tw.WriteFrame(sdk.Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: []byte{0xfc, byte(i)}}); err != nil {
			return err
		}
	}
})

// A publisher and a subscriber of a relay, the SDK's way: the publisher
// runs a Source into its Origin and serves it to the relay; the subscriber
// mirrors the relay's announcements into its own Origin and runs a Sink on
// a broadcast there. Connect keeps each session through relay restarts.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A relay on loopback (what `moqbridge serve` runs).
	relay, err := protocol.NewServer(protocol.ServerConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan error)
	go func() { served <- relay.Serve(ctx) }()
	url := fmt.Sprintf("moql://127.0.0.1:%d", relay.Addr().Port)
	pin := protocol.WithFingerprint(relay.Fingerprint())

	// Publisher.
	origin := moq.NewOrigin()
	pubCtx, stopPublishing := context.WithCancel(ctx)
	defer stopPublishing()
	published := make(chan error, 1)
	go func() { published <- sdk.Publish(pubCtx, origin, "live/tone", liveTone, sdk.PublishOptions{}) }()
	pub, err := protocol.Connect(ctx, url, protocol.WithPublish(origin), pin)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Subscriber.
	local := moq.NewOrigin()
	sub, err := protocol.Connect(ctx, url, protocol.WithConsume(local), pin)
	if err != nil {
		fmt.Println(err)
		return
	}
	err = sdk.Consume(ctx, local, "live/tone", sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
		if err := r.WaitCatalog(ctx); err != nil {
			return err
		}
		t := r.Tracks()[0]
		fmt.Println(r.Path(), t.Name, t.Codec)
		tr, err := r.Subscribe(t.Name)
		if err != nil {
			return err
		}
		defer tr.Close()
		f, err := tr.ReadFrame(ctx)
		if err != nil {
			return err
		}
		fmt.Println("a frame of", len(f.Payload), "bytes")
		return nil
	}), sdk.ConsumeOptions{})
	fmt.Println("sink:", err)

	_ = sub.Close()
	stopPublishing()
	<-published
	_ = pub.Close()
	_ = relay.Close()
	<-served
	origin.Close()
	local.Close()
	// Output:
	// live/tone audio0 opus
	// a frame of 2 bytes
	// sink: <nil>
}

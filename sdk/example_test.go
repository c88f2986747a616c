package sdk_test

import (
	"context"
	"fmt"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// toneSource is a custom Source: one Opus track of 20 ms frames, written
// until ctx ends (a live source). Each payload is a TOC byte and a counter.
func toneSource(frames int) sdk.Source {
	return sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
		track, err := sdk.OpusFromChannels(2)
		if err != nil {
			return err
		}
		tw, err := w.AddTrack(track) // named "audio0"; the catalog lists it
		if err != nil {
			return err
		}
		for i := range frames {
			f := sdk.Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: []byte{0xfc, byte(i)}}
			if err := tw.WriteFrame(f); err != nil {
				return err
			}
		}
		<-ctx.Done()
		return nil
	})
}

// printSink is a custom Sink: it prints the catalog and n frames of the
// first track, then returns.
func printSink(n int) sdk.Sink {
	return sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
		if err := r.WaitCatalog(ctx); err != nil {
			return err
		}
		t := r.Tracks()[0]
		fmt.Printf("%s: %s %s, %d Hz, %d channels\n", r.Path(), t.Name, t.Codec, t.SampleRate, t.Channels)
		tr, err := r.Subscribe(t.Name)
		if err != nil {
			return err
		}
		defer tr.Close()
		for range n {
			f, err := tr.ReadFrame(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("frame at %v: % x\n", f.PTS, f.Payload)
		}
		return nil
	})
}

// Publishing a custom Source into an Origin and running a custom Sink on
// it: Publish announces the broadcast once its catalog lists the track,
// Consume waits for it and gives the sink a reader that starts at the
// oldest group still cached, so nothing written before it attached is
// missed.
func ExamplePublish() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()

	pubCtx, unpublish := context.WithCancel(ctx)
	published := make(chan error)
	go func() { published <- sdk.Publish(pubCtx, origin, "live/tone", toneSource(3), sdk.PublishOptions{}) }()

	err := sdk.Consume(ctx, origin, "live/tone", printSink(3), sdk.ConsumeOptions{})
	fmt.Println("sink:", err)
	unpublish()
	fmt.Println("source:", <-published)
	// Output:
	// live/tone: audio0 opus, 48000 Hz, 2 channels
	// frame at 0s: fc 00
	// frame at 20ms: fc 01
	// frame at 40ms: fc 02
	// sink: <nil>
	// source: <nil>
}

// Running a custom Sink on a broadcast: Consume waits for the broadcast
// to be live at its path (here it is already), then runs the sink with a
// reader that knows the path and starts at the oldest cached group.
func ExampleConsume() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()
	pubCtx, unpublish := context.WithCancel(ctx)
	published := make(chan error)
	go func() { published <- sdk.Publish(pubCtx, origin, "live/tone", toneSource(2), sdk.PublishOptions{}) }()

	sink := sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
		if err := r.WaitTracks(ctx, 50*time.Millisecond); err != nil {
			return err
		}
		tr, err := r.Subscribe(r.Tracks()[0].Name)
		if err != nil {
			return err
		}
		defer tr.Close()
		for range 2 {
			f, err := tr.ReadFrame(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("%s %s: %d bytes at %v, keyframe %v\n", r.Path(), tr.Track().Name, len(f.Payload), f.PTS, f.Keyframe)
		}
		st := tr.Stats()
		fmt.Printf("read %d frames, %d bytes, %d group(s)\n", st.Frames, st.Bytes, st.Groups)
		return nil
	})
	fmt.Println("sink:", sdk.Consume(ctx, origin, "live/tone", sink, sdk.ConsumeOptions{Wait: 5 * time.Second}))
	unpublish()
	<-published
	// Output:
	// live/tone audio0: 2 bytes at 0s, keyframe true
	// live/tone audio0: 2 bytes at 20ms, keyframe true
	// read 2 frames, 4 bytes, 1 group(s)
	// sink: <nil>
}

// A sink for every broadcast under a prefix, following them as they come
// and go: Follow makes a sink per path and reports how each ended.
func ExampleFollow() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()

	ended := make(chan string)
	followCtx, stop := context.WithCancel(ctx)
	followed := make(chan error)
	go func() {
		followed <- sdk.Follow(followCtx, origin, "live", func(path string) (sdk.Sink, error) {
			return printSink(1), nil
		}, func(path string, err error) { ended <- fmt.Sprintf("%s ended: %v", path, err) })
	}()
	for _, path := range []string{"live/a", "live/b"} {
		pubCtx, unpublish := context.WithCancel(ctx)
		published := make(chan error)
		go func() { published <- sdk.Publish(pubCtx, origin, path, toneSource(1), sdk.PublishOptions{}) }()
		fmt.Println(<-ended)
		unpublish()
		<-published
	}
	stop()
	fmt.Println("follow:", <-followed)
	// Output:
	// live/a: audio0 opus, 48000 Hz, 2 channels
	// frame at 0s: fc 00
	// live/a ended: <nil>
	// live/b: audio0 opus, 48000 Hz, 2 channels
	// frame at 0s: fc 00
	// live/b ended: <nil>
	// follow: <nil>
}

// keyListener is the shape of a listener source (an RTMP server, say): one
// listener, a broadcast per client. Here clients arrive on a channel with
// their stream key, and each one sends two frames.
type keyListener struct {
	clients <-chan string
}

func (l keyListener) Run(ctx context.Context, p *sdk.Publisher) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case key := <-l.clients:
			b, err := p.Start("live/" + key)
			if err != nil {
				fmt.Println("refused:", err)
				continue
			}
			track, _ := sdk.OpusFromChannels(1)
			tw, err := b.Writer().AddTrack(track)
			if err != nil {
				return err
			}
			_ = tw.WriteFrame(sdk.Frame{Keyframe: true, Payload: []byte{0xfc, 1}})
			_ = tw.WriteFrame(sdk.Frame{PTS: 20 * time.Millisecond, Keyframe: true, Payload: []byte{0xfc, 2}})
			// The client stays connected: b.End() would end its broadcast.
		}
	}
}

// A listener source is given a Publisher scoped to the paths it may use;
// it starts, replaces and ends broadcasts itself.
func ExampleListener() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()

	clients := make(chan string)
	p := sdk.NewPublisher(origin, sdk.PublisherOptions{Prefixes: []string{"live"}})
	listenCtx, stop := context.WithCancel(ctx)
	listened := make(chan error)
	go func() { listened <- keyListener{clients}.Run(listenCtx, p) }()

	clients <- "alice"
	_ = sdk.Consume(ctx, origin, "live/alice", printSink(2), sdk.ConsumeOptions{})
	clients <- "alice" // the same key again while the first is live
	clients <- "../x"  // not a valid path

	stop()
	fmt.Println("listener:", <-listened)
	p.Close() // ends what is still live
	fmt.Println("live after Close:", p.Live())
	// Output:
	// live/alice: audio0 opus, 48000 Hz, 1 channels
	// frame at 0s: fc 01
	// frame at 20ms: fc 02
	// refused: sdk: publish at "live/alice": sdk: a broadcast is already live at this path
	// refused: sdk: publish at "live/../x": moq: invalid path: "live/../x" has a ".." segment
	// listener: <nil>
	// live after Close: []
}

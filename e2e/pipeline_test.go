package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
	fmp4src "github.com/moqbridge/moqbridge/sources/fmp4"
)

const broadcastPath = "e2e/clip"

var discard = slog.New(slog.DiscardHandler)

// transport connects the Origin a source publishes into with the Origin
// a recorder consumes from. Cleanups go to t.Cleanup.
type transport func(t *testing.T, ctx context.Context) carried

// carried is the two ends of a transport.
type carried struct {
	// pub is where the source publishes; rec where the recorder finds
	// the broadcast (the same Origin in process).
	pub, rec *moq.Origin
}

// inProcess is one in-process Origin. The broadcast's cache (the default
// relay budget) holds every group of a clip, so a reader that subscribes
// FromOldest gets them all however far the source ran ahead.
func inProcess(t *testing.T, _ context.Context) carried {
	origin := moq.NewOrigin()
	t.Cleanup(origin.Close)
	return carried{pub: origin, rec: origin}
}

// overNetwork runs a relay (protocol.NewServer on 127.0.0.1:0); the
// source's Origin is published to it by one protocol.Dial session over raw
// QUIC and the recorder's Origin mirrors it through another.
func overNetwork(t *testing.T, ctx context.Context) carried {
	srv, err := protocol.NewServer(protocol.ServerConfig{Addr: "127.0.0.1:0", Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx) }()
	t.Cleanup(func() {
		_ = srv.Close()
		stopSrv()
		<-served
	})
	fp := srv.Fingerprint()
	url := fmt.Sprintf("moql://127.0.0.1:%d", srv.Addr().Port)

	pubOrigin := moq.NewOrigin()
	t.Cleanup(pubOrigin.Close)
	recOrigin := moq.NewOrigin()
	t.Cleanup(recOrigin.Close)
	pub, err := protocol.Dial(ctx, url, protocol.WithFingerprint(fp), protocol.WithPublish(pubOrigin), protocol.WithLogger(discard))
	if err != nil {
		t.Fatalf("publisher dial: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	if pub.Transport() != "quic" {
		t.Fatalf("publisher transport %q, want raw QUIC", pub.Transport())
	}
	rec, err := protocol.Dial(ctx, url, protocol.WithFingerprint(fp), protocol.WithConsume(recOrigin), protocol.WithLogger(discard))
	if err != nil {
		t.Fatalf("recorder dial: %v", err)
	}
	t.Cleanup(func() { _ = rec.Close() })
	if rec.Transport() != "quic" {
		t.Fatalf("recorder transport %q, want raw QUIC", rec.Transport())
	}
	return carried{pub: pubOrigin, rec: recOrigin}
}

// recordResult is what one pipeline run produced.
type recordResult struct {
	file   string
	tracks []sdk.Track // as the source published them
	stats  fmp4sink.Stats
}

// record runs source → sdk.Publish → tr → sdk.Consume → fMP4 sink until
// the source ends, and returns the single file recorded. The source runs
// as fast as it reads (Options.Fast), unsynchronised with the sink: the
// wiring subscribes the recorder's tracks from their oldest cached group
// (moq.FromOldest), so it records from the first keyframe although the
// source may be groups ahead by the time the sink has the catalog; over a
// network the subscriptions carry start group 0, so the relay and the
// publisher serve them from their oldest cached group too. newSource gets
// the options to use (Fast and OnTracks set).
func record(t *testing.T, ctx context.Context, tr transport, videoTimescale uint32, newSource func(fmp4src.Options) *fmp4src.Source) recordResult {
	t.Helper()
	c := tr(t, ctx)
	sink := fmp4sink.New(fmp4sink.Config{Dir: t.TempDir(), VideoTimescale: videoTimescale, Logger: discard})
	sinkErr := make(chan error, 1)
	go func() { sinkErr <- sdk.Consume(ctx, c.rec, broadcastPath, sink, sdk.ConsumeOptions{}) }()
	var res recordResult
	src := newSource(fmp4src.Options{
		Fast: true,
		OnTracks: func(ts []sdk.Track) error {
			res.tracks = ts
			return nil
		},
	})
	// The broadcast stays open until the sink has received every frame
	// written: in process, a track that has ended takes no new reader,
	// and the sink may subscribe only after the source wrote its last
	// frame.
	whole := sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
		err := src.Run(ctx, w)
		if werr := waitDelivered(ctx, w, sink); werr != nil {
			t.Errorf("sink: %v", werr)
		}
		return err
	})
	srcErr := sdk.Publish(ctx, c.pub, broadcastPath, whole, sdk.PublishOptions{})
	if err := <-sinkErr; err != nil {
		t.Fatalf("sink: %v", err)
	}
	if srcErr != nil && srcErr != io.EOF {
		t.Fatalf("source: %v", srcErr)
	}
	if ctx.Err() != nil {
		t.Fatalf("timed out: %v", ctx.Err())
	}
	files := sink.Files()
	if len(files) != 1 {
		t.Fatalf("sink recorded %v, want one file", files)
	}
	res.file, res.stats = files[0], sink.Stats()
	return res
}

// waitDelivered waits until the sink has received every frame w wrote.
func waitDelivered(ctx context.Context, w *sdk.BroadcastWriter, sink *fmp4sink.Sink) error {
	for {
		var written uint64
		for _, st := range w.Stats() {
			written += st.Frames
		}
		got := sink.Stats().Frames
		if got >= written {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the sink received %d of %d frames: %w", got, written, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

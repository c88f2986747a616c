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

// transport carries a published broadcast to a consumer. Cleanups go to
// t.Cleanup.
type transport func(t *testing.T, ctx context.Context, pb *moq.BroadcastWriter) carried

// carried is a broadcast as a consumer sees it.
type carried struct {
	// reader is the reader side of the published broadcast.
	reader *moq.BroadcastReader
	// subscribed, when not nil, waits until n subscriptions of the
	// consumer have reached the publisher: a track fetched from a peer
	// starts at the publisher's latest group (moq.FromOldest reaches back
	// only to what the consumer's track received), so the source must not
	// write media before the recorder's subscriptions arrived.
	subscribed func(ctx context.Context, n int) error
}

// inProcess publishes pb into an in-process Origin and consumes it there.
// The broadcast's cache (the default relay budget) holds every group of a
// clip, so a reader that subscribes FromOldest gets them all however far
// the source ran ahead.
func inProcess(t *testing.T, _ context.Context, pb *moq.BroadcastWriter) carried {
	origin := moq.NewOrigin()
	t.Cleanup(origin.Close)
	if err := origin.Publish(broadcastPath, pb.Reader()); err != nil {
		t.Fatal(err)
	}
	b, err := origin.Consume(broadcastPath)
	if err != nil {
		t.Fatal(err)
	}
	return carried{reader: b}
}

// overNetwork runs a relay (protocol.NewServer on 127.0.0.1:0), publishes
// pb to it from one protocol.Dial session over raw QUIC and consumes it
// through another.
func overNetwork(t *testing.T, ctx context.Context, pb *moq.BroadcastWriter) carried {
	srv, err := protocol.NewServer(protocol.ServerConfig{Addr: "127.0.0.1:0"})
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
	if err := pubOrigin.Publish(broadcastPath, pb.Reader()); err != nil {
		t.Fatal(err)
	}
	ann := srv.Origin().Announced(broadcastPath)
	defer ann.Close()
	pub, err := protocol.Dial(ctx, url, protocol.WithFingerprint(fp), protocol.WithPublish(pubOrigin), protocol.WithLogger(discard))
	if err != nil {
		t.Fatalf("publisher dial: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	if pub.Transport() != "quic" {
		t.Fatalf("publisher transport %q, want raw QUIC", pub.Transport())
	}
	if a, err := ann.Next(ctx); err != nil || !a.Active {
		t.Fatalf("the relay never announced %s: %v", broadcastPath, err)
	}
	rec, err := protocol.Dial(ctx, url, protocol.WithFingerprint(fp), protocol.WithLogger(discard))
	if err != nil {
		t.Fatalf("recorder dial: %v", err)
	}
	t.Cleanup(func() { _ = rec.Close() })
	if rec.Transport() != "quic" {
		t.Fatalf("recorder transport %q, want raw QUIC", rec.Transport())
	}
	subscribed := func(ctx context.Context, n int) error {
		// The publisher answers a SUBSCRIBE once it has subscribed the
		// track of pb, so every group written after this is forwarded.
		for pub.Stats().SubscriptionsServed < uint64(n) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%d of %d subscriptions reached the publisher: %w", pub.Stats().SubscriptionsServed, n, ctx.Err())
			case <-time.After(time.Millisecond):
			}
		}
		return nil
	}
	return carried{reader: rec.Consume(broadcastPath), subscribed: subscribed}
}

// recordResult is what one pipeline run produced.
type recordResult struct {
	file   string
	tracks []sdk.Track // as the source published them
	stats  fmp4sink.Stats
}

// record runs source → sdk.BroadcastWriter → tr → sdk.BroadcastReader →
// fMP4 sink until the source ends, and returns the single file recorded.
// The source runs as fast as it reads (Options.Fast), unsynchronised with
// the sink: the recorder's reader is made before the source starts and
// subscribes each track from its oldest cached group (moq.FromOldest), so
// it records from the first keyframe although the source may be groups
// ahead by the time the sink has the catalog. Over a network the source
// waits (in OnTracks, before its first frame) until the recorder's
// subscriptions reached the publisher (carried.subscribed). newSource gets
// the options to use (Fast and OnTracks set).
func record(t *testing.T, ctx context.Context, tr transport, videoTimescale uint32, newSource func(fmp4src.Options) *fmp4src.Source) recordResult {
	t.Helper()
	pb := moq.NewBroadcast()
	w, err := sdk.NewBroadcastWriter(pb, sdk.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := tr(t, ctx, pb)
	r, err := sdk.NewBroadcastReaderFrom(c.reader, moq.FromOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sink := fmp4sink.New(fmp4sink.Config{Dir: t.TempDir(), Path: broadcastPath, VideoTimescale: videoTimescale, Logger: discard})
	sinkErr := make(chan error, 1)
	go func() { sinkErr <- sink.Run(ctx, r) }()
	var res recordResult
	src := newSource(fmp4src.Options{
		Fast: true,
		OnTracks: func(ts []sdk.Track) error {
			res.tracks = ts
			if c.subscribed == nil {
				return nil
			}
			// The catalog and every track.
			return c.subscribed(ctx, 1+len(ts))
		},
	})
	srcErr := src.Run(ctx, w)
	// The broadcast stays open until the sink has read every frame
	// written. In process, a track that has ended takes no new reader, and
	// the sink may subscribe only after the source wrote its last frame.
	// Over a relay, a track's end can overtake its last groups (see
	// e2e/doc.go).
	if err := waitDelivered(ctx, w, r); err != nil {
		t.Errorf("sink: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("writer close: %v", err)
	}
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

// waitDelivered waits until r has read, track by track, every frame w
// wrote.
func waitDelivered(ctx context.Context, w *sdk.BroadcastWriter, r *sdk.BroadcastReader) error {
	for {
		written, read := w.Stats(), r.Stats()
		missing := 0
		for name, st := range written {
			if read[name].Frames < st.Frames {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d tracks not read to their end (written %v, read %v): %w", missing, len(written), written, read, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
	fmp4src "github.com/moqbridge/moqbridge/sources/fmp4"
)

const broadcastPath = "e2e/clip"

var discard = slog.New(slog.DiscardHandler)

// transport carries a published broadcast to a consumer: it returns the
// reader side of pb as a subscriber sees it. Cleanups go to t.Cleanup.
type transport func(t *testing.T, ctx context.Context, pb *moq.BroadcastWriter) *moq.BroadcastReader

// inProcess publishes pb into an in-process Origin and consumes it there.
func inProcess(t *testing.T, _ context.Context, pb *moq.BroadcastWriter) *moq.BroadcastReader {
	origin := moq.NewOrigin()
	t.Cleanup(origin.Close)
	if err := origin.Publish(broadcastPath, pb.Reader()); err != nil {
		t.Fatal(err)
	}
	b, err := origin.Consume(broadcastPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// overNetwork runs a relay (protocol.NewServer on 127.0.0.1:0), publishes
// pb to it from one protocol.Dial session over raw QUIC and consumes it
// through another.
func overNetwork(t *testing.T, ctx context.Context, pb *moq.BroadcastWriter) *moq.BroadcastReader {
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
	return rec.Consume(broadcastPath)
}

// recordResult is what one pipeline run produced.
type recordResult struct {
	file   string
	tracks []sdk.Track // as the source published them
	stats  fmp4sink.Stats
}

// record runs source → sdk.BroadcastWriter → tr → sdk.BroadcastReader →
// fMP4 sink until the source ends, in lock step (see lockstep), and
// returns the single file recorded. newSource gets the options to use
// (Fast, Progress, OnTracks set).
func record(t *testing.T, ctx context.Context, tr transport, ft *frameTally, videoTimescale uint32, newSource func(fmp4src.Options) *fmp4src.Source) recordResult {
	t.Helper()
	pb := moq.NewBroadcast()
	w, err := sdk.NewBroadcastWriter(pb, sdk.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b := tr(t, ctx, pb)
	r, err := sdk.NewBroadcastReader(b)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sink := fmp4sink.New(fmp4sink.Config{Dir: t.TempDir(), Path: broadcastPath, VideoTimescale: videoTimescale, Logger: discard})
	sinkErr := make(chan error, 1)
	sinkDone := make(chan struct{})
	go func() {
		defer close(sinkDone)
		sinkErr <- sink.Run(ctx, r)
	}()
	var res recordResult
	src := newSource(fmp4src.Options{
		Fast:     true,
		Progress: lockstep(ctx, ft, sink, sinkDone),
		OnTracks: func(ts []sdk.Track) error { res.tracks = ts; return nil },
	})
	srcErr := src.Run(ctx, w)
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

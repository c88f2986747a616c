package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestPublish runs `moqbridge publish --loop --fast` with a test clip
// against an in-process relay and reads the broadcast back from the relay:
// the catalog lists the clip's tracks and a video keyframe arrives.
func TestPublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, url, fp := startRelay(t, ctx)
	publishClip(t, ctx, url, fp, "test/clip", "--fast")

	ann := srv.Origin().Announced("test/clip")
	defer ann.Close()
	a, err := ann.Next(ctx)
	if err != nil || !a.Active {
		t.Fatalf("relay never saw test/clip: %v", err)
	}
	r, err := sdk.NewBroadcastReader(a.Broadcast)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatalf("catalog: %v", err)
	}
	var video string
	for _, tr := range r.Tracks() {
		if tr.Kind == sdk.KindVideo {
			video = tr.Name
		}
	}
	if video == "" || len(r.Tracks()) != 2 {
		t.Fatalf("catalog tracks %+v, want H.264 video and AAC audio", r.Tracks())
	}
	tr, err := r.Subscribe(video)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	f, err := tr.ReadFrame(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Keyframe || len(f.Payload) == 0 {
		t.Fatalf("first video frame: keyframe %v, %d bytes", f.Keyframe, len(f.Payload))
	}
}

// startRelay runs a relay on loopback for the test and returns it with its
// raw QUIC URL and certificate fingerprint in hex.
func startRelay(t *testing.T, ctx context.Context) (*protocol.Server, string, string) {
	t.Helper()
	srv, err := protocol.NewServer(protocol.ServerConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})
	fp := srv.Fingerprint()
	return srv, fmt.Sprintf("moql://127.0.0.1:%d", srv.Addr().Port), hex.EncodeToString(fp[:])
}

// publishClip runs `moqbridge publish --loop` of a test clip at path until
// the test ends.
func publishClip(t *testing.T, ctx context.Context, url, fp, path string, flags ...string) {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	cmd := newRootCommand()
	args := append([]string{"publish", "--loop", "--broadcast", path, "--fingerprint", fp}, flags...)
	cmd.SetArgs(append(args, "../../sources/fmp4/testdata/h264_aac_bframes.mp4", url))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("publish: %v", err)
		}
	})
}

// TestPublishCatalogFirst: a subscriber that asks for catalog.json as soon
// as the relay announces the broadcast gets the catalog, never not found:
// publish announces only once the catalog is written.
func TestPublishCatalogFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, url, fp := startRelay(t, ctx)
	for i := range 5 {
		path := fmt.Sprintf("test/first%d", i)
		ann := srv.Origin().Announced(path)
		publishClip(t, ctx, url, fp, path)
		a, err := ann.Next(ctx)
		if err != nil || !a.Active {
			t.Fatalf("%s: not announced: %v", path, err)
		}
		tr, err := a.Broadcast.Subscribe(sdk.CatalogTrackName, sdk.PriorityCatalog)
		if err != nil {
			t.Fatalf("%s: subscribe to the catalog on announcement: %v", path, err)
		}
		g, err := tr.NextGroup(ctx)
		if err != nil {
			t.Fatalf("%s: catalog on announcement: %v", path, err)
		}
		if b, err := g.NextFrame(ctx); err != nil || len(b) == 0 {
			t.Fatalf("%s: catalog frame: %d bytes, %v", path, len(b), err)
		}
		g.Close()
		tr.Close()
		ann.Close()
	}
}

// TestPublishAnnouncesAfterCatalog: with a source that takes a while to
// find its tracks, the relay sees the broadcast only after the catalog
// is written.
func TestPublishAnnouncesAfterCatalog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, url, fp := startRelay(t, ctx)
	opts, err := (&dialFlags{fingerprint: fp}).options()
	if err != nil {
		t.Fatal(err)
	}
	ann := srv.Origin().Announced("test/slow")
	defer ann.Close()
	written := make(chan struct{})
	src := sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
		time.Sleep(300 * time.Millisecond)
		tr, err := sdk.OpusFromChannels(2)
		if err != nil {
			return err
		}
		if _, err := w.AddTrack(tr); err != nil {
			return err
		}
		close(written)
		<-ctx.Done()
		return ctx.Err()
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- publish(runCtx, src, "test/slow", url, true, opts) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("publish: %v", err)
		}
	}()
	if _, err := ann.Next(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-written:
	default:
		t.Fatal("the relay saw the broadcast before its catalog was written")
	}
}

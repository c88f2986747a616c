package pipelines

import (
	"context"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// watchRelay subscribes to path on the relay over raw QUIC and counts the
// frames of its first track into in until the session ends.
func watchRelay(ctx context.Context, t *testing.T, srv *protocol.Server, path string, in *sinkInstance) (*protocol.Session, chan error) {
	t.Helper()
	sess, err := protocol.Dial(ctx, "moql://"+srv.Addr().String(), protocol.WithFingerprint(srv.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- sdk.RunSink(ctx, sess.Consume(path), path, sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
			if err := r.WaitTracks(ctx, 10*time.Millisecond); err != nil {
				return err
			}
			sub, err := r.Subscribe(r.Tracks()[0].Name)
			if err != nil {
				return err
			}
			defer sub.Close()
			for {
				if _, err := sub.ReadFrame(ctx); err != nil {
					return err
				}
				in.frames.Add(1)
			}
		}))
	}()
	return sess, done
}

// TestRelay: the built-in relay serves the pipelines' Origin to MOQ
// clients; a reload that changes the server section restarts the relay
// alone (its sessions are dropped), while the pipelines run on untouched
// and a client reconnecting to the new relay gets their broadcasts.
func TestRelay(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	src, sink := &synthOpts{Interval: time.Millisecond}, &recOpts{}
	server := ServerConfig{Enabled: true, Listen: "127.0.0.1:0", TCP: "off"}
	cfg := &Config{Server: server, Pipelines: []*Pipeline{synthPipeline("p", "live/p", src, sink)}}
	r, stop := startRunner(t, cfg, newEvents())
	srv := r.Server()
	if srv == nil || srv.Origin() != r.Origin() {
		t.Fatal("the relay does not serve the runner's Origin")
	}
	watched := &sinkInstance{}
	sess, done := watchRelay(ctx, t, srv, "live/p", watched)
	waitFor(t, "frames through the relay", func() bool { return watched.frames.Load() > 10 })

	server.AllowOrigins = []string{"https://example.org"}
	if err := r.Reload(&Config{Server: server, Pipelines: cfg.Pipelines}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sess.Done():
	case <-ctx.Done():
		t.Fatal("the old relay's session was not dropped")
	}
	<-done
	srv2 := r.Server()
	if srv2 == nil || srv2 == srv {
		t.Fatal("the relay was not restarted")
	}
	watched2 := &sinkInstance{}
	sess2, done2 := watchRelay(ctx, t, srv2, "live/p", watched2)
	waitFor(t, "frames through the new relay", func() bool { return watched2.frames.Load() > 10 })
	if src.Made.Load() != 1 || len(sink.all()) != 1 {
		t.Errorf("the pipeline was restarted with the relay: source made %d times, sink %d", src.Made.Load(), len(sink.all()))
	}
	_ = sess2.Close()
	<-done2
	stop()
	if r.Server() != nil {
		t.Error("Server is not nil after Run returned")
	}
}

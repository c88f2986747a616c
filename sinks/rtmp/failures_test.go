package rtmp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testclip"
	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestRefusedThenAccepted: a server that refuses the first two publishes
// is retried with backoff, and the third connection publishes from a
// keyframe.
func TestRefusedThenAccepted(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	origin := testclip.Publish(t, testclip.Path("h264_aac_bframes.mp4"), "live/x")
	srv := startServer(t, serverOptions{reject: 2})
	lb := &testkit.LogBuffer{}
	sink := newSink(t, srv.url("k"), lb, Config{})
	stop := testclip.RunSink(t, origin, "live/x", sink)
	lb.WaitLogContext(t, ctx, "rtmp: cannot publish; retrying", "attempt=2")
	lb.WaitLogContext(t, ctx, "rtmp: publishing", "codecs=H.264,AAC")
	conn := srv.waitConn(t, ctx, 1)
	time.Sleep(2500 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	_, frames := conn.snapshot()
	if len(frames) == 0 || !frames[0].video || !frames[0].key {
		t.Fatalf("%d frames received, the first not a video keyframe", len(frames))
	}
	srv.mu.Lock()
	rejected := srv.rejected
	srv.mu.Unlock()
	if st := sink.Stats(); st.Connections != 1 || rejected != 2 {
		t.Errorf("stats %+v, %d refused", st, rejected)
	}
}

// TestGiveUp: with Backoff.GiveUpAfter, a server that never answers ends
// Run with ErrGaveUp, while the broadcast was consumed all along.
func TestGiveUp(t *testing.T) {
	origin := testclip.Publish(t, testclip.Path("h264_aac_bframes.mp4"), "live/x")
	lb := &testkit.LogBuffer{}
	sink := newSink(t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/k", freePort(t)), lb, Config{
		Backoff: sdk.Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond, GiveUpAfter: time.Second},
	})
	ctx := testkit.Context(t, 20*time.Second)
	began := time.Now()
	err := sdk.Consume(ctx, origin, "live/x", sink, sdk.ConsumeOptions{Wait: 10 * time.Second})
	if !errors.Is(err, ErrGaveUp) || sdk.IsPermanent(err) {
		t.Fatalf("Run: %v, want ErrGaveUp", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
	if st := sink.Stats(); st.Connections != 0 || st.Unsent == 0 {
		t.Errorf("stats %+v: want the frames read and not sent", st)
	}
}

// TestNothingToSend: a broadcast whose tracks cannot be sent ends Run at
// once with a permanent error, without connecting.
func TestNothingToSend(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	origin := testclip.Publish(t, testclip.Path("h264_aac_bframes.mp4"), "live/x")
	lb := &testkit.LogBuffer{}
	sink := newSink(t, "rtmp://127.0.0.1:9/live/k", lb, Config{Video: "nope"})
	err := sdk.Consume(ctx, origin, "live/x", sink, sdk.ConsumeOptions{Wait: 10 * time.Second})
	if !sdk.IsPermanent(err) {
		t.Fatalf("Run: %v, want a permanent error", err)
	}
	if err.Error() != `rtmp: no video track "nope" that can be sent` {
		t.Errorf("Run: %v", err)
	}
}

// TestRTMPS: publishing over TLS with the Config's tls.Config; without
// it the self-signed certificate is refused and retried, never sent to.
func TestRTMPS(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	origin := testclip.Publish(t, testclip.Path("h264_aac_bframes.mp4"), "live/x")
	srv := startServer(t, serverOptions{tls: true})

	lb := &testkit.LogBuffer{}
	untrusted := newSink(t, srv.url("k"), lb, Config{})
	stop := testclip.RunSink(t, origin, "live/x", untrusted)
	lb.WaitLogContext(t, ctx, "rtmp: cannot publish; retrying", "certificate")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	lb = &testkit.LogBuffer{}
	sink := newSink(t, srv.url("k"), lb, Config{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	stop = testclip.RunSink(t, origin, "live/x", sink)
	lb.WaitLogContext(t, ctx, "rtmp: publishing", "rtmp=rtmps://")
	conn := srv.waitConn(t, ctx, 1)
	time.Sleep(2500 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tracks, frames := conn.snapshot()
	if len(tracks) != 2 || len(frames) < 50 {
		t.Fatalf("%d tracks, %d frames over RTMPS", len(tracks), len(frames))
	}
}

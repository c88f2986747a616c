package builtin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/democlip"
	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestRTPSinkOneBroadcastPerDest: two broadcasts of one pipeline whose rtp
// sink names one destination are never mixed into its ports: the sink of
// the second fails, naming the first, until the first lets the
// destination go.
func TestRTPSinkOneBroadcastPerDest(t *testing.T) {
	ctx, cancel := context.WithCancel(testkit.Context(t, 30*time.Second))
	defer cancel()
	origin := moq.NewOrigin()
	done := make(chan error, 3)
	for _, path := range []string{"cams/a", "cams/b"} {
		go func() { done <- sdk.Publish(ctx, origin, path, democlip.NewSource(), sdk.PublishOptions{}) }()
	}
	kind := RTPSink()
	opts := kind.Options().(*RTPSinkOptions)
	opts.Dest = fmt.Sprintf("127.0.0.1:%d", testkit.FreeUDPPorts(t, 4))
	var lb testkit.LogBuffer
	newSink := func(path string) sdk.Sink {
		s, err := kind.New(pipelines.SinkEnv{Pipeline: "out", Path: path, Logger: lb.Logger()}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := newSink("cams/a")
	firstCtx, stopFirst := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() { firstDone <- sdk.Consume(firstCtx, origin, "cams/a", first, sdk.ConsumeOptions{}) }()
	sending(t, ctx, "the first sink", first)

	err := sdk.Consume(ctx, origin, "cams/b", newSink("cams/b"), sdk.ConsumeOptions{})
	if err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "is sending the broadcast cams/a") {
		t.Fatalf("the second broadcast's sink: %v; want a transient error naming cams/a", err)
	}

	stopFirst()
	<-firstDone
	second := newSink("cams/b")
	go func() { done <- sdk.Consume(ctx, origin, "cams/b", second, sdk.ConsumeOptions{}) }()
	sending(t, ctx, "the second sink, once the first stopped,", second)
	cancel()
	for range 3 {
		<-done
	}
}

// sending waits until sink has sent packets.
func sending(t *testing.T, ctx context.Context, what string, sink sdk.Sink) {
	t.Helper()
	for sink.(*RTPSinkAdapter).Stats().Packets == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("%s sent nothing", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

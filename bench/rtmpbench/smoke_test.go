package rtmpbench

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtmp"
)

// TestHarnessSmoke runs the latency harness for a few seconds of
// synthetic H.264 at three times real time through a relay in this
// process (protocol.Server with an rtmp.Server publishing into its Origin,
// as `moqbridge serve --rtmp` wires them): every frame published after
// the relay's track analysis must reach the MOQ subscriber byte-exact
// and be matched to the write it came from.
func TestHarnessSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := protocol.NewServer(protocol.ServerConfig{Addr: "127.0.0.1:0", TCP: protocol.TCPOff, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ingest := rtmp.NewServer(rtmp.Config{Addr: "127.0.0.1:0", Logger: quiet})
	if err := ingest.Listen(); err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	pub := sdk.NewPublisher(srv.Origin(), sdk.PublisherOptions{})
	served, ingested := make(chan error, 1), make(chan error, 1)
	go func() { served <- srv.Serve(runCtx) }()
	go func() { ingested <- ingest.Run(runCtx, pub) }()
	defer func() {
		stop()
		<-ingested
		pub.Close()
		<-served
	}()

	const fps, length, warmup = 30, 6 * time.Second, 3 * time.Second
	m := syntheticMedia(length, fps, 15, 20_000, 3_000)
	began := time.Now()
	res, err := measureLatency(ctx, latencyConfig{
		rtmpAddr: ingest.Addr().String(),
		moqURL:   "moql://" + srv.Addr().String(),
		fp:       srv.Fingerprint(),
		path:     "live/smoke",
		media:    m,
		length:   length,
		warmup:   warmup,
		speed:    3,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("measured in %v", time.Since(began))
	want := 0
	for _, s := range m.samples {
		if s.pts >= warmup {
			want++
		}
	}
	if res.sent != len(m.samples) {
		t.Errorf("published %d frames, want %d", res.sent, len(m.samples))
	}
	if res.corrupt != 0 || res.unmatched != 0 {
		t.Errorf("%d frames arrived altered, %d matched no frame sent", res.corrupt, res.unmatched)
	}
	if len(res.measured) != want || res.missing != 0 {
		t.Errorf("measured %d frames, %d missing; want %d, none missing", len(res.measured), res.missing, want)
	}
	var lat []time.Duration
	for _, d := range res.measured {
		if d <= 0 {
			t.Errorf("latency %v, want > 0", d)
		}
		lat = append(lat, d)
	}
	t.Logf("%d frames measured: p50 %v, p99 %v (synthetic, 3× real time, in-process relay)",
		len(lat), percentile(lat, 0.5), percentile(lat, 0.99))
}

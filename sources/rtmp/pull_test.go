package rtmp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestPullURL: URLs that are not rtmp:// or rtmps:// with an application
// and a stream key are permanent errors (internal/rtmpurl has the forms).
func TestPullURL(t *testing.T) {
	for _, raw := range []string{"http://h/live/x", "rtmp:///live/x", "rtmp://h/x", "rtmp://h/live/", "rtmp://h"} {
		if _, err := NewPull(PullConfig{URL: raw}); err == nil || !sdk.IsPermanent(err) {
			t.Errorf("%s: %v, want a permanent error", raw, err)
		}
	}
}

// serveFFmpeg starts ffmpeg as an RTMP server on port that sends seconds
// of H.264 + AAC to the first client that plays rtmp://…/live/x.
func serveFFmpeg(ctx context.Context, t *testing.T, port, seconds int) chan error {
	t.Helper()
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=48000",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30", "-c:a", "aac",
		"-t", fmt.Sprint(seconds), "-f", "flv", "-listen", "1", fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port))
	out := &testkit.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w\n%s", err, out.String())
		}
		done <- err
	}()
	return done
}

// TestPullReconnects: a Pull plays a stream ffmpeg serves; when that
// ffmpeg ends and another starts on the same port, the Pull reconnects
// and the broadcast goes on: a reader gets both runs' frames on the same
// subscriptions, times going forward, one catalog.
func TestPullReconnects(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 60*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()

	first := serveFFmpeg(ctx, t, port, 3)
	lb := &testkit.LogBuffer{}
	pull, err := NewPull(PullConfig{URL: fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port),
		Backoff: sdk.Backoff{Min: 100 * time.Millisecond, Max: 300 * time.Millisecond},
		Logger:  slog.New(slog.NewTextHandler(lb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	origin := moq.NewOrigin()
	defer origin.Close()
	pctx, stopPull := context.WithCancel(ctx)
	pulled := make(chan error, 1)
	go func() { pulled <- sdk.Publish(pctx, origin, "pulled", pull, sdk.PublishOptions{}) }()
	logs, catalogs, done := follow(ctx, t, &testServer{origin: origin}, "pulled")

	if err := <-first; err != nil {
		t.Fatalf("first ffmpeg: %v", err)
	}
	lb.WaitLog(t, 10*time.Second, "rtmp pull: connection lost, reconnecting")
	second := serveFFmpeg(ctx, t, port, 3)
	if err := <-second; err != nil {
		t.Fatalf("second ffmpeg: %v", err)
	}
	stopPull()
	if err := <-pulled; err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(lb.String(), "rtmp pull: playing"); n != 2 {
		t.Errorf("played %d times, want 2:\n%s", n, lb.String())
	}
	if len(*catalogs) != 1 || (*catalogs)[0] != 2 {
		t.Errorf("catalog track counts %v, want [2]", *catalogs)
	}
	for name, l := range logs {
		want := 2 * 3 * 30 // video frames; audio: more
		if strings.HasPrefix(name, "video") && (len(l.pts) < want-30 || len(l.pts) > want) {
			t.Errorf("%s: %d frames, ffmpeg sent %d", name, len(l.pts), want)
		}
		if l.discon != 0 || l.stats.Skipped != 0 {
			t.Errorf("%s: %d discontinuities, %+v", name, l.discon, l.stats)
		}
		var jump time.Duration
		for i := 1; i < len(l.pts); i++ {
			d := l.pts[i] - l.pts[i-1]
			if d <= 0 && strings.HasPrefix(name, "audio") {
				t.Errorf("%s: frame %d at %v after %v", name, i, l.pts[i], l.pts[i-1])
			}
			jump = max(jump, d)
		}
		t.Logf("%s: %d frames over %v, the reconnect a step of %v", name, len(l.pts), l.pts[len(l.pts)-1]-l.pts[0], jump)
	}
}

package builtin

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
)

// ffmpeg runs ffmpeg with args until it exits or the test ends.
func ffmpeg(t *testing.T, args ...string) *running {
	t.Helper()
	out := testLog(t)
	return start(t, func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, "ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil && ctx.Err() == nil {
			return fmt.Errorf("ffmpeg: %w\n%s", err, out.String())
		}
		return nil
	})
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestRTMPSinkToFFmpeg: the rtmp sink kind publishes a looped clip to an
// ffmpeg listening for RTMP, its URL's {name} filled from the broadcast
// path; the file ffmpeg writes decodes cleanly, and the sink's counters
// say it was connected, then not once it stopped.
func TestRTMPSinkToFFmpeg(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 60*time.Second)
	lb := testLog(t)
	origin := moq.NewOrigin()
	defer origin.Close()
	src, err := FMP4Source().NewSource(pipelines.SourceEnv{Path: "live/x", Dir: clipDir},
		&FMP4SourceOptions{File: clip, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, origin, "live/x", src)

	port := freePort(t)
	out := filepath.Join(t.TempDir(), "received.mp4")
	receiver := ffmpeg(t, "-listen", "1", "-i", fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port), "-c", "copy", "-f", "mp4", "-y", out)

	opts := newOptions(t, RTMPSink().Options, func(o *RTMPSinkOptions) {
		o.URL = fmt.Sprintf("rtmp://127.0.0.1:%d/live/{name}", port)
		o.Backoff.Min, o.Backoff.Max = 50*time.Millisecond, 200*time.Millisecond
	})
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	sink, err := RTMPSink().New(pipelines.SinkEnv{Pipeline: "p", Path: "live/x", Logger: lb.Logger()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	reporter, ok := sink.(pipelines.StatsReporter)
	if !ok {
		t.Fatalf("%T is not a pipelines.StatsReporter", sink)
	}
	if c := reporter.Counters(); c != (pipelines.SinkCounters{}) {
		t.Errorf("counters before Run: %+v", c)
	}
	restream := consume(t, origin, "live/x", sink)
	waitFor(t, ctx, "connected", func() bool { return reporter.Counters().Connected })
	// Let about two seconds of media go out.
	stats := sink.(*RTMPSinkAdapter).Stats
	waitFor(t, ctx, "frames sent", func() bool { return stats().Frames >= 150 })
	if err := restream.stop(); err != nil {
		t.Fatalf("the sink: %v", err)
	}
	if c := reporter.Counters(); c.Connected || c.Reconnects != 0 || c.DroppedFrames != 0 {
		t.Errorf("counters after Run: %+v", c)
	}
	if err := receiver.wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	v := testkit.CheckFMP4(t, out, "v:0")
	a := testkit.CheckFMP4(t, out, "a:0")
	if v.Packets < 30 || a.Packets < 40 {
		t.Errorf("received video %+v, audio %+v: want at least a second", v, a)
	}
	if strings.Contains(lb.String(), "/live/x") {
		t.Errorf("the log shows the stream key:\n%s", lb.String())
	}
}

// TestRTMPSinkCountersReconnect: the receiver vanishes (killed) and
// another one listens in its place: the sink's counters say it is not
// connected meanwhile, then connected again after one reconnection.
func TestRTMPSinkCountersReconnect(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 60*time.Second)
	lb := testLog(t)
	origin := moq.NewOrigin()
	defer origin.Close()
	src, err := FMP4Source().NewSource(pipelines.SourceEnv{Path: "live/x", Dir: clipDir}, &FMP4SourceOptions{File: clip, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, origin, "live/x", src)
	port := freePort(t)
	dir := t.TempDir()
	receive := func(name string) *running {
		return ffmpeg(t, "-listen", "1", "-i", fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port), "-c", "copy", "-f", "mp4", "-y", filepath.Join(dir, name))
	}
	first := receive("first.mp4")
	sink, err := RTMPSink().New(pipelines.SinkEnv{Path: "live/x", Logger: lb.Logger()}, newOptions(t, RTMPSink().Options, func(o *RTMPSinkOptions) {
		o.URL = fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port)
		o.Backoff.Min, o.Backoff.Max = 50*time.Millisecond, 200*time.Millisecond
	}))
	if err != nil {
		t.Fatal(err)
	}
	reporter := sink.(pipelines.StatsReporter)
	restream := consume(t, origin, "live/x", sink)
	waitFor(t, ctx, "connected", func() bool { return reporter.Counters().Connected })
	_ = first.stop() // SIGKILL: the server vanishes
	waitFor(t, ctx, "disconnected", func() bool { return !reporter.Counters().Connected })
	second := receive("second.mp4")
	waitFor(t, ctx, "reconnected", func() bool { c := reporter.Counters(); return c.Connected && c.Reconnects == 1 })
	if err := restream.stop(); err != nil {
		t.Fatalf("the sink: %v", err)
	}
	if err := second.wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if c := reporter.Counters(); c.Connected || c.Reconnects != 1 {
		t.Errorf("counters after Run: %+v", c)
	}
}

// TestRTMPPullToRecording: the rtmp_pull source kind plays the clip that
// an ffmpeg serves over RTMP into the Origin, and the fmp4 sink kind
// records it.
func TestRTMPPullToRecording(t *testing.T) {
	testkit.NeedFFmpeg(t)
	lb := testLog(t)
	port := freePort(t)
	url := fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port)
	server := ffmpeg(t, "-re", "-i", filepath.Join(clipDir, clip), "-c", "copy", "-f", "flv", "-listen", "1", url)

	origin := moq.NewOrigin()
	defer origin.Close()
	dir := t.TempDir()
	sink, err := FMP4Sink().New(pipelines.SinkEnv{Path: "pulled", Logger: lb.Logger()},
		newOptions(t, FMP4Sink().Options, func(o *FMP4SinkOptions) { o.Dir, o.File = dir, "{path}.mp4" }))
	if err != nil {
		t.Fatal(err)
	}
	recording := consume(t, origin, "pulled", sink)

	opts := newOptions(t, RTMPPullSource().Options, func(o *RTMPPullOptions) {
		o.URL = url
		o.Backoff.Min, o.Backoff.Max = 50*time.Millisecond, 200*time.Millisecond
	})
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	src, err := RTMPPullSource().NewSource(pipelines.SourceEnv{Path: "pulled", Logger: lb.Logger()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	pulling := publish(t, origin, "pulled", src)
	// ffmpeg serves the clip once, then exits; the pull would reconnect.
	if err := server.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	lb.WaitLog(t, 10*time.Second, "rtmp pull: connection lost")
	if err := pulling.stop(); err != nil {
		t.Errorf("the source: %v", err)
	}
	if err := recording.wait(t, 20*time.Second); err != nil {
		t.Fatalf("the sink: %v", err)
	}
	file := filepath.Join(dir, "pulled.mp4")
	if files := sink.(*fmp4sink.Sink).Files(); len(files) != 1 || files[0] != file {
		t.Fatalf("files %q, want %s", files, file)
	}
	v := testkit.CheckFMP4(t, file, "v:0")
	a := testkit.CheckFMP4(t, file, "a:0")
	if v.Packets < 25 || a.Packets < 40 {
		t.Errorf("video %+v, audio %+v: want about the whole clip", v, a)
	}
}

// TestRTMPBuildErrors: kinds refuse options that do not validate, with a
// permanent error, even when the runner did not validate them first.
func TestRTMPBuildErrors(t *testing.T) {
	if _, err := RTMPPullSource().NewSource(pipelines.SourceEnv{Path: "x"}, &RTMPPullOptions{URL: "rtmp://h/live"}); err == nil || !sdk.IsPermanent(err) {
		t.Errorf("rtmp_pull: %v", err)
	}
	if _, err := RTMPSink().New(pipelines.SinkEnv{Path: "x"}, &RTMPSinkOptions{URL: "rtmp://h/{name}"}); err == nil || !sdk.IsPermanent(err) {
		t.Errorf("rtmp sink: %v", err)
	}
	if _, err := FMP4Sink().New(pipelines.SinkEnv{Path: "x"}, &FMP4SinkOptions{}); err == nil || !sdk.IsPermanent(err) {
		t.Errorf("fmp4 sink: %v", err)
	}
}

// TestRTMPSinkURL: {path} and {name} are filled in per broadcast, escaped
// for a URL path.
func TestRTMPSinkURL(t *testing.T) {
	for _, c := range []struct{ tmpl, path, want string }{
		{"rtmp://h/live/{name}", "live/cam", "rtmp://h/live/cam"},
		{"rtmp://h/{path}", "live/cam", "rtmp://h/live/cam"},
		{"rtmp://h/app/{name}?k=1", "a b/c d", "rtmp://h/app/c%20d?k=1"},
		{"rtmp://h/app/key", "live/cam", "rtmp://h/app/key"},
	} {
		if got := expandSinkURL(c.tmpl, c.path); got != c.want {
			t.Errorf("expandSinkURL(%q, %q) = %q, want %q", c.tmpl, c.path, got, c.want)
		}
	}
}

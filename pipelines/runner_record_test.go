package pipelines

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sinks/fmp4"
)

// fmp4Kind is the fMP4 recorder as a sink kind (the real one is
// registered by package builtin).
var fmp4Kind = SinkKind{
	Name:    "fmp4",
	Options: func() any { return &fmp4.Config{} },
	New: func(env SinkEnv, opts any) (sdk.Sink, error) {
		cfg := *opts.(*fmp4.Config)
		cfg.Path, cfg.Logger = env.Path, env.Logger
		return fmp4.New(cfg), nil
	},
}

// TestGracefulStopRecording: ffmpeg publishes over RTMP through the
// shared listener into a pipeline recording to fMP4; Run's context ends
// while ffmpeg is still publishing. The source stops first (ffmpeg is
// disconnected), then the recorder finishes its file, which is playable.
func TestGracefulStopRecording(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 60*time.Second)
	dir := t.TempDir()
	p := &Pipeline{Name: "ingest", Path: "{app}/{key}",
		Source:      &SourceSpec{Kind: routeKind, Options: &routeOpts{App: "live"}, Paths: "live/*"},
		Sinks:       []*SinkSpec{{Kind: fmp4Kind, Options: &fmp4.Config{Dir: dir}}},
		Restart:     fastRestart,
		Fingerprint: "ingest"}
	r, stop := startRunner(t, &Config{RTMP: &RTMPConfig{Listen: "127.0.0.1:0"}, Pipelines: []*Pipeline{p}}, newEvents())
	waitFor(t, "the RTMP route", func() bool { return r.Ready() == nil })

	ffctx, cancelFF := context.WithCancel(ctx)
	defer cancelFF()
	cmd := exec.CommandContext(ffctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30",
		"-t", "30", "-f", "flv", "rtmp://"+r.RTMPAddrs()[0]+"/live/cam")
	out := &testkit.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ffDone := make(chan error, 1)
	go func() { ffDone <- cmd.Wait() }()
	defer func() {
		cancelFF()
		<-ffDone
	}()

	// Two seconds of media recorded: the file has its first fragments.
	var file string
	waitFor(t, "a recording", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "live", "cam", "*.mp4"))
		if len(files) == 1 {
			file = files[0]
			return true
		}
		return false
	})
	time.Sleep(2 * time.Second)
	stop()
	select {
	case <-ffDone:
		ffDone <- nil // ffmpeg was disconnected by the stop
	case <-time.After(10 * time.Second):
		t.Error("ffmpeg is still connected after the stop")
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() == 0 {
		t.Fatalf("recording %s: %v", file, err)
	}
	c := testkit.CheckFMP4(t, file, "v:0")
	if c.Packets < 30 || c.Keyframes < 1 {
		t.Errorf("the recording has %d packets, %d keyframes; want at least 1 s of video", c.Packets, c.Keyframes)
	}
}

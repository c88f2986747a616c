package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/pipelines"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestEmbeddedConfig: the embedded configuration is valid, and its
// pipeline has the custom sink beside the built-in one.
func TestEmbeddedConfig(t *testing.T) {
	reg, err := registry()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pipelines.Parse(defaultConfig, "moqbridge.yaml", reg)
	if err != nil {
		t.Fatal(err)
	}
	sinks := cfg.Pipelines[0].Sinks
	if len(sinks) != 2 || sinks[0].Kind.Name != "stall" || sinks[0].Options.(*stallOptions).After != 2*time.Second || sinks[1].Kind.Name != "fmp4" {
		t.Errorf("sinks: %+v", sinks)
	}
}

// TestStallOptions: defaults apply, and bad options are reported at their
// position under their key, all at once.
func TestStallOptions(t *testing.T) {
	reg, err := registry()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pipelines.Parse([]byte("pipelines:\n  p:\n    from: live/*\n    sinks: [stall]\n"), "a.yaml", reg)
	if err != nil {
		t.Fatal(err)
	}
	if o := cfg.Pipelines[0].Sinks[0].Options.(*stallOptions); *o != (stallOptions{After: 3 * time.Second, Level: "warn"}) {
		t.Errorf("defaults: %+v", o)
	}
	for options, want := range map[string]string{
		"{after: 10ms, level: loud}": `a.yaml:5:17: pipelines.p.sinks[0].stall.after: must be at least 100ms, got 10ms
a.yaml:5:30: pipelines.p.sinks[0].stall.level: must be warn or error, got "loud"`,
		"{trak: x}": `a.yaml:5:17: pipelines.p.sinks[0].stall.trak: unknown key "trak" (did you mean "track"?)`,
	} {
		_, err = pipelines.Parse([]byte("pipelines:\n  p:\n    from: live/*\n    sinks:\n      - stall: "+options+"\n"), "a.yaml", reg)
		if err == nil || err.Error() != want {
			t.Errorf("%s: got\n%v\nwant\n%s", options, err, want)
		}
	}
}

// TestStall: run, with a configuration whose fmp4 source reads a stream
// over HTTP that pauses half-way, logs the stall and the resumption, and
// the built-in fmp4 sink beside the stall sink records the broadcast.
func TestStall(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	clip, err := os.ReadFile("../../sources/fmp4/testdata/h264_opus.mp4")
	if err != nil {
		t.Fatal(err)
	}
	// Pause before the clip's second video fragment (its third moof box).
	cut := 0
	for range 3 {
		cut += bytes.Index(clip[cut+1:], []byte("moof")) + 1
	}
	cut -= 4 // the box starts with its size
	resume := make(chan struct{})
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(clip[:cut])
		w.(http.Flusher).Flush()
		select {
		case <-resume:
		case <-r.Context().Done():
			return
		}
		w.Write(clip[cut:])
	}))
	defer stream.Close()

	dir := t.TempDir()
	file := filepath.Join(dir, "moqbridge.yaml")
	config := fmt.Sprintf(`server: {enabled: false}
pipelines:
  cam:
    source: {fmp4: {url: %s}}
    path: live/cam
    sinks:
      - stall: {after: 200ms}
      - fmp4: {dir: recordings}
`, stream.URL)
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}

	var logs testkit.LogBuffer
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- run(runCtx, file, logs.Logger()) }()

	logs.WaitLog(t, 10*time.Second, "level=WARN", "stall: stalled", "pipeline=cam", "path=live/cam", "track=video0")
	close(resume)
	logs.WaitLog(t, 10*time.Second, "stall: resumed", "path=live/cam", "track=video0")
	// A graceful stop: the recording closes playable.
	stop()
	if err := <-ran; err != nil {
		t.Fatalf("run: %v", err)
	}
	recordings, _ := filepath.Glob(filepath.Join(dir, "recordings", "live", "cam", "*.mp4"))
	if len(recordings) != 1 {
		t.Fatalf("recordings: %v\n%s", recordings, logs.String())
	}
	if testkit.CheckWith("ffmpeg", "ffprobe") {
		testkit.CheckFMP4(t, recordings[0], "v:0")
	}
	if strings.Count(logs.String(), "stall: stalled") != 1 {
		t.Errorf("one stall expected:\n%s", logs.String())
	}
}

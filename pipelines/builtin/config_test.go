package builtin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/pipelines"
)

// writeConfig writes a configuration file into dir and returns its name.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	file := filepath.Join(dir, "moqbridge.yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestLoadEveryKind: a configuration naming every built-in kind with
// every option loads with the built-in registry: the loader decodes the
// options (sizes, durations, nested backoffs, the relay options inline)
// and the pipelines yield the patterns the kinds compute.
func TestLoadEveryKind(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(clipDir, clip))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "clip.mp4"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	file := writeConfig(t, dir, `
rtmp: {listen: "127.0.0.1:0"}
pipelines:
  obs:
    source:
      rtmp: {app: live, keys: [k1], linger: 2s, replace: true}
    path: live/{key}
    sinks:
      - fmp4: {dir: rec, file: "{path}/{seq}.mp4", segment: 1m, part: 500ms, max_age: 24h, max_bytes: 1.5GiB, sync: fragment}
      - rtmp:
          url: rtmp://a.example/live2/{name}
          video: video0
          audio: audio1
          backoff: {min: 1s, max: 1m, jitter: 0.1, give_up_after: 1h}
          max_queue_delay: 2s
          max_queue_bytes: 8MiB
      - moq: {url: "https://edge.example/", token: a.b.c, path: "edge/{path}", backoff: {max: 30s}}
  demo:
    source:
      fmp4: {file: clip.mp4, loop: true}
    path: demo
  web:
    source:
      fmp4: {url: "https://cdn.example/live.mp4", realtime: true}
    path: web
  pull:
    source:
      rtmp_pull: {url: "rtmps://encoder.example/live/cam", backoff: {give_up_after: 10m}}
    path: pulled
  mirror:
    source:
      moq: {url: "moql://origin.example:4443", fingerprint: "`+strings.Repeat("0f", 32)+`", prefix: live}
    path: mirror/{name}
`)
	cfg, err := pipelines.Load(file, Registry())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	byName := map[string]*pipelines.Pipeline{}
	for _, p := range cfg.Pipelines {
		byName[p.Name] = p
	}
	for name, want := range map[string]string{"obs": "live/*", "demo": "demo", "web": "web", "pull": "pulled", "mirror": "mirror/*"} {
		if p := byName[name]; p == nil || p.Yields() != want {
			t.Errorf("pipeline %s yields %v, want %q", name, p, want)
		}
	}
	obs := byName["obs"]
	if got := *obs.Source.Options.(*RTMPSourceOptions); got.Linger != 2*time.Second || !got.Replace || got.Keys[0] != "k1" {
		t.Errorf("rtmp source options %+v", got)
	}
	if got := *obs.Sinks[0].Options.(*FMP4SinkOptions); got.MaxBytes != 3<<29 || got.Part != 500*time.Millisecond || got.Sync != "fragment" {
		t.Errorf("fmp4 sink options %+v", got)
	}
	if got := *obs.Sinks[1].Options.(*RTMPSinkOptions); got.MaxQueueBytes != 8<<20 || got.Backoff.Jitter != 0.1 || got.Audio != "audio1" {
		t.Errorf("rtmp sink options %+v", got)
	}
	if got := *obs.Sinks[2].Options.(*MOQSinkOptions); got.Token != "a.b.c" || got.Backoff.Max != 30*time.Second || got.Backoff.Min != 500*time.Millisecond {
		t.Errorf("moq sink options %+v", got)
	}
}

// TestLoadErrors: what the kinds find wrong is reported at the option's
// place in the file, all at once; a relative file is looked for beside
// the configuration.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	file := writeConfig(t, dir, `
pipelines:
  obs:
    source:
      rtmp: {app: "", keys: [a, a]}
    path: live/{key}
  demo:
    source:
      fmp4: {file: missing.mp4}
    path: demo
  pull:
    source:
      rtmp_pull: {url: "rtmp://encoder.example/SECRETKEY", backoff: {jitter: 3}}
    path: pulled
  out:
    from: live/*
    sinks:
      - fmp4: {sync: sometimes}
      - moq: {url: "moql://h:1", token: SECRETTOKEN}
`)
	_, err := pipelines.Load(file, Registry())
	if err == nil {
		t.Fatal("Load: no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"pipelines.obs.source.rtmp.app:",
		"pipelines.obs.source.rtmp.keys[1]: repeats keys[0]",
		"pipelines.demo.source.fmp4.file: " + filepath.Join(dir, "missing.mp4") + " does not exist",
		"pipelines.pull.source.rtmp_pull.url:",
		"pipelines.pull.source.rtmp_pull.backoff.jitter:",
		"pipelines.out.sinks[0].fmp4.dir: required",
		"pipelines.out.sinks[0].fmp4.sync:",
		"pipelines.out.sinks[1].moq.token:",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the errors lack %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "SECRET") {
		t.Errorf("the errors show a secret:\n%s", msg)
	}

	// An rtmp source needs the rtmp: section.
	file = writeConfig(t, dir, "pipelines:\n  obs:\n    source:\n      rtmp: {}\n    path: live/{key}\n")
	if _, err := pipelines.Load(file, Registry()); err == nil || !strings.Contains(err.Error(), "rtmp:") {
		t.Errorf("an rtmp source without the rtmp: section: %v", err)
	}
}

// TestRunRTMPIngest: through the runner, ffmpeg publishing to the shared
// RTMP listener reaches the rtmp source kind's pipeline (its app, its key
// list) and the fmp4 sink kind records the broadcast; a key not listed is
// refused.
func TestRunRTMPIngest(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 60*time.Second)
	dir := t.TempDir()
	port := freePort(t)
	file := writeConfig(t, dir, fmt.Sprintf(`
server: {enabled: false}
admin: {listen: ""}
rtmp: {listen: "127.0.0.1:%d"}
pipelines:
  obs:
    source:
      rtmp: {app: studio, keys: [cam]}
    path: live/{key}
    sinks:
      - fmp4: {dir: rec, file: "{path}.mp4"}
`, port))
	cfg, err := pipelines.Load(file, Registry())
	if err != nil {
		t.Fatal(err)
	}
	lb := testLog(t)
	runner := pipelines.NewRunner(Registry(), pipelines.RunnerOptions{Logger: lb.Logger()})
	run := start(t, func(ctx context.Context) error { return runner.Run(ctx, cfg) })
	push := func(key string) *running {
		return ffmpeg(t, "-re", "-i", filepath.Join(clipDir, clip), "-c", "copy", "-f", "flv",
			fmt.Sprintf("rtmp://127.0.0.1:%d/studio/%s", port, key))
	}
	waitFor(t, ctx, "the RTMP listener", func() bool { return len(runner.RTMPAddrs()) > 0 })
	if err := push("intruder").wait(t, 30*time.Second); err == nil {
		t.Error("a key not listed could publish")
	}
	if err := push("cam").wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	recording := filepath.Join(dir, "rec", "live", "cam.mp4")
	lb.WaitLogContext(t, ctx, "fmp4: segment closed", "live/cam.mp4")
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "rec", "live", "intruder.mp4")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused key was recorded: %v", err)
	}
	v := testkit.CheckFMP4(t, recording, "v:0")
	a := testkit.CheckFMP4(t, recording, "a:0")
	if v.Packets < 25 || a.Packets < 40 {
		t.Errorf("video %+v, audio %+v: want about the whole clip", v, a)
	}
}

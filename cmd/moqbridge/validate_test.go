package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
)

// brokenConfig has four problems, each reported at its line and column.
const brokenConfig = `server:
  listen: "127.0.0.1:99999"
pipelines:
  demo:
    source: demo
    path: demo
    sinks:
      - fmp4: {dir: rec, segmnt: 10s}
  cam:
    sorce: {rtmp: {app: live}}
    path: live/{key}
`

// brokenProblems are brokenConfig's problems with FILE for its name.
const brokenProblems = `FILE:2:11: server.listen: expected a listen address like :4443 or 127.0.0.1:9090, got "127.0.0.1:99999"
FILE:8:26: pipelines.demo.sinks[0].fmp4.segmnt: unknown key "segmnt" (did you mean "segment"?)
FILE:9:3: pipelines.cam: missing source (with a path) or from: a pipeline needs something to take broadcasts from
FILE:10:5: pipelines.cam.sorce: unknown key "sorce" (did you mean "source"?)
`

// runWithStdin runs moqbridge with args and stdin, as main does.
func runWithStdin(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr strings.Builder
	cmd := newRootCommand()
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	code := exitOK
	if err := cmd.ExecuteContext(ctx); err != nil {
		code = exitFailure
		if err != errInvalidConfig {
			stderr.WriteString("moqbridge: " + err.Error() + "\n")
		}
	}
	return code, stdout.String(), stderr.String()
}

// TestValidate: a broken file prints every problem with its position on
// stderr and exits 1, from a file or from stdin; a good one prints how
// many pipelines it has and exits 0.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	broken := writeTestFile(t, dir, "broken.yaml", []byte(brokenConfig))
	code, stdout, stderr := runCLI(t, context.Background(), "validate", "-c", broken)
	if want := strings.ReplaceAll(brokenProblems, "FILE", broken); code != 1 || stdout != "" || stderr != want {
		t.Errorf("validate of a broken file: exit %d, stdout %q, stderr\n%s\nwant exit 1 and\n%s", code, stdout, stderr, want)
	}
	code, stdout, stderr = runWithStdin(t, brokenConfig, "validate", "-c", "-")
	if want := strings.ReplaceAll(brokenProblems, "FILE", "stdin"); code != 1 || stdout != "" || stderr != want {
		t.Errorf("validate -c - of a broken file: exit %d, stdout %q, stderr\n%s\nwant exit 1 and\n%s", code, stdout, stderr, want)
	}

	good := writeTestFile(t, dir, "good.yaml", []byte(defaultConfig))
	code, stdout, stderr = runCLI(t, context.Background(), "validate", "-c", good)
	if want := good + ": 2 pipelines, ok\n"; code != 0 || stdout != want || stderr != "" {
		t.Errorf("validate of a good file: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, stdout, stderr, want)
	}
	code, stdout, _ = runWithStdin(t, "pipelines:\n  one: {source: demo, path: demo}\n", "validate", "-c", "-")
	if want := "stdin: 1 pipeline, ok\n"; code != 0 || stdout != want {
		t.Errorf("validate -c - of a good file: exit %d, stdout %q; want exit 0 and %q", code, stdout, want)
	}

	wantError(t, `moqbridge: validate needs -c FILE (see "moqbridge validate --help")`, "validate")
	wantError(t, "moqbridge: read the configuration: open "+dir+"/nope.yaml: no such file or directory", "validate", "-c", dir+"/nope.yaml")
}

// TestRunInvalidConfig: run with a broken file prints its problems and
// says nothing started, exit status 1.
func TestRunInvalidConfig(t *testing.T) {
	broken := writeTestFile(t, t.TempDir(), "broken.yaml", []byte(brokenConfig))
	code, _, stderr := runCLI(t, context.Background(), "run", "-c", broken)
	want := strings.ReplaceAll(brokenProblems, "FILE", broken) + "moqbridge: " + broken + ": 4 problems; nothing started\n"
	if code != 1 || stderr != want {
		t.Errorf("run of a broken file: exit %d, stderr\n%s\nwant exit 1 and\n%s", code, stderr, want)
	}
}

// TestPlan: plan names every pipeline of a file with its source, path and
// sinks; without -c it plans the built-in default.
func TestPlan(t *testing.T) {
	dir := t.TempDir()
	file := writeTestFile(t, dir, "three.yaml", []byte(`rtmp: {listen: "127.0.0.1:1935"}
pipelines:
  obs:
    source: {rtmp: {app: live}}
    path: live/{key}
    sinks: [fmp4: {dir: rec}]
  clip:
    source: demo
    path: demo
  fanout:
    from: live/*
    sinks: [moq: {url: "https://relay.example:4443/"}]
`))
	code, out, stderr := runCLI(t, context.Background(), "plan", "-c", file)
	if code != 0 {
		t.Fatalf("plan exited %d: %s", code, stderr)
	}
	for _, want := range []string{
		"config: " + file,
		"rtmp listener: rtmp on tcp 127.0.0.1:1935",
		"pipeline obs (" + file + ":3:3)", "source: rtmp app=live", "publishes: live/* (path live/{key})", "[0] fmp4 dir=rec",
		"pipeline clip (" + file + ":7:3)", "source: demo", "publishes: demo",
		"pipeline fanout (" + file + ":10:3)", "takes: live/* (broadcasts already in the Origin)", "[0] moq url=https://relay.example:4443/",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, context.Background(), "plan")
	if code != 0 || !strings.Contains(out, "config: "+defaultConfigName) || !strings.Contains(out, "pipeline live (") || !strings.Contains(out, "pipeline demo (") {
		t.Errorf("plan of the built-in default: exit %d\n%s", code, out)
	}
	code, _, stderr = runCLI(t, context.Background(), "plan", "-c", writeTestFile(t, dir, "broken.yaml", []byte(brokenConfig)))
	if code != 1 || !strings.Contains(stderr, ":10:5: pipelines.cam.sorce: unknown key") {
		t.Errorf("plan of a broken file: exit %d, stderr %s", code, stderr)
	}
}

// TestCompletion: cobra's completion command is there and prints a
// script for each shell.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash":       "# bash completion V2 for moqbridge",
		"zsh":        "#compdef moqbridge",
		"fish":       "# fish completion for moqbridge",
		"powershell": "# powershell completion for moqbridge",
	} {
		code, out, stderr := runCLI(t, context.Background(), "completion", shell)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Errorf("completion %s: exit %d, %d bytes starting %q (stderr %q), want a script starting %q", shell, code, len(out), firstLine(out), stderr, want)
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestHelpExamples: the configuration commands show examples in --help.
func TestHelpExamples(t *testing.T) {
	for _, name := range []string{"run", "validate", "plan"} {
		code, out, _ := runCLI(t, context.Background(), name, "--help")
		if code != 0 || !strings.Contains(out, "Examples:\n  moqbridge "+name) {
			t.Errorf("%s --help: exit %d, no examples:\n%s", name, code, out)
		}
	}
	code, out, _ := runCLI(t, context.Background(), "--help")
	if code != 0 || !strings.Contains(out, "MOQBRIDGE_LISTEN") || !strings.Contains(out, "completion") {
		t.Errorf("--help: exit %d, does not name MOQBRIDGE_LISTEN and completion:\n%s", code, out)
	}
}

// TestPrintDefault: run --print-default prints the embedded default, which
// validates.
func TestPrintDefault(t *testing.T) {
	code, out, _ := runCLI(t, context.Background(), "run", "--print-default")
	if code != 0 || out != defaultConfig {
		t.Fatalf("run --print-default: exit %d, printed %d bytes, want the %d of default.yaml", code, len(out), len(defaultConfig))
	}
}

// TestDefaultConfigEnv: the built-in default listens on :4443, :1935 and
// 127.0.0.1:9090, and its environment variables move each.
func TestDefaultConfigEnv(t *testing.T) {
	parse := func(env map[string]string) *pipelines.Config {
		t.Helper()
		cfg, err := pipelines.ParseWith([]byte(defaultConfig), defaultConfigName, newRegistry(), pipelines.LoadOptions{
			LookupEnv: func(name string) (string, bool) { v, ok := env[name]; return v, ok },
		})
		if err != nil {
			t.Fatalf("the default config with %v: %v", env, err)
		}
		return cfg
	}
	cfg := parse(nil)
	if cfg.Server.Listen != ":4443" || cfg.Server.Cert != "" || cfg.RTMP == nil || cfg.RTMP.Listen != ":1935" ||
		cfg.Admin.Listen != "127.0.0.1:9090" || cfg.Log.Level != "info" {
		t.Errorf("defaults: server %+v, rtmp %+v, admin %+v, log %+v", cfg.Server, cfg.RTMP, cfg.Admin, cfg.Log)
	}
	var names []string
	for _, p := range cfg.Pipelines {
		names = append(names, p.Name+" "+pipelineSummary(p))
	}
	if got := strings.Join(names, "; "); got != "live live: rtmp → live/{key} (live/*); demo demo: demo → demo" {
		t.Errorf("pipelines: %s", got)
	}
	cfg = parse(map[string]string{"MOQBRIDGE_LISTEN": "127.0.0.1:5000", "MOQBRIDGE_RTMP_LISTEN": ":6000",
		"MOQBRIDGE_ADMIN_LISTEN": "0.0.0.0:7000", "MOQBRIDGE_LOG_LEVEL": "debug"})
	if cfg.Server.Listen != "127.0.0.1:5000" || cfg.RTMP.Listen != ":6000" || cfg.Admin.Listen != "0.0.0.0:7000" || cfg.Log.Level != "debug" {
		t.Errorf("moved: server %s, rtmp %s, admin %s, log %s", cfg.Server.Listen, cfg.RTMP.Listen, cfg.Admin.Listen, cfg.Log.Level)
	}
}

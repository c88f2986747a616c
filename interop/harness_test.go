// Package interop tests moqbridge against independent MOQ Lite
// implementations: the @moq JavaScript libraries, in Node and in headless
// Chromium. The npm project in this directory pins them (run `npm ci` here);
// the tests skip with a reason when node, chromium or the installed packages
// are missing, and fail instead when MOQBRIDGE_INTEROP=require.
package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/protocol"
)

// TestMain fails the package if a test leaves a goroutine running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Pinned versions the tests expect in node_modules (see package.json).
var pinnedPackages = map[string]string{
	"@moq/lite":    "0.2.2",
	"@moq/qmux":    "0.0.6",
	"@moq/watch":   "0.4.6",
	"@moq/publish": "0.2.17",
	"esbuild":      "0.28.2",
	"ws":           "8.23.0",
}

// requireTools checks that the named tools are available: "node",
// "chromium" and "node_modules" (the pinned npm packages installed in this
// directory). When one is missing the test is skipped with the reason, or
// fails if MOQBRIDGE_INTEROP=require.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		switch tool {
		case "node":
			if _, err := exec.LookPath("node"); err != nil {
				missing = append(missing, "node (not in PATH)")
			}
		case "chromium":
			if _, err := chromiumPath(); err != nil {
				missing = append(missing, "chromium (not in PATH; set MOQBRIDGE_CHROMIUM or apt-get install chromium)")
			}
		case "node_modules":
			if err := checkNodeModules(); err != nil {
				missing = append(missing, fmt.Sprintf("node_modules (%v; run `npm ci` in interop/)", err))
			}
		default:
			t.Fatalf("requireTools: unknown tool %q", tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "interop peer missing: " + strings.Join(missing, ", ")
	testkit.Unavailable(t, "%s", msg)
}

// chromiumPath finds the Chromium binary: $MOQBRIDGE_CHROMIUM, else
// chromium or chromium-browser in PATH.
func chromiumPath() (string, error) {
	if p := os.Getenv("MOQBRIDGE_CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	var err error
	for _, name := range []string{"chromium", "chromium-browser"} {
		var p string
		if p, err = exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", err
}

// checkNodeModules verifies the pinned packages are installed.
func checkNodeModules() error {
	for name, want := range pinnedPackages {
		raw, err := os.ReadFile(filepath.Join("node_modules", filepath.FromSlash(name), "package.json"))
		if err != nil {
			return fmt.Errorf("%s not installed", name)
		}
		var pkg struct{ Version string }
		if err := json.Unmarshal(raw, &pkg); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		if pkg.Version != want {
			return fmt.Errorf("%s is %s, want %s", name, pkg.Version, want)
		}
	}
	if _, err := os.Stat(filepath.Join("node_modules", ".bin", "esbuild")); err != nil {
		return errors.New("node_modules/.bin/esbuild missing")
	}
	return nil
}

// buildBundle bundles the browser entry point (a path relative to this
// directory) with esbuild into a temporary directory and returns the
// bundle's path.
func buildBundle(t *testing.T, entry string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(entry), ".js")+".bundle.js")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join("node_modules", ".bin", "esbuild"), entry,
		"--bundle", "--format=esm", "--platform=browser", "--target=chrome120",
		"--outfile="+out, "--log-level=warning")
	cmd.WaitDelay = 5 * time.Second
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("esbuild %s: %v\n%s", entry, err, b)
	}
	return out
}

// runNode runs a Node script from this directory with a timeout and
// returns its standard output.
func runNode(t *testing.T, timeout time.Duration, script string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", script, err, out, stderr.Bytes())
	}
	return out
}

// process is a child process started in its own process group, so the
// whole tree (Chromium's helpers included) can be killed. Its combined
// output goes to a file, which needs no copying goroutine.
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // why it exited, once done is closed
}

// startProcess starts name with args; t.Cleanup kills its process group
// and waits for it.
func startProcess(t *testing.T, name string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
		}
	})
	return p
}

// output returns the process's output so far.
func (p *process) output() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	return string(b)
}

// dropLines returns s without the lines containing any of the substrings.
func dropLines(s string, substrings ...string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		keep := true
		for _, sub := range substrings {
			if strings.Contains(line, sub) {
				keep = false
				break
			}
		}
		if keep {
			b.WriteString(line)
		}
	}
	return b.String()
}

// tail returns at most the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// TestNodeLoadsMoqLite checks the npm project: the pinned @moq/lite loads in
// Node (20 needs js/polyfill.js) and the polyfills behave.
func TestNodeLoadsMoqLite(t *testing.T) {
	requireTools(t, "node", "node_modules")
	out := runNode(t, 30*time.Second, "js/polyfill_check.js")
	var got struct {
		WithResolvers int    `json:"withResolvers"`
		Difference    []int  `json:"difference"`
		WebSocket     string `json:"webSocket"`
		Connect       string `json:"connect"`
		Broadcast     string `json:"broadcast"`
		Path          string `json:"path"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &got); err != nil {
		t.Fatalf("polyfill_check output %q: %v", out, err)
	}
	if got.WithResolvers != 42 || fmt.Sprint(got.Difference) != "[1 3]" || got.WebSocket != "function" ||
		got.Connect != "function" || got.Broadcast != "function" || got.Path != "interop/go" {
		t.Fatalf("polyfill_check reported %+v", got)
	}
}

// serveRelay starts a moqbridge relay on 127.0.0.1 with TCP (plain HTTP)
// on for the test; cfg's other fields are kept. It closes at cleanup.
func serveRelay(t *testing.T, cfg protocol.ServerConfig) *protocol.Server {
	t.Helper()
	cfg.Addr, cfg.TCP = "127.0.0.1:0", protocol.TCPHTTP
	srv, err := protocol.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

// loadPage reads web/<html> and bundles web/<entry> for a browser test.
func loadPage(t *testing.T, html, entry string) (page, bundle []byte) {
	t.Helper()
	start := time.Now()
	page, err := os.ReadFile(filepath.Join("web", html))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err = os.ReadFile(buildBundle(t, filepath.Join("web", entry)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("page bundle: %d bytes (%v)", len(bundle), time.Since(start).Round(time.Millisecond))
	return page, bundle
}

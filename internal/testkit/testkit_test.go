package testkit

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestOnlyTestsImport checks that no package of the module imports testkit
// outside its _test.go files: it carries testing helpers that would
// otherwise link the testing package into the binaries.
func TestOnlyTestsImport(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed: %v", err)
	}
	root, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	cmd.Dir = strings.TrimSpace(string(root))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const self = "github.com/moqbridge/moqbridge/internal/testkit"
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) > 1 && slices.Contains(fields[1:], self) {
			t.Errorf("%s imports %s outside its tests", fields[0], self)
		}
	}
}

// TestWaitLog: WaitLog finds a line written after it started waiting that
// holds all the parts, not one that holds only some.
func TestWaitLog(t *testing.T) {
	var l LogBuffer
	l.Logger().Info("starting", "path", "live/a")
	go func() {
		time.Sleep(50 * time.Millisecond)
		l.Logger().Debug("publishing", "path", "live/b")
	}()
	line := l.WaitLog(t, 5*time.Second, "publishing", "path=live/b")
	if !strings.Contains(line, "level=DEBUG") {
		t.Errorf("line %q", line)
	}
	if got := l.WaitLogContext(t, Context(t, time.Second), "starting"); !strings.Contains(got, "path=live/a") {
		t.Errorf("line %q", got)
	}
}

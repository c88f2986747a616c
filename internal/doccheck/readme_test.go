package doccheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMESnippets: each line of every ```go block of README.md appears,
// in order, in one of the repository's example_test.go files or of the
// example programs in examples/ (which their tests run), so the README
// shows code that compiles and runs.
func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := filepath.Glob("../../*/example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../../*/*/example_test.go")
	examples = append(examples, more...)
	programs, _ := filepath.Glob("../../examples/*/*.go")
	examples = append(examples, programs...)
	var sources []string
	for _, f := range examples {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, normalize(string(b)))
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no Go snippet")
	}
	for _, m := range blocks {
		snippet := normalize(m[1])
		found := false
		for _, src := range sources {
			if containsInOrder(src, snippet) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("this README snippet is not an excerpt of any example_test.go or example program (%d files):\n%s", len(examples), m[1])
		}
	}
}

// normalize trims each line and drops empty ones.
func normalize(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// containsInOrder reports whether every line of snippet is a line of src,
// in the same order.
func containsInOrder(src, snippet string) bool {
	lines := strings.Split(src, "\n")
	i := 0
	for _, want := range strings.Split(snippet, "\n") {
		for i < len(lines) && lines[i] != want {
			i++
		}
		if i == len(lines) {
			return false
		}
		i++
	}
	return true
}

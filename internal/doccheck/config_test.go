package doccheck

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/pipelines/builtin"
)

// TestREADMEKindsReference: the README's reference of the source and sink
// kinds is pipelines/builtin/testdata/reference.md word for word, the text
// whose keys and defaults pipelines/builtin's TestReferenceDocumented
// checks against the kinds' options. (The sections' part of the reference
// is checked in place by pipelines' TestReferenceDocumented.)
func TestREADMEKindsReference(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := os.ReadFile("../../pipelines/builtin/testdata/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), strings.TrimSpace(string(kinds))) {
		t.Error("README.md does not hold pipelines/builtin/testdata/reference.md as it is: copy it over the README's \"### Source kinds\" and \"### Sink kinds\"")
	}
}

// TestREADMEConfigs: every ```yaml block of README.md is a valid
// configuration for the moqbridge binary's kinds (the built-in ones and
// demo), with every ${VAR} set. Files the examples name need not exist.
func TestREADMEConfigs(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := builtin.Registry()
	setEveryVar := pipelines.LoadOptions{LookupEnv: func(string) (string, bool) { return "x", true }}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 4 {
		t.Fatalf("%d YAML blocks in README.md", len(blocks))
	}
	for _, m := range blocks {
		// The blocks inside a list item are indented as a whole.
		yaml := dedent(m[1])
		_, err := pipelines.ParseWith([]byte(yaml), "README.md", reg, setEveryVar)
		var ce *pipelines.ConfigError
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("%v in\n%s", err, yaml)
			continue
		}
		for _, p := range problems(ce) {
			if !strings.HasSuffix(p.Msg, " does not exist") {
				t.Errorf("%s in\n%s", p, yaml)
			}
		}
	}
}

func problems(ce *pipelines.ConfigError) []pipelines.Problem {
	if ce == nil {
		return nil
	}
	return ce.Problems
}

// dedent removes the indentation of the first line from every line.
func dedent(s string) string {
	indent := s[:len(s)-len(strings.TrimLeft(s, " "))]
	var out []string
	for _, l := range strings.Split(s, "\n") {
		out = append(out, strings.TrimPrefix(l, indent))
	}
	return strings.Join(out, "\n")
}

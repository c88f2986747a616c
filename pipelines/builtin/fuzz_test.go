package builtin

import (
	"strings"
	"testing"

	"github.com/moqbridge/moqbridge/moq"
)

// checkPattern fails unless p is what a kind's Paths may return: "*", a
// valid clean path, or one followed by "/*".
func checkPattern(t *testing.T, p string) {
	t.Helper()
	if p == "*" {
		return
	}
	path := strings.TrimSuffix(p, "/*")
	if path == "" || moq.CleanPath(path) != path || moq.ValidatePath(path) != nil || strings.ContainsAny(path, "{}") {
		t.Fatalf("pattern %q", p)
	}
}

// FuzzTemplates: the template readers of the kinds (path templates, file
// name templates, URL templates) never panic, and the path patterns they
// accept are ones sinks can follow.
func FuzzTemplates(f *testing.F) {
	for _, seed := range []struct{ template, app string }{
		{"live/{key}", "live"}, {"{app}/{key}", "*"}, {"cam-{key}", "x"}, {"a/{key", "live"}, {"}{", ""},
		{"{path}/{start:2006/01}-{seq}.mp4", ""}, {"rtmp://h/live/{name}", "a/b"}, {"mirror/{name}", ""}, {"/../{key}", "live"},
	} {
		f.Add(seed.template, seed.app)
	}
	f.Fuzz(func(t *testing.T, template, app string) {
		if validateApp(app) == nil {
			if p, err := RTMPPaths(template, app); err == nil {
				checkPattern(t, p)
			}
		}
		for _, broadcast := range []bool{true, false} {
			if p, err := MOQPaths(template, broadcast); err == nil {
				checkPattern(t, p)
				if broadcast && p == "*" {
					t.Fatalf("MOQPaths(%q) = *", template)
				}
			}
		}
		_ = validateFileTemplate(template)
		_ = expandSinkURL(template, app)
		_, _ = parseFingerprint(template)
	})
}

package moq

import (
	"testing"

	"pgregory.net/rapid"
)

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":               "",
		"/":              "",
		"///":            "",
		"demo/bbb":       "demo/bbb",
		"/demo/bbb/":     "demo/bbb",
		"//demo///bbb//": "demo/bbb",
		"a":              "a",
		"a//":            "a",
		"Foo/Bar":        "Foo/Bar",
	} {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
	clean := "demo/bbb"
	if n := testing.AllocsPerRun(100, func() { _ = CleanPath(clean) }); n != 0 {
		t.Errorf("CleanPath of a clean path allocates %v times", n)
	}
}

func TestCleanPathProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := rapid.StringMatching(`[/ab]{0,20}`).Draw(t, "p")
		c := CleanPath(p)
		if CleanPath(c) != c {
			t.Fatalf("not idempotent: %q -> %q -> %q", p, c, CleanPath(c))
		}
		if !isCleanPath(c) {
			t.Fatalf("%q -> %q is not clean", p, c)
		}
	})
}

func TestPathPrefix(t *testing.T) {
	for _, c := range []struct {
		path, prefix string
		match        bool
		suffix       string
	}{
		{"foo/bar", "", true, "foo/bar"},
		{"foo/bar", "foo", true, "bar"},
		{"foo/bar", "foo/bar", true, ""},
		{"foobar", "foo", false, ""},
		{"foo", "foo/bar", false, ""},
		{"foo/bar/baz", "foo/bar", true, "baz"},
		{"foo/bar/baz", "foo/ba", false, ""},
		{"", "", true, ""},
		{"", "foo", false, ""},
		{"Foo/bar", "foo", false, ""},
	} {
		if got := HasPathPrefix(c.path, c.prefix); got != c.match {
			t.Errorf("HasPathPrefix(%q, %q) = %v", c.path, c.prefix, got)
		}
		if c.match {
			if got := PathSuffix(c.path, c.prefix); got != c.suffix {
				t.Errorf("PathSuffix(%q, %q) = %q, want %q", c.path, c.prefix, got, c.suffix)
			}
			if got := JoinPath(c.prefix, c.suffix); got != c.path {
				t.Errorf("JoinPath(%q, %q) = %q, want %q", c.prefix, c.suffix, got, c.path)
			}
		}
	}
	for _, c := range [][3]string{{"", "", ""}, {"a", "", "a"}, {"", "b", "b"}, {"a", "b", "a/b"}, {"a/b", "c/d", "a/b/c/d"}} {
		if got := JoinPath(c[0], c[1]); got != c[2] {
			t.Errorf("JoinPath(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

func TestPathJoinSuffixProperty(t *testing.T) {
	seg := rapid.StringMatching(`[a-c]{1,3}(/[a-c]{1,3}){0,3}`)
	rapid.Check(t, func(t *rapid.T) {
		prefix := rapid.OneOf(rapid.Just(""), seg).Draw(t, "prefix")
		suffix := rapid.OneOf(rapid.Just(""), seg).Draw(t, "suffix")
		path := JoinPath(prefix, suffix)
		if !HasPathPrefix(path, prefix) {
			t.Fatalf("%q does not have prefix %q", path, prefix)
		}
		if got := PathSuffix(path, prefix); got != suffix {
			t.Fatalf("PathSuffix(%q, %q) = %q, want %q", path, prefix, got, suffix)
		}
	})
}

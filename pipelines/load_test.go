package pipelines

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func parseTest(t *testing.T, src string) (*Config, error) {
	t.Helper()
	return ParseWith([]byte(src), "test.yaml", testRegistry(), LoadOptions{LookupEnv: testEnv})
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := parseTest(t, src)
	if err != nil {
		t.Fatalf("%s\n---\n%s", err, src)
	}
	return cfg
}

// problemsOf parses src expecting it refused, and returns its problems'
// lines.
func problemsOf(t *testing.T, src string) []string {
	t.Helper()
	_, err := parseTest(t, src)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want a *ConfigError, got %v\n---\n%s", err, src)
	}
	return strings.Split(ce.Error(), "\n")
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, "pipelines:\n  p:\n    from: live/*\n    sinks: [record: {dir: r}]\n")
	want := &Config{
		File:   "test.yaml",
		Server: ServerConfig{Enabled: true, Listen: ":4443", TCP: "http"},
		Admin:  AdminConfig{Listen: "127.0.0.1:9090"},
		Log:    LogConfig{Level: "info", Format: "text"},
	}
	got := *cfg
	got.Pipelines = nil
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("sections: got %+v, want %+v", got, *want)
	}
	if len(cfg.Pipelines) != 1 {
		t.Fatalf("pipelines: %+v", cfg.Pipelines)
	}
	p := cfg.Pipelines[0]
	if p.Name != "p" || p.From != "live/*" || p.Yields() != "live/*" || p.Source != nil || p.Restart != DefaultRestart ||
		p.Pos != (Position{File: "test.yaml", Line: 2, Col: 3}) || p.Fingerprint == "" {
		t.Errorf("pipeline: %+v", p)
	}
	if len(p.Sinks) != 1 || p.Sinks[0].Kind.Name != "record" || p.Sinks[0].Index != 0 ||
		!reflect.DeepEqual(p.Sinks[0].Options, &recordOptions{Dir: "r", Segment: 10 * time.Minute}) ||
		p.Sinks[0].Pos != (Position{File: "test.yaml", Line: 4, Col: 13}) {
		t.Errorf("sink: %+v", p.Sinks[0])
	}
}

func TestSourcePipeline(t *testing.T) {
	cfg := mustParse(t, `
rtmp:
pipelines:
  obs:
    source: listen
    path: /live//{key}
  clip:
    source: {file: {file: a.mp4, rate: 2MiB, start: 1m}}
    path: demo
`)
	if cfg.RTMP == nil || *cfg.RTMP != (RTMPConfig{Listen: ":1935"}) {
		t.Errorf("rtmp: %+v", cfg.RTMP)
	}
	obs, clip := cfg.Pipelines[0], cfg.Pipelines[1]
	if obs.Path != "live/{key}" || obs.Yields() != "live/*" || obs.Source.Kind.Name != "listen" ||
		!reflect.DeepEqual(obs.Source.Options, &listenOptions{App: "live"}) {
		t.Errorf("obs: %+v %+v", obs, obs.Source)
	}
	if clip.Yields() != "demo" || !reflect.DeepEqual(clip.Source.Options, &fileOptions{File: "a.mp4", Rate: 2 << 20, Start: time.Minute}) ||
		clip.Source.Pos != (Position{File: "test.yaml", Line: 8, Col: 14}) {
		t.Errorf("clip: %+v %+v", clip, clip.Source)
	}
}

func TestRTMPSection(t *testing.T) {
	cfg := mustParse(t, "rtmp: {listen: '', rtmps: ':1936', max_conns: -1}\n")
	if *cfg.RTMP != (RTMPConfig{RTMPS: ":1936", MaxConns: -1}) {
		t.Errorf("rtmp: %+v", cfg.RTMP)
	}
}

func TestExpandString(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "plain", want: "plain"},
		{in: "${REC_DIR}/x", want: "/srv/recordings/x"},
		{in: "${PORT}${PORT}", want: "44434443"},
		{in: "${UNSET:-fallback}", want: "fallback"},
		{in: "${EMPTY:-fallback}", want: "fallback"},
		{in: "${EMPTY}", want: ""},
		{in: "${PORT:-1}", want: "4443"},
		{in: "${UNSET:-}", want: ""},
		{in: "$$", want: "$"},
		{in: "$${PORT}", want: "${PORT}"},
		{in: "$$$${PORT}", want: "$${PORT}"},
		{in: "$$${PORT}", want: "$4443"},
		{in: "a$b $ $", want: "a$b $ $"},
		{in: "${UNSET}", err: "environment variable UNSET is not set"},
		{in: "x${", err: "unterminated ${"},
		{in: "${}", err: `"" is not a variable name`},
		{in: "${A B}", err: `"A B" is not a variable name`},
	} {
		got, err := expandString(c.in, testEnv)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: got %q, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// TestExpandValuesNotKeys: a plain scalar that expands to a number is a
// number; keys are never expanded; an anchored value is expanded once.
func TestExpandValuesNotKeys(t *testing.T) {
	cfg := mustParse(t, "server:\n  limits:\n    max_streams: ${PORT}\n")
	if cfg.Server.Limits.MaxStreams != 4443 {
		t.Errorf("server: %+v", cfg.Server)
	}
	// The anchored "$$x" is expanded once, to the file name "$x", both
	// where it is written and where the alias repeats it.
	if got, want := problemsOf(t, "server:\n  cert: &c \"$$x\"\n  key: *c\n"), []string{
		"test.yaml:2:9: server.cert: $x does not exist",
		"test.yaml:2:9: server.key: $x does not exist", // the alias points at the anchor
	}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	got := problemsOf(t, "server:\n  ${PORT}: 1\n")
	if want := `test.yaml:2:3: server.${PORT}: unknown key "${PORT}"`; !strings.HasPrefix(got[0], want) {
		t.Errorf("got %q, want %q…", got, want)
	}
}

func TestByteSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ByteSize
		str  string
	}{
		{"1048576", 1 << 20, "1MiB"},
		{"16MiB", 16 << 20, "16MiB"},
		{"16 mib", 16 << 20, "16MiB"},
		{"1.5GB", 1500_000_000, "1500MB"},
		{"1.5GiB", 3 << 29, "1536MiB"},
		{"64k", 64 << 10, "64KiB"},
		{"1000", 1000, "1KB"},
		{"1023", 1023, "1023"},
		{"0", 0, "0"},
		{"2TB", 2e12, "2TB"},
	} {
		got, err := ParseByteSize(c.in)
		if err != nil || got != c.want || got.String() != c.str {
			t.Errorf("%q: got %d (%s), %v; want %d (%s)", c.in, got, got, err, c.want, c.str)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "ten", "1.5.5GB", "9999999999TB", "NaN", "Inf", "0x10"} {
		if got, err := ParseByteSize(bad); err == nil {
			t.Errorf("%q: accepted as %d", bad, got)
		}
	}
}

func TestSuggest(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{
		{"segmnet", "segment", 1}, {"", "abc", 3}, {"abc", "abc", 0}, {"ca", "abc", 3}, {"kitten", "sitting", 3}, {"lop", "loop", 1},
	} {
		if d := editDistance(c.a, c.b); d != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, d, c.d)
		}
	}
	keys := []string{"dir", "segment", "max_size", "tracks"}
	for word, want := range map[string]string{"segmnet": "segment", "Segment": "segment", "dri": "dir", "maxsize": "max_size", "colour": "", "s": ""} {
		if got := closest(word, keys); got != want {
			t.Errorf("closest(%q) = %q, want %q", word, got, want)
		}
	}
}

func TestKeyPaths(t *testing.T) {
	got := problemsOf(t, "pipelines:\n  cam.1:\n    from: live/x\n")
	if want := `test.yaml:3:5: pipelines["cam.1"].sinks: a from pipeline needs at least one sink`; got[0] != want {
		t.Errorf("got %q, want %q", got[0], want)
	}
	if s := (Problem{Key: "k", Msg: "m"}).String(); s != "k: m" {
		t.Errorf("a problem without a position: %q", s)
	}
}

func TestMergeKeys(t *testing.T) {
	cfg := mustParse(t, `
x-base: &base {dir: base, segment: 1m}
x-more: &more {tracks: [video]}
pipelines:
  p:
    from: live/*
    sinks:
      - record: {<<: [*base, *more], dir: mine}
`)
	want := &recordOptions{Dir: "mine", Segment: time.Minute, Tracks: []string{"video"}}
	if got := cfg.Pipelines[0].Sinks[0].Options; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

const fingerprintBase = `
rtmp: {listen: ":1935"}
pipelines:
  obs:
    source: {listen: {app: live}}
    path: live/{key}
    sinks: [record: {dir: rec, segment: 10m}]
  clip:
    source: {file: {file: a.mp4}}
    path: demo
`

func fingerprints(t *testing.T, src string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for _, p := range mustParse(t, src).Pipelines {
		out[p.Name] = p.Fingerprint
	}
	return out
}

// TestFingerprint: formatting does not change a fingerprint; an option
// does, and so does the rtmp section for the pipeline listening on it.
func TestFingerprint(t *testing.T) {
	base := fingerprints(t, fingerprintBase)
	for _, c := range []struct {
		name    string
		src     string
		changed []string
	}{
		{"reformatted", `
# a comment
pipelines:
  clip:
    path: "demo"
    source:
      file:
        file: 'a.mp4'
  obs:
    sinks:
      - record:
          segment: 10m
          dir: rec
    path: live/{key}
    source:
      listen: {app: "${UNSET:-live}"}
server: {listen: ":5000"}
admin: {listen: ""}
rtmp:
  listen: :1935
`, nil},
		{"sink option", strings.Replace(fingerprintBase, "segment: 10m", "segment: 5m", 1), []string{"obs"}},
		{"rtmp section", strings.Replace(fingerprintBase, `listen: ":1935"`, `listen: ":1936"`, 1), []string{"obs"}},
		{"source option", strings.Replace(fingerprintBase, "file: a.mp4", "file: b.mp4", 1), []string{"clip"}},
		{"restart", fingerprintBase + "    restart: {min: 1s}\n", []string{"clip"}},
		{"another pipeline", fingerprintBase + "  more:\n    source: {file: {file: m.mp4}}\n    path: more\n", nil},
	} {
		got := fingerprints(t, c.src)
		for name, fp := range base {
			if changed := fp != got[name]; changed != (indexOf(c.changed, name) >= 0) {
				t.Errorf("%s: pipeline %s changed: %v, want %v", c.name, name, changed, !changed)
			}
		}
	}
}

// TestBounds: hostile input is refused with a bounded amount of work.
func TestBounds(t *testing.T) {
	var bomb strings.Builder
	bomb.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 30; i++ {
		bomb.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " [" + strings.Repeat("*a"+itoa(i-1)+", ", 9) + "*a" + itoa(i-1) + "]\n")
	}
	bomb.WriteString("pipelines: *a29\n")
	for _, c := range []struct {
		name, src, want string
	}{
		{"alias bomb", bomb.String(), "more than 1048576 values once aliases are expanded"},
		{"deep nesting", "pipelines: " + strings.Repeat("[", 100) + strings.Repeat("]", 100), "nested deeper than 64 levels"},
		{"very deep nesting", strings.Repeat("[", 20000), "exceeded max depth"},
		{"recursive alias", "pipelines: &a [*a]\n", "an alias refers to a node that contains it"},
		{"huge file", "# " + strings.Repeat("x", MaxConfigSize), "larger than 1048576 bytes"},
		{"many problems", strings.Repeat("x: 1\n", 1000), "… and 900 more problems"},
	} {
		_, err := parseTest(t, c.src)
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %.300v, want a *ConfigError with %q", c.name, err, c.want)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "moqbridge.yaml")
	if err := os.WriteFile(file, []byte("pipelines:\n  p:\n    source: {file: {file: a.mp4}}\n    path: a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file, testRegistry())
	if err != nil || cfg.File != file || cfg.Dir() != dir || len(cfg.Pipelines) != 1 {
		t.Fatalf("Load: %+v, %v", cfg, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), testRegistry()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	if (&Config{}).Dir() != "" {
		t.Error("Dir of a config without a file")
	}
}

// TestOnlyRegisteredKinds: the same file is valid or not depending on
// the registry: kinds are not hard-wired.
func TestOnlyRegisteredKinds(t *testing.T) {
	src := []byte("pipelines:\n  p:\n    source: {file: {file: a.mp4}}\n    path: a\n")
	_, err := Parse(src, "", NewRegistry())
	if err == nil || err.Error() != `3:14: pipelines.p.source.file: unknown source kind "file" (none are allowed here)` {
		t.Errorf("empty registry: %v", err)
	}
}

func TestReferenceKeys(t *testing.T) {
	keys := ReferenceKeys(testRegistry())
	for _, want := range []string{
		"server", "server.enabled", "server.auth.public", "server.limits.max_group_size", "rtmp.rtmps", "admin.listen", "log.format",
		"pipelines.NAME.from", "pipelines.NAME.restart.give_up_after", "pipelines.NAME.source.remote.backoff.max",
		"pipelines.NAME.sinks[].push.extra.note", "pipelines.NAME.sinks[].record.max_size",
	} {
		if indexOf(keys, want) < 0 {
			t.Errorf("%s is missing from %v", want, keys)
		}
	}
	if indexOf(keys, "pipelines.NAME.sinks[].record.max_size.") >= 0 {
		t.Error("descended into a size")
	}
}

// TestDirValidator: options that check files against the config's
// directory get it, and their errors land on the option.
func TestDirValidator(t *testing.T) {
	reg := NewRegistry()
	if err := reg.AddSource(SourceKind{
		Name:      "clip",
		Options:   func() any { return &dirOptions{} },
		NewSource: testRegistry().sources["file"].NewSource,
	}); err != nil {
		t.Fatal(err)
	}
	_, err := Parse([]byte("pipelines:\n  p:\n    source: {clip: {file: a.mp4}}\n    path: a\n"), "conf/moqbridge.yaml", reg)
	if want := `conf/moqbridge.yaml:3:21: pipelines.p.source.clip.file: conf/a.mp4 does not exist`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

type dirOptions struct {
	File string `yaml:"file"`
}

func (o *dirOptions) Validate() error { return errors.New("Validate called instead of ValidateDir") }

func (o *dirOptions) ValidateDir(dir string) error {
	return &FieldError{Field: "file", Err: errors.New(filepath.Join(dir, o.File) + " does not exist")}
}

type CommonOptions struct {
	Level int `yaml:"level"`
}

type hiddenOptions struct {
	Note string `yaml:"note"`
}

type inlineOptions struct {
	CommonOptions  `yaml:",inline"`
	*hiddenOptions `yaml:",inline"`
	Name           string
	Skipped        string `yaml:"-"`
	Any            any    `yaml:"any"`
}

// TestInlineOptions: inline structs contribute their keys; a field the
// decoder cannot set is a problem, not a panic; untagged fields take
// their lowercased name; "-" is no key.
func TestInlineOptions(t *testing.T) {
	reg := NewRegistry()
	if err := reg.AddSink(SinkKind{Name: "k", Options: func() any { return &inlineOptions{} }, New: testRegistry().sinks["record"].New}); err != nil {
		t.Fatal(err)
	}
	parse := func(opts string) (*Config, error) {
		return Parse([]byte("pipelines:\n  p:\n    from: a\n    sinks: [k: "+opts+"]\n"), "", reg)
	}
	cfg, err := parse("{level: 3, name: x, any: [1, b]}")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Pipelines[0].Sinks[0].Options.(*inlineOptions)
	if got.Level != 3 || got.Name != "x" || !reflect.DeepEqual(got.Any, []any{1, "b"}) {
		t.Errorf("got %+v", got)
	}
	for opts, want := range map[string]string{
		"{note: y}":    "4:23: pipelines.p.sinks[0].k.note: cannot be set",
		"{skipped: y}": `4:17: pipelines.p.sinks[0].k.skipped: unknown key "skipped"`,
	} {
		if _, err := parse(opts); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: got %v, want %s…", opts, err, want)
		}
	}
}

// TestReferenceDocumented: the config reference in README.md, its part
// before the kinds' ("## Config reference" to "### Source kinds"), names
// every key of the sections and of a pipeline, and no key the schema
// lacks.
func TestReferenceDocumented(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, doc, found := strings.Cut(string(readme), "\n## Config reference\n")
	doc, _, kinds := strings.Cut(doc, "\n### Source kinds\n")
	if !found || !kinds {
		t.Fatal(`README.md has no "## Config reference" followed by "### Source kinds"`)
	}
	keys := ReferenceKeys(nil)
	for _, k := range keys {
		if !strings.Contains(string(doc), "`"+k+"`") && !strings.Contains(string(doc), "`"+k+".") {
			t.Errorf("the reference does not document %s", k)
		}
	}
	for _, m := range regexp.MustCompile("`((?:server|rtmp|admin|log|pipelines)(?:\\.[a-zA-Z_]+)+)`").FindAllStringSubmatch(string(doc), -1) {
		if indexOf(keys, m[1]) < 0 {
			t.Errorf("the reference documents %s, which the schema does not have", m[1])
		}
	}
}

package builtin

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestRegistry: Registry holds every built-in kind, and Register refuses
// a registry that has one of their names already.
func TestRegistry(t *testing.T) {
	reg := Registry()
	if got, want := reg.SourceNames(), []string{"demo", "fmp4", "moq", "rtmp", "rtmp_pull", "rtp"}; !slices.Equal(got, want) {
		t.Errorf("sources %v, want %v", got, want)
	}
	if got, want := reg.SinkNames(), []string{"fmp4", "moq", "rtmp", "rtp"}; !slices.Equal(got, want) {
		t.Errorf("sinks %v, want %v", got, want)
	}
	if err := Register(reg); err == nil {
		t.Error("Register twice on one registry: no error")
	}
	for _, name := range reg.SourceNames() {
		k, _ := reg.Source(name)
		if k.Summary == "" {
			t.Errorf("source %s has no summary", name)
		}
		if _, ok := k.Options().(pipelines.Validator); !ok {
			t.Errorf("source %s: options %T do not validate", name, k.Options())
		}
	}
	for _, name := range reg.SinkNames() {
		k, _ := reg.Sink(name)
		if k.Summary == "" {
			t.Errorf("sink %s has no summary", name)
		}
		if _, ok := k.Options().(pipelines.Validator); !ok {
			t.Errorf("sink %s: options %T do not validate", name, k.Options())
		}
	}
}

// TestDefaults: what each kind's options hold when the file is silent.
func TestDefaults(t *testing.T) {
	backoff := BackoffOptions{Min: 500 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.5}
	for _, c := range []struct {
		kind string
		got  any
		want any
	}{
		{"source fmp4", FMP4Source().Options(), &FMP4SourceOptions{ReadTimeout: 30 * time.Second}},
		{"source rtmp", RTMPSource().Options(), &RTMPSourceOptions{App: "live", Linger: 5 * time.Second}},
		{"source rtmp_pull", RTMPPullSource().Options(), &RTMPPullOptions{Backoff: backoff}},
		{"sink fmp4", FMP4Sink().Options(), &FMP4SinkOptions{File: "{path}/{start:20060102-150405}.mp4", Part: time.Second, Sync: "segment"}},
		{"sink rtmp", RTMPSink().Options(), &RTMPSinkOptions{Backoff: backoff, MaxQueueDelay: 5 * time.Second, MaxQueueBytes: 32 << 20}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: defaults %+v, want %+v", c.kind, c.got, c.want)
		}
	}
	// Each call returns a new value: the runner decodes into it.
	if FMP4Sink().Options() == FMP4Sink().Options() {
		t.Error("Options returns a shared value")
	}
}

// TestValidate: each kind's options report what is wrong at the option
// at fault, all at once.
func TestValidate(t *testing.T) {
	abs, err := filepath.Abs(filepath.Join(clipDir, clip))
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.mp4")
	cases := []struct {
		name   string
		opts   pipelines.Validator
		fields []string // nil: valid
	}{
		{"fmp4 file", &FMP4SourceOptions{File: "clip.mp4", Loop: true}, nil},
		{"fmp4 absolute file", &FMP4SourceOptions{File: abs}, nil},
		{"fmp4 stdin", &FMP4SourceOptions{File: "-", Realtime: true}, nil},
		{"fmp4 url", &FMP4SourceOptions{URL: "https://cdn.example/live.mp4?token=x"}, nil},
		{"fmp4 nothing", &FMP4SourceOptions{}, []string{"file"}},
		{"fmp4 file and url", &FMP4SourceOptions{File: "a.mp4", URL: "http://h/a.mp4"}, []string{"url"}},
		{"fmp4 loop stdin", &FMP4SourceOptions{File: "-", Loop: true}, []string{"loop"}},
		{"fmp4 loop url", &FMP4SourceOptions{URL: "http://h/a.mp4", Loop: true}, []string{"loop"}},
		{"fmp4 bad url", &FMP4SourceOptions{URL: "ftp://h/a.mp4"}, []string{"url"}},
		{"fmp4 url without host", &FMP4SourceOptions{URL: "http:///a.mp4"}, []string{"url"}},
		{"fmp4 fast and realtime", &FMP4SourceOptions{File: "a.mp4", Fast: true, Realtime: true}, []string{"realtime"}},
		{"fmp4 read timeout", &FMP4SourceOptions{URL: "http://h/a.mp4", ReadTimeout: -1}, []string{"read_timeout"}},
		{"fmp4 missing absolute file", &FMP4SourceOptions{File: missing}, []string{"file"}},
		{"fmp4 directory", &FMP4SourceOptions{File: t.TempDir()}, []string{"file"}},

		{"rtmp", &RTMPSourceOptions{App: "live", Keys: []string{"a", "b"}, Linger: time.Second}, nil},
		{"rtmp any app", &RTMPSourceOptions{App: "*"}, nil},
		{"rtmp nested app", &RTMPSourceOptions{App: "live/studio"}, nil},
		{"rtmp empty app", &RTMPSourceOptions{}, []string{"app"}},
		{"rtmp bad app", &RTMPSourceOptions{App: "li*ve"}, []string{"app"}},
		{"rtmp slashed app", &RTMPSourceOptions{App: "/live"}, []string{"app"}},
		{"rtmp dot app", &RTMPSourceOptions{App: ".."}, []string{"app"}},
		{"rtmp keys", &RTMPSourceOptions{App: "live", Keys: []string{"a", "", "a", "x/y"}, Linger: -time.Second},
			[]string{"keys[1]", "keys[2]", "keys[3]", "linger"}},

		{"rtmp_pull", &RTMPPullOptions{URL: "rtmps://h/live/key", Backoff: defaultBackoff()}, nil},
		{"rtmp_pull no url", &RTMPPullOptions{Backoff: defaultBackoff()}, []string{"url"}},
		{"rtmp_pull bad url", &RTMPPullOptions{URL: "http://h/live/key", Backoff: defaultBackoff()}, []string{"url"}},
		{"rtmp_pull no key", &RTMPPullOptions{URL: "rtmp://h/live", Backoff: defaultBackoff()}, []string{"url"}},
		{"rtmp_pull backoff", &RTMPPullOptions{URL: "rtmp://h/live/k", Backoff: BackoffOptions{Min: 0, Max: -1, Jitter: 2, GiveUpAfter: -1}},
			[]string{"backoff.min", "backoff.max", "backoff.jitter", "backoff.give_up_after"}},
		{"rtmp_pull max below min", &RTMPPullOptions{URL: "rtmp://h/live/k", Backoff: BackoffOptions{Min: time.Second, Max: time.Millisecond}},
			[]string{"backoff.max"}},

		{"fmp4 sink", &FMP4SinkOptions{Dir: "rec", File: "{path}/{seq}-{start:2006}.mp4", Segment: time.Minute, Part: time.Second, MaxAge: time.Hour, MaxBytes: 1 << 30, Sync: "fragment"}, nil},
		{"fmp4 sink nothing", &FMP4SinkOptions{}, []string{"dir", "file", "part", "sync"}},
		{"fmp4 sink negatives", &FMP4SinkOptions{Dir: "rec", File: "a.mp4", Segment: -1, Part: time.Second, MaxAge: -1, MaxBytes: -1, Sync: "segment"},
			[]string{"segment", "max_age", "max_bytes"}},
		{"fmp4 sink placeholder", &FMP4SinkOptions{Dir: "rec", File: "{key}.mp4", Part: time.Second, Sync: "segment"}, []string{"file"}},
		{"fmp4 sink brace", &FMP4SinkOptions{Dir: "rec", File: "{path.mp4", Part: time.Second, Sync: "segment"}, []string{"file"}},
		{"fmp4 sink escapes", &FMP4SinkOptions{Dir: "rec", File: "../{path}.mp4", Part: time.Second, Sync: "segment"}, []string{"file"}},
		{"fmp4 sink absolute", &FMP4SinkOptions{Dir: "rec", File: "/tmp/{path}.mp4", Part: time.Second, Sync: "segment"}, []string{"file"}},
		{"fmp4 sink sync", &FMP4SinkOptions{Dir: "rec", File: "a.mp4", Part: time.Second, Sync: "always"}, []string{"sync"}},

		{"rtmp sink", &RTMPSinkOptions{URL: "rtmp://h/live/{name}", Backoff: defaultBackoff(), MaxQueueDelay: time.Second, MaxQueueBytes: 1 << 20}, nil},
		{"rtmp sink path", &RTMPSinkOptions{URL: "rtmps://h:443/app/{path}", Backoff: defaultBackoff(), MaxQueueDelay: time.Second, MaxQueueBytes: 1 << 20}, nil},
		{"rtmp sink nothing", &RTMPSinkOptions{Backoff: defaultBackoff()}, []string{"url", "max_queue_delay", "max_queue_bytes"}},
		{"rtmp sink placeholder", &RTMPSinkOptions{URL: "rtmp://h/live/{key}", Backoff: defaultBackoff(), MaxQueueDelay: time.Second, MaxQueueBytes: 1}, []string{"url"}},
		{"rtmp sink scheme", &RTMPSinkOptions{URL: "srt://h/live/x", Backoff: defaultBackoff(), MaxQueueDelay: time.Second, MaxQueueBytes: 1}, []string{"url"}},
		{"rtmp sink backoff", &RTMPSinkOptions{URL: "rtmp://h/live/x", Backoff: BackoffOptions{Min: time.Second, Max: time.Second, Jitter: -0.1}, MaxQueueDelay: time.Second, MaxQueueBytes: 1}, []string{"backoff.jitter"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.opts.Validate()
			if got := fieldsOf(t, err); !slices.Equal(got, c.fields) {
				t.Errorf("Validate: %v; fields %q, want %q", err, got, c.fields)
			}
		})
	}
}

// TestValidateDir: a relative file is looked for in the config file's
// directory.
func TestValidateDir(t *testing.T) {
	o := &FMP4SourceOptions{File: clip}
	if err := o.ValidateDir(clipDir); err != nil {
		t.Errorf("%s in %s: %v", clip, clipDir, err)
	}
	err := o.ValidateDir(t.TempDir())
	if got := fieldsOf(t, err); !slices.Equal(got, []string{"file"}) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing file: %v", err)
	}
	// Building the source checks it too, with a permanent error.
	_, err = FMP4Source().NewSource(pipelines.SourceEnv{Dir: t.TempDir(), Path: "x"}, o)
	if !sdk.IsPermanent(err) || !slices.Equal(fieldsOf(t, errors.Unwrap(err)), []string{"file"}) {
		t.Errorf("NewSource with a missing file: %v", err)
	}
}

// TestBackoff: a jitter of 0 is none, not the default, once the adapter
// applies its defaults; the rest is passed on as it is.
func TestBackoff(t *testing.T) {
	b := BackoffOptions{Min: time.Second, Max: time.Minute, GiveUpAfter: time.Hour}.sdk().WithDefaults()
	if b != (sdk.Backoff{Min: time.Second, Max: time.Minute, Jitter: -1, GiveUpAfter: time.Hour}) {
		t.Errorf("no jitter: %+v", b)
	}
	if b.WithDefaults() != b {
		t.Errorf("no jitter, the defaults applied twice: %+v", b.WithDefaults())
	}
	if b := defaultBackoff().sdk().WithDefaults(); b != sdk.DefaultBackoff {
		t.Errorf("defaults: %+v, want %+v", b, sdk.DefaultBackoff)
	}
}

// TestSecretsStayOut: errors about URLs and keys do not show stream keys,
// passwords or queries.
func TestSecretsStayOut(t *testing.T) {
	for _, v := range []pipelines.Validator{
		&RTMPPullOptions{URL: "rtmp://h:99999/live/SECRET", Backoff: defaultBackoff()},
		&RTMPPullOptions{URL: "rtmp://h/SECRET", Backoff: defaultBackoff()},
		&RTMPPullOptions{URL: "rtmp:///live/SECRET", Backoff: defaultBackoff()},
		&RTMPPullOptions{URL: "rtmp://h/live/SECRET%zz", Backoff: defaultBackoff()},
		&RTMPSinkOptions{URL: "http://h/live/SECRET", Backoff: defaultBackoff(), MaxQueueDelay: 1, MaxQueueBytes: 1},
		&RTMPSinkOptions{URL: "rtmp://h/live/SECRET{x}", Backoff: defaultBackoff(), MaxQueueDelay: 1, MaxQueueBytes: 1},
		&RTMPSinkOptions{URL: "rtmp://h/SECRET{x}", Backoff: defaultBackoff(), MaxQueueDelay: 1, MaxQueueBytes: 1},
		&FMP4SourceOptions{URL: "ftp://user:SECRET@h/a.mp4?token=SECRET"},
		&RTMPSourceOptions{App: "live", Keys: []string{"SECRET", "SECRET"}},
	} {
		err := v.Validate()
		if err == nil {
			t.Errorf("%+v: valid", v)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}

// TestYAMLKeys: every kind's options decode from their documented keys,
// strictly, and every field has a snake_case yaml key.
func TestYAMLKeys(t *testing.T) {
	for _, c := range []struct {
		options func() any
		doc     string
	}{
		{FMP4Source().Options, "{file: clip.mp4, url: '', loop: true, fast: true, realtime: false, read_timeout: 10s}"},
		{RTMPSource().Options, "{app: live, keys: [a, b], linger: 2s, replace: true}"},
		{RTMPPullSource().Options, "{url: rtmp://h/live/k, backoff: {min: 1s, max: 1m, jitter: 0.2, give_up_after: 1h}}"},
		{FMP4Sink().Options, "{dir: rec, file: '{path}.mp4', segment: 1m, part: 500ms, max_age: 24h, max_bytes: 1GiB, sync: fragment}"},
		{RTMPSink().Options, "{url: 'rtmp://h/live/{name}', video: v, audio: a, backoff: {min: 1s}, max_queue_delay: 2s, max_queue_bytes: 8MiB}"},
		{MOQSource().Options, "{url: 'https://h/', fingerprint: '', token: t, broadcast: live/x, prefix: '', backoff: {give_up_after: 1m}}"},
		{MOQSink().Options, "{url: 'wss://h/', fingerprint: '', token: t, path: 'edge/{path}', backoff: {jitter: 0}}"},
	} {
		opts := c.options()
		if err := decodeStrict(c.doc, opts); err != nil {
			t.Errorf("%T from %s: %v", opts, c.doc, err)
			continue
		}
		if err := opts.(pipelines.Validator).Validate(); err != nil {
			t.Errorf("%T from %s: %v", opts, c.doc, err)
		}
		checkTags(t, reflect.TypeOf(opts).Elem())
	}
}

// checkTags fails on a field of struct type st (and its nested structs)
// without a snake_case yaml key.
func checkTags(t *testing.T, st reflect.Type) {
	t.Helper()
	for f := range st.Fields() {
		tag := f.Tag.Get("yaml")
		if f.Anonymous && tag == ",inline" {
			checkTags(t, f.Type)
			continue
		}
		if tag == "" || strings.ToLower(tag) != tag || strings.ContainsAny(tag, "- ,") {
			t.Errorf("%s.%s: yaml key %q, want snake_case", st.Name(), f.Name, tag)
		}
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == st.PkgPath() {
			checkTags(t, f.Type)
		}
	}
}

// TestOptionsDocumented: every field of an options type has a doc
// comment: they are the config reference.
func TestOptionsDocumented(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		checkFieldDocs(t, name, string(src))
	}
}

// checkFieldDocs fails on a field of an options type (a struct type whose
// name ends in Options) declared in src without its own doc comment.
func checkFieldDocs(t *testing.T, name, src string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || !strings.HasSuffix(ts.Name.Name, "Options") {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return true
		}
		for _, field := range st.Fields.List {
			if field.Doc == nil || len(field.Names) > 1 {
				t.Errorf("%s: %s: a field without its own doc comment", name, ts.Name.Name)
			}
		}
		return false
	})
}

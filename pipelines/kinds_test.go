package pipelines

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

// The fake kinds of the loader's tests: small options types with the
// shapes real kinds have (durations, sizes, nested structs, lists, maps,
// secrets, Validate returning FieldErrors). The real kinds live in
// pipelines/builtin.

type fileOptions struct {
	File   string        `yaml:"file"`
	Loop   bool          `yaml:"loop"`
	Rate   ByteSize      `yaml:"rate"`
	Start  time.Duration `yaml:"start"`
	Tracks []string      `yaml:"tracks"`
}

func (o *fileOptions) Validate() error {
	if o.File == "" {
		return &FieldError{Field: "file", Err: errors.New("required: the fMP4 file to play")}
	}
	return nil
}

type listenOptions struct {
	App  string   `yaml:"app"`
	Keys []string `yaml:"keys"`
}

func (o *listenOptions) UsesRTMPListener() bool { return true }

func (o *listenOptions) Validate() error {
	if o.App == "" {
		return &FieldError{Field: "app", Err: errors.New("must not be empty")}
	}
	return nil
}

// listenPaths: the path template's {key} becomes the pattern's *.
func listenPaths(path string, _ any) (string, error) {
	prefix, ok := strings.CutSuffix(path, "{key}")
	if !ok {
		return "", errors.New("a listener's path must end in {key}")
	}
	return prefix + "*", nil
}

type backoffOptions struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

type remoteOptions struct {
	URL     string         `yaml:"url"`
	Token   string         `yaml:"token"`
	Prefix  string         `yaml:"prefix"`
	Backoff backoffOptions `yaml:"backoff"`
}

func (o *remoteOptions) Validate() error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, &FieldError{Field: "url", Err: errors.New("required: the relay to subscribe to")})
	}
	if o.Backoff.Max < o.Backoff.Min {
		errs = append(errs, &FieldError{Field: "backoff.max", Err: fmt.Errorf("%v is shorter than backoff.min", o.Backoff.Max)})
	}
	if strings.HasPrefix(o.Prefix, "-") {
		errs = append(errs, errors.New("a prefix starting with - cannot be announced"))
	}
	return errors.Join(errs...)
}

type recordOptions struct {
	Dir     string        `yaml:"dir"`
	Segment time.Duration `yaml:"segment"`
	MaxSize ByteSize      `yaml:"max_size"`
	Tracks  []string      `yaml:"tracks"`
}

func (o *recordOptions) Validate() error {
	if o.Dir == "" {
		return &FieldError{Field: "dir", Err: errors.New("required: where recordings go")}
	}
	return nil
}

type pushOptions struct {
	URL      string            `yaml:"url"`
	Password string            `yaml:"password"`
	Headers  map[string]string `yaml:"headers"`
	Retries  []time.Duration   `yaml:"retries"`
	Extra    *struct {
		Note string `yaml:"note"`
	} `yaml:"extra"`
}

func (o *pushOptions) Validate() error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, &FieldError{Field: "url", Err: errors.New("required")})
	}
	for i, r := range o.Retries {
		if r <= 0 {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("retries[%d]", i), Err: errors.New("must be positive")})
		}
	}
	return errors.Join(errs...)
}

var errFake = errors.New("fake kind: not for running")

// testRegistry holds the fake kinds: sources file, listen (a listener on
// the shared RTMP listener), remote; sinks record, push.
func testRegistry() *Registry {
	r := NewRegistry()
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(r.AddSource(SourceKind{
		Name: "file", Summary: "plays a file",
		Options:   func() any { return &fileOptions{Rate: 4 << 20} },
		NewSource: func(SourceEnv, any) (sdk.Source, error) { return nil, errFake },
	}))
	must(r.AddSource(SourceKind{
		Name: "listen", Summary: "takes RTMP publishes",
		Options:     func() any { return &listenOptions{App: "live"} },
		NewListener: func(SourceEnv, any) (sdk.Listener, error) { return nil, errFake },
		Paths:       listenPaths,
	}))
	must(r.AddSource(SourceKind{
		Name: "remote", Summary: "subscribes to a relay",
		Options:   func() any { return &remoteOptions{Backoff: backoffOptions{Min: time.Second, Max: time.Minute}} },
		NewSource: func(SourceEnv, any) (sdk.Source, error) { return nil, errFake },
	}))
	must(r.AddSink(SinkKind{
		Name: "record", Summary: "writes fMP4 files",
		Options: func() any { return &recordOptions{Segment: 10 * time.Minute} },
		New:     func(SinkEnv, any) (sdk.Sink, error) { return nil, errFake },
	}))
	must(r.AddSink(SinkKind{
		Name: "push", Summary: "publishes to a remote",
		Options: func() any { return &pushOptions{} },
		New:     func(SinkEnv, any) (sdk.Sink, error) { return nil, errFake },
	}))
	return r
}

// testEnv is the environment the tests' ${VAR}s see.
func testEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"REC_DIR":    "/srv/recordings",
		"STREAM_KEY": "abcd-efgh-ijkl",
		"EMPTY":      "",
		"PORT":       "4443",
	}[name]
	return v, ok
}

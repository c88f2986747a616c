package pipelines

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// SourceKind describes a kind of source a pipeline can name under
// "source:", e.g.
//
//	source:
//	  fmp4: {file: clip.mp4, loop: true}
//
// Exactly one of NewSource, NewListener and NewOrigin is set.
type SourceKind struct {
	// Name is the key under "source:" ("fmp4", "rtmp", "moq").
	Name string
	// Summary is one line for the config reference and "plan".
	Summary string
	// Options returns a new options value: a pointer to a struct whose
	// fields carry yaml tags, holding the defaults. The pipeline's options
	// for the kind are decoded into it strictly (an unknown key is an
	// error); if it implements Validator, Validate is called next.
	Options func() any
	// NewSource builds a source of one broadcast, published at the
	// pipeline's path.
	NewSource func(env SourceEnv, opts any) (sdk.Source, error)
	// NewListener builds a source of many broadcasts (one per publishing
	// client, say), started and ended through the sdk.Publisher it is run
	// with. The pipeline's path is then a template the kind fills; Paths
	// says under which pattern its broadcasts appear.
	NewListener func(env SourceEnv, opts any) (sdk.Listener, error)
	// NewOrigin builds a source that publishes into the Origin itself, at
	// the level of MOQ tracks, groups and frames rather than through an
	// sdk.BroadcastWriter: a MOQ mirror, which forwards what it receives
	// unchanged (catalog, containers, group sequences). The Observer's
	// BroadcastStarted does not see its broadcasts (their sinks count
	// what they read).
	NewOrigin func(env SourceEnv, opts any) (OriginSource, error)
	// Paths returns the path pattern (exact, or "prefix/*") of the
	// broadcasts a source with these options publishes when the
	// pipeline's path is path; nil means path itself. Sinks follow it.
	Paths func(path string, opts any) (string, error)
}

// OriginSource is a source that publishes into an Origin by itself (see
// SourceKind.NewOrigin).
type OriginSource interface {
	// Run publishes into origin until ctx ends (nil) or the source
	// fails.
	Run(ctx context.Context, origin *moq.Origin) error
}

// SinkKind describes a kind of sink a pipeline can list under "sinks:",
// e.g. "- fmp4: {dir: recordings}". A sink is made for every broadcast
// the pipeline yields.
type SinkKind struct {
	// Name is the key of the list item ("fmp4", "rtmp", "moq").
	Name string
	// Summary is one line for the config reference and "plan".
	Summary string
	// Options: as for SourceKind.
	Options func() any
	// New builds the sink of one broadcast, at env.Path.
	New func(env SinkEnv, opts any) (sdk.Sink, error)
}

// Validator is implemented by options types that check themselves once
// decoded. Validate returns nil, or one or more *FieldError (joined with
// errors.Join) naming the option at fault, so the error points at its
// line in the file; any other error is reported at the kind's key.
type Validator interface {
	Validate() error
}

// FieldError is an error about one option of a kind: Field is its yaml
// key, dotted for nested options ("backoff.max").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// SourceEnv is what a source kind's constructor gets besides its options.
type SourceEnv struct {
	// Pipeline is the pipeline's name.
	Pipeline string
	// Path is the pipeline's path: where a one-broadcast source is
	// published, or the template a listener fills.
	Path string
	// Origin is where every broadcast meets.
	Origin *moq.Origin
	// Dir is the directory of the config file, against which relative
	// file names in options are resolved ("" for the working directory).
	Dir string
	// Logger carries the pipeline's attributes.
	Logger *slog.Logger
	// RTMP is the shared RTMP listener of the config's "rtmp:" section,
	// nil when there is none.
	RTMP RTMPRouter
}

// SinkEnv is what a sink kind's constructor gets besides its options.
type SinkEnv struct {
	// Pipeline is the pipeline's name.
	Pipeline string
	// Path is the broadcast the sink consumes.
	Path string
	// Index is the sink's position in the pipeline's list.
	Index int
	// Origin is where every broadcast meets.
	Origin *moq.Origin
	// Dir: as in SourceEnv.
	Dir string
	// Logger carries the pipeline's, path's and sink's attributes.
	Logger *slog.Logger
}

// RTMPRouter is the shared RTMP listener as a source kind sees it: a
// pipeline routes the publishes of one RTMP application to itself.
type RTMPRouter interface {
	// Route sends the publishes a route accepts to p until ctx ends; it
	// fails when another running pipeline routes the same application.
	Route(ctx context.Context, route RTMPRoute, p *sdk.Publisher) error
}

// RTMPRoute is what one pipeline takes from the shared RTMP listener.
type RTMPRoute struct {
	// App is the RTMP application ("live" in rtmp://host/live/key); "*"
	// takes any application no other route names.
	App string
	// PathTemplate makes a broadcast path from {app} and {key}.
	PathTemplate string
	// Keys, when not empty, are the only stream keys accepted.
	Keys []string
	// Linger is how long a broadcast whose publisher dropped waits for
	// the same stream key to return and continue it (0: the default of
	// sources/rtmp, 5 s; negative: it ends at once).
	Linger time.Duration
	// Replace lets a new publisher of a live path take over from the one
	// there (whose connection is closed) instead of being refused.
	Replace bool
}

// Registry holds the source and sink kinds a configuration may name.
type Registry struct {
	sources map[string]SourceKind
	sinks   map[string]SinkKind
}

// NewRegistry returns an empty registry; Builtin returns one holding the
// kinds moqbridge ships.
func NewRegistry() *Registry {
	return &Registry{sources: make(map[string]SourceKind), sinks: make(map[string]SinkKind)}
}

// AddSource registers a source kind; a name already taken, an empty one
// or a kind without options or constructor is refused.
func (r *Registry) AddSource(k SourceKind) error {
	built := 0
	for _, set := range []bool{k.NewSource != nil, k.NewListener != nil, k.NewOrigin != nil} {
		if set {
			built++
		}
	}
	if k.Name == "" || k.Options == nil || built != 1 {
		return fmt.Errorf("pipelines: source kind %q needs a name, Options and exactly one of NewSource, NewListener and NewOrigin", k.Name)
	}
	if _, dup := r.sources[k.Name]; dup {
		return fmt.Errorf("pipelines: source kind %q is registered already", k.Name)
	}
	r.sources[k.Name] = k
	return nil
}

// AddSink registers a sink kind, refused as AddSource refuses.
func (r *Registry) AddSink(k SinkKind) error {
	if k.Name == "" || k.Options == nil || k.New == nil {
		return fmt.Errorf("pipelines: sink kind %q needs a name, Options and New", k.Name)
	}
	if _, dup := r.sinks[k.Name]; dup {
		return fmt.Errorf("pipelines: sink kind %q is registered already", k.Name)
	}
	r.sinks[k.Name] = k
	return nil
}

// Source returns the source kind called name.
func (r *Registry) Source(name string) (SourceKind, bool) {
	k, ok := r.sources[name]
	return k, ok
}

// Sink returns the sink kind called name.
func (r *Registry) Sink(name string) (SinkKind, bool) {
	k, ok := r.sinks[name]
	return k, ok
}

// SourceNames lists the registered source kinds, sorted.
func (r *Registry) SourceNames() []string { return sortedKeys(r.sources) }

// SinkNames lists the registered sink kinds, sorted.
func (r *Registry) SinkNames() []string { return sortedKeys(r.sinks) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

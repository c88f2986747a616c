// Custom-kind adds a sink kind of its own to moqbridge's config files: a
// "stall" sink that logs when a broadcast stops bringing frames (a frozen
// encoder, a lost uplink) and when it comes back. It shows how a kind is
// registered on the built-in registry (builtin.Registry) with an options
// struct (yaml tags, defaults, Validate returning pipelines.FieldError so
// that a bad value is reported at its line), and used from YAML beside
// the built-in kinds by a pipelines.Runner, as moqbridge run does.
//
// Run it with the embedded moqbridge.yaml (the relay on :4443, RTMP on
// :1935, every stream watched and recorded into ./recordings):
//
//	go run ./examples/custom-kind
//	ffmpeg -re -i clip.mp4 -c copy -f flv rtmp://localhost/live/cam
//
// Pause ffmpeg (Ctrl-Z, then fg) and the stall sink logs "stalled", then
// "resumed". With -c FILE it runs your configuration instead; a bad
// option is reported like every other config error:
//
//	moqbridge.yaml:12:17: pipelines.obs.sinks[0].stall.after: must be at least 100ms, got 10ms
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/pipelines/builtin"
	"github.com/moqbridge/moqbridge/sdk"
)

//go:embed moqbridge.yaml
var defaultConfig []byte

func main() {
	file := flag.String("c", "", "configuration file (default: the embedded moqbridge.yaml)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *file, slog.Default()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// registry is every built-in kind and the stall sink.
func registry() (*pipelines.Registry, error) {
	reg := builtin.Registry()
	if err := reg.AddSink(stallKind()); err != nil {
		return nil, err
	}
	return reg, nil
}

// run runs the configuration in file ("": the embedded one) until ctx
// ends, then stops it gracefully.
func run(ctx context.Context, file string, log *slog.Logger) error {
	reg, err := registry()
	if err != nil {
		return err
	}
	cfg, err := load(file, reg)
	if err != nil {
		return err // every problem, one per line: file:line:col: key: message
	}
	return pipelines.NewRunner(reg, pipelines.RunnerOptions{Logger: log}).Run(ctx, cfg)
}

// load reads the configuration in file, or the embedded one when file is
// "".
func load(file string, reg *pipelines.Registry) (*pipelines.Config, error) {
	if file == "" {
		return pipelines.Parse(defaultConfig, "moqbridge.yaml", reg)
	}
	return pipelines.Load(file, reg)
}

// stallOptions are the options of a stall sink in YAML:
// "- stall: {after: 2s, level: error}". The fields hold the defaults.
type stallOptions struct {
	// After is how long the watched track may bring no frame before the
	// broadcast is reported stalled.
	After time.Duration `yaml:"after"`
	// Track is the track to watch ("": the first video track, else the
	// first track).
	Track string `yaml:"track"`
	// Level is the log level of the stall: warn or error.
	Level string `yaml:"level"`
}

// Validate implements pipelines.Validator: each FieldError names its
// option, which the loader turns into the option's file position.
func (o *stallOptions) Validate() error {
	var errs []error
	if o.After < 100*time.Millisecond {
		errs = append(errs, &pipelines.FieldError{Field: "after", Err: fmt.Errorf("must be at least 100ms, got %v", o.After)})
	}
	if o.Level != "warn" && o.Level != "error" {
		errs = append(errs, &pipelines.FieldError{Field: "level", Err: fmt.Errorf("must be warn or error, got %q", o.Level)})
	}
	return errors.Join(errs...)
}

// stallKind is the sink kind "stall".
func stallKind() pipelines.SinkKind {
	return pipelines.SinkKind{
		Name:    "stall",
		Summary: "log when a broadcast brings no frame for a while, and when it resumes",
		Options: func() any { return &stallOptions{After: 3 * time.Second, Level: "warn"} },
		// New is called for every broadcast the pipeline yields, with the
		// options Options returned, decoded and validated.
		New: func(env pipelines.SinkEnv, opts any) (sdk.Sink, error) {
			o := opts.(*stallOptions)
			level := slog.LevelWarn
			if o.Level == "error" {
				level = slog.LevelError
			}
			return &stallSink{opts: *o, level: level, log: env.Logger}, nil
		},
	}
}

// stallSink watches one track of a broadcast.
type stallSink struct {
	opts  stallOptions
	level slog.Level
	log   *slog.Logger // carries the pipeline, path and sink
}

// Run implements sdk.Sink.
func (s *stallSink) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	if err := r.WaitCatalog(ctx); err != nil {
		return err
	}
	track := watched(r.Tracks(), s.opts.Track)
	if track == "" {
		// Permanent: the runner reports it and does not retry.
		return sdk.Permanent(fmt.Errorf("stall: the broadcast has no track %q", s.opts.Track))
	}
	tr, err := r.Subscribe(track)
	if err != nil {
		return err
	}
	defer tr.Close()
	stalled := false
	for {
		wait, cancel := context.WithTimeout(ctx, s.opts.After)
		_, err := tr.ReadFrame(wait) // a read that times out leaves the reader where it was
		cancel()
		switch {
		case err == nil && stalled:
			s.log.Info("stall: resumed", "track", track)
			stalled = false
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if !stalled {
				s.log.Log(ctx, s.level, "stall: stalled", "track", track, "no_frame_for", s.opts.After)
				stalled = true
			}
		case errors.Is(err, io.EOF) || ctx.Err() != nil:
			return nil // the broadcast ended, or the pipeline stops
		default:
			return err // transient: the runner restarts the sink
		}
	}
}

// watched is the track named name, or by default the first video track,
// else the first track; "" when there is none.
func watched(tracks []sdk.Track, name string) string {
	for _, t := range tracks {
		if t.Name == name || (name == "" && t.Kind == sdk.KindVideo) {
			return t.Name
		}
	}
	if name == "" && len(tracks) > 0 {
		return tracks[0].Name
	}
	return ""
}

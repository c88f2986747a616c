package builtin

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
)

// FMP4SinkOptions are the options of the fmp4 sink: every broadcast the
// pipeline yields recorded into fragmented MP4 files, playable while they
// grow and after a crash.
type FMP4SinkOptions struct {
	// Dir is the directory the recordings go under, relative to the
	// config file's directory (required; created if missing).
	Dir string `yaml:"dir"`
	// File names each file, relative to dir, from the placeholders
	// {path} (the broadcast path, made safe as a relative file path),
	// {start:LAYOUT} (when the file was opened, UTC, in a Go time layout;
	// {start} is {start:20060102-150405}) and {seq} (the file's number,
	// 0001 on). A name that exists already gets a -N suffix. Default
	// "{path}/{start:20060102-150405}.mp4".
	File string `yaml:"file"`
	// Segment starts a new file at the first keyframe after this much
	// media time (default 0: one file per broadcast).
	Segment time.Duration `yaml:"segment"`
	// Part is the span of a fragment when there is no video to cut
	// fragments at keyframes (default 1s).
	Part time.Duration `yaml:"part"`
	// MaxAge deletes this sink's finished files older than this (default
	// 0: keep them).
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes deletes this sink's oldest finished files, per broadcast,
	// while they total more than this, e.g. 10GiB (default 0: no limit).
	MaxBytes pipelines.ByteSize `yaml:"max_bytes"`
	// Sync is when files are flushed to stable storage: "segment" (fsync
	// when a file is closed; default) or "fragment" (after every
	// fragment too). Either way a killed process leaves whole fragments.
	Sync string `yaml:"sync"`
}

// Validate implements pipelines.Validator.
func (o *FMP4SinkOptions) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, fieldErr("dir", "required: the directory the recordings go under"))
	}
	if err := validateFileTemplate(o.File); err != nil {
		errs = append(errs, &pipelines.FieldError{Field: "file", Err: err})
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"segment", o.Segment}, {"max_age", o.MaxAge}} {
		if err := nonNegative(d.field, d.v); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Part <= 0 {
		errs = append(errs, fieldErr("part", "must be positive, got %v", o.Part))
	}
	if o.MaxBytes < 0 {
		errs = append(errs, fieldErr("max_bytes", "must not be negative, got %d", o.MaxBytes))
	}
	if _, err := syncPolicy(o.Sync); err != nil {
		errs = append(errs, &pipelines.FieldError{Field: "sync", Err: err})
	}
	return errors.Join(errs...)
}

// validateFileTemplate checks a file name template: known placeholders,
// a relative name that stays inside the recording directory.
func validateFileTemplate(t string) error {
	if t == "" {
		return errors.New("empty: a file name template is required")
	}
	if err := checkTemplate(t, func(name string) (bool, string) {
		return name == "path" || name == "seq" || name == "start" || strings.HasPrefix(name, "start:"), "{path}, {start}, {start:LAYOUT}, {seq}"
	}); err != nil {
		return fmt.Errorf("%q: %w", t, err)
	}
	if filepath.IsAbs(t) || strings.HasPrefix(t, "/") {
		return fmt.Errorf("%q: must be relative to dir", t)
	}
	for _, seg := range strings.Split(filepath.ToSlash(t), "/") {
		if seg == ".." {
			return fmt.Errorf("%q: a \"..\" would leave dir", t)
		}
	}
	if strings.HasSuffix(t, "/") {
		return fmt.Errorf("%q: names a directory, not a file", t)
	}
	return nil
}

// syncPolicy maps a sync option to the sink's policy.
func syncPolicy(s string) (fmp4sink.SyncPolicy, error) {
	switch s {
	case "segment":
		return fmp4sink.SyncSegment, nil
	case "fragment":
		return fmp4sink.SyncFragment, nil
	}
	return 0, fmt.Errorf("%q: want segment or fragment", s)
}

// FMP4Sink is the fmp4 sink kind: it records each broadcast into
// fragmented MP4 files.
func FMP4Sink() pipelines.SinkKind {
	return pipelines.SinkKind{
		Name:    "fmp4",
		Summary: "records each broadcast to fragmented MP4 files (segmented, with retention)",
		Options: func() any {
			return &FMP4SinkOptions{File: fmp4sink.DefaultFileTemplate, Part: fmp4sink.DefaultPartDuration, Sync: "segment"}
		},
		New: func(env pipelines.SinkEnv, opts any) (sdk.Sink, error) {
			o, err := optionsOf[FMP4SinkOptions]("fmp4", opts)
			if err != nil {
				return nil, err
			}
			if err := o.Validate(); err != nil {
				return nil, sdk.Permanent(err)
			}
			policy, _ := syncPolicy(o.Sync)
			return fmp4sink.New(fmp4sink.Config{
				Dir:             resolve(env.Dir, o.Dir),
				Path:            env.Path,
				FileTemplate:    o.File,
				SegmentDuration: o.Segment,
				PartDuration:    o.Part,
				MaxAge:          o.MaxAge,
				MaxTotalBytes:   int64(o.MaxBytes),
				Sync:            policy,
				Logger:          env.Logger,
			}), nil
		},
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
)

// recordFlags are serve's in-process recording options: every broadcast
// under a prefix of the relay's Origin (RTMP-ingested or published by MOQ
// clients) is written to fMP4 files by the serve process itself, without
// a MOQ subscriber in between.
type recordFlags struct {
	cfg    fmp4sink.Config
	prefix string
}

func (r *recordFlags) register(f *pflag.FlagSet) {
	f.StringVar(&r.cfg.Dir, "record", "", "record every broadcast in the relay (under --record-prefix) to fragmented MP4 files in this directory, in process; empty: no recording")
	f.StringVar(&r.prefix, "record-prefix", "", "record only the broadcasts under this path prefix (default: all)")
	f.DurationVar(&r.cfg.SegmentDuration, "record-segment", 0, "start a new file at the first keyframe after this long (0: a file per broadcast)")
	f.DurationVar(&r.cfg.MaxAge, "record-max-age", 0, "delete finished recordings older than this (0: keep)")
	f.Int64Var(&r.cfg.MaxTotalBytes, "record-max-bytes", 0, "delete the oldest finished recordings beyond this total size, per broadcast (0: keep)")
}

// check reports recording options without --record, and bad values.
func (r *recordFlags) check(f *pflag.FlagSet) error {
	if r.cfg.Dir == "" {
		for _, name := range []string{"record-prefix", "record-segment", "record-max-age", "record-max-bytes"} {
			if f.Changed(name) {
				return fmt.Errorf("--%s needs --record DIR", name)
			}
		}
		return nil
	}
	for _, c := range []struct {
		flag string
		neg  bool
	}{{"record-segment", r.cfg.SegmentDuration < 0}, {"record-max-age", r.cfg.MaxAge < 0}, {"record-max-bytes", r.cfg.MaxTotalBytes < 0}} {
		if c.neg {
			return fmt.Errorf("--%s must not be negative (0 turns it off)", c.flag)
		}
	}
	if err := moq.ValidatePath(moq.CleanPath(r.prefix)); r.prefix != "" && err != nil {
		return fmt.Errorf("--record-prefix %q: %w", r.prefix, err)
	}
	return nil
}

// run records the broadcasts of origin until ctx ends; each recording
// closes playable.
func (r *recordFlags) run(ctx context.Context, origin *moq.Origin, log *slog.Logger) error {
	log = log.With("record", r.cfg.Dir)
	log.Info("recording broadcasts", "prefix", r.prefix)
	return sdk.Follow(ctx, origin, moq.CleanPath(r.prefix), func(path string) (sdk.Sink, error) {
		cfg := r.cfg
		cfg.Path, cfg.Logger = path, log
		return fmp4sink.New(cfg), nil
	}, func(path string, err error) {
		switch {
		case err == nil, errors.Is(err, fmp4sink.ErrSourceLost):
			// Ended, or lost with its source: the file is closed either way.
		default:
			log.Error("recording failed", "path", path, "err", err)
		}
	})
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
)

func newRecordCommand() *cobra.Command {
	var (
		cfg      fmp4sink.Config
		duration time.Duration
		dial     dialFlags
	)
	cmd := &cobra.Command{
		Use:     "record [--duration D] [--segment D] -o DIR URL BROADCAST",
		Short:   "Record a MOQ broadcast (all its tracks) to fragmented MP4 files",
		Example: `  moqbridge record --fingerprint <hex> --segment 1m -o recordings https://localhost:4443/ live/cam`,
		Args:    needArgs("URL", "BROADCAST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			url, path := args[0], args[1]
			if cfg.Dir == "" {
				return errors.New("-o DIR is required")
			}
			for _, c := range []struct {
				flag string
				d    time.Duration
			}{{"duration", duration}, {"segment", cfg.SegmentDuration}, {"max-age", cfg.MaxAge}} {
				if err := notNegative(c.flag, c.d); err != nil {
					return err
				}
			}
			if cfg.MaxTotalBytes < 0 {
				return fmt.Errorf("--max-bytes %d: must not be negative (0 turns it off)", cfg.MaxTotalBytes)
			}
			if err := checkFileTemplate(cfg.FileTemplate); err != nil {
				return err
			}
			if err := checkURL(url); err != nil {
				return err
			}
			opts, err := dial.options()
			if err != nil {
				return err
			}
			cfg.Path = path
			cfg.Logger = slog.Default()
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return record(ctx, cmd, url, path, duration, cfg, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfg.Dir, "output", "o", "", "directory for the recordings (created if missing)")
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: until the broadcast ends or Ctrl-C)")
	f.DurationVar(&cfg.SegmentDuration, "segment", 0, "start a new file at the first keyframe after this long (0: one file)")
	f.StringVar(&cfg.FileTemplate, "name", "", `file name template: {path}, {start:LAYOUT}, {seq} (default "{path}/{start:20060102-150405}.mp4")`)
	f.DurationVar(&cfg.MaxAge, "max-age", 0, "delete finished recordings older than this (0: keep)")
	f.Int64Var(&cfg.MaxTotalBytes, "max-bytes", 0, "delete the oldest finished recordings beyond this total size (0: keep)")
	dial.register(f)
	return cmd
}

// record subscribes to the broadcast at path through the relay at url and
// writes it to files until ctx ends or the broadcast does.
func record(ctx context.Context, cmd *cobra.Command, url, path string, duration time.Duration, cfg fmp4sink.Config, opts []protocol.DialOption) error {
	sess, err := dialRelay(ctx, url, duration, append(opts, protocol.WithLogger(slog.Default())))
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	defer sess.Close()
	r, err := sdk.NewBroadcastReader(sess.Consume(path))
	if err != nil {
		return err
	}
	defer r.Close()
	sink := fmp4sink.New(cfg)
	err = sink.Run(ctx, r)
	for _, f := range sink.Files() {
		fmt.Fprintln(cmd.OutOrStdout(), f)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

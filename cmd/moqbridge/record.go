package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
)

func newRecordCommand() *cobra.Command {
	var (
		cfg      fmp4sink.Config
		duration time.Duration
		wait     = waitFlag{d: -1}
		from     string
		dial     dialFlags
	)
	cmd := &cobra.Command{
		Use:     "record [--duration D] [--segment D] [--wait D] -o DIR URL BROADCAST",
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
			var start moq.StartPoint
			switch from {
			case "oldest":
				start = moq.FromOldest
			case "latest":
				start = moq.FromLatest
			default:
				return fmt.Errorf("--from %q: want latest (from the group being sent now) or oldest (what the relay still holds from before)", from)
			}
			return record(ctx, cmd, url, path, duration, wait.d, dial.reconnect, start, cfg, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfg.Dir, "output", "o", "", "directory for the recordings (created if missing)")
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: until the broadcast ends or Ctrl-C)")
	f.StringVar(&from, "from", "latest", "where the recording starts: latest (the group being sent now, from its keyframe) or oldest (the oldest group the relay still holds, up to its cache: 30 s by default)")
	f.Var(&wait, "wait", "how long to wait for the broadcast to appear on the relay: a duration, or 0 to fail at once if it is not there")
	f.DurationVar(&cfg.SegmentDuration, "segment", 0, "start a new file at the first keyframe after this long (0: one file)")
	f.StringVar(&cfg.FileTemplate, "name", "", `file name template: {path}, {start:LAYOUT}, {seq} (default "{path}/{start:20060102-150405}.mp4")`)
	f.DurationVar(&cfg.MaxAge, "max-age", 0, "delete finished recordings older than this (0: keep)")
	f.Int64Var(&cfg.MaxTotalBytes, "max-bytes", 0, "delete the oldest finished recordings beyond this total size (0: keep)")
	dial.register(f)
	return cmd
}

// record subscribes to the broadcast at path through the relay at url and
// writes it to files until ctx ends (--duration, Ctrl-C) or the broadcast
// ends. It waits up to wait for the broadcast to appear (forever when
// negative). When the relay or the publisher goes away it waits for the
// broadcast to come back and records on into the same file (unless
// --reconnect=false). It fails when it recorded nothing, when the
// broadcast was lost without reconnecting, and on any write error.
func record(ctx context.Context, cmd *cobra.Command, url, path string, duration, wait time.Duration, reconnect bool, from moq.StartPoint, cfg fmp4sink.Config, opts []protocol.DialOption) error {
	began := time.Now()
	client, consume, err := connectConsumer(ctx, url, path, duration, opts)
	if client == nil {
		return err
	}
	defer consume.Close()
	defer client.Close()
	sink := fmp4sink.New(cfg)
	defer func() {
		for _, f := range sink.Files() {
			fmt.Fprintln(cmd.OutOrStdout(), f)
		}
	}()
	nothing := func(why string) error {
		if sink.Stats().Fragments > 0 {
			return nil
		}
		return fmt.Errorf("nothing was recorded: %s", why)
	}
	for first := true; ; first = false {
		b, err := nextBroadcast(ctx, client, consume, path, first, wait, began, nothing)
		if b == nil {
			return err
		}
		// After a loss the recording goes on from the latest group: what
		// the relay still holds from before is in the file already.
		start := from
		if !first {
			start = moq.FromLatest
		}
		err = sdk.RunSinkFrom(ctx, b, path, sink, start)
		switch {
		case ctx.Err() != nil:
			return nothing("the broadcast sent no media that could be recorded")
		case errors.Is(err, fmp4sink.ErrSourceLost):
			if !reconnect {
				return fmt.Errorf("lost broadcast %q after %s: %w", path, time.Since(began).Round(time.Second), explain(err))
			}
			slog.Warn("lost the broadcast; waiting for it to come back", "broadcast", path, "err", explain(err))
		case err != nil:
			return err
		case duration > 0 && reconnect:
			slog.Warn("the broadcast ended before --duration; waiting for it to come back", "broadcast", path)
		case duration > 0:
			return fmt.Errorf("broadcast %q ended after %s, before --duration %s", path, time.Since(began).Round(time.Second), duration)
		default:
			return nothing("the broadcast ended before any media could be recorded")
		}
	}
}

// connectConsumer connects to the relay at url as a client that follows
// the announcements of path into the returned Origin (connectRelay: it
// waits up to duration for the first session). When ctx ends first the
// client is nil and so is the error: the command was stopped before it
// began, which is no failure.
func connectConsumer(ctx context.Context, url, path string, duration time.Duration, opts []protocol.DialOption) (*protocol.Client, *moq.Origin, error) {
	consume := moq.NewOrigin()
	client, err := connectRelay(ctx, url, duration, append(opts, protocol.WithConsume(consume),
		protocol.WithAnnounceInterest(path), protocol.WithLogger(slog.Default())))
	if err != nil {
		consume.Close()
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	return client, consume, nil
}

// nextBroadcast waits for the broadcast at path, the first time for up to
// wait (--wait), after a loss for as long as ctx allows. When there is
// none it returns a nil broadcast and the error the command ends with:
// nothing's verdict when ctx ended (--duration, Ctrl-C), or why it did not
// appear.
func nextBroadcast(ctx context.Context, client *protocol.Client, consume *moq.Origin, path string, first bool, wait time.Duration,
	began time.Time, nothing func(why string) error) (*moq.BroadcastReader, error) {
	limit := time.Duration(-1)
	if first {
		limit = wait
	}
	b, err := waitBroadcast(ctx, client, consume, path, limit)
	switch {
	case ctx.Err() != nil:
		return nil, nothing(fmt.Sprintf("broadcast %q did not appear within %s", path, time.Since(began).Round(time.Second)))
	case errors.Is(err, errNotAnnounced):
		if wait == 0 {
			return nil, fmt.Errorf("broadcast %q is not on the relay (--wait 0); leave --wait out to wait for it", path)
		}
		return nil, fmt.Errorf("broadcast %q did not appear within --wait %s", path, wait)
	case err != nil:
		return nil, err
	}
	return b, nil
}

// errNotAnnounced reports that a broadcast did not appear in time.
var errNotAnnounced = errors.New("not announced")

// waitBroadcast waits for the relay to announce the broadcast at path,
// across reconnections, for up to limit (forever when negative; with 0 it
// gives the relay a moment to send what is live now). It returns ctx's
// error when ctx ends, and explains a client that stopped reconnecting.
func waitBroadcast(ctx context.Context, client *protocol.Client, consume *moq.Origin, path string, limit time.Duration) (*moq.BroadcastReader, error) {
	if b, err := consume.Consume(path); err == nil {
		return b, nil
	}
	if limit != 0 {
		slog.Info("waiting for the broadcast", "broadcast", path)
	}
	waitCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-client.Done():
			cancel(errClientStopped)
		case <-waitCtx.Done():
		}
	}()
	wait := time.Duration(0) // as long as ctx allows
	if limit >= 0 {
		// Announcements of what is live arrive within a round trip.
		wait = max(limit, nowGrace)
	}
	b, err := sdk.WaitBroadcast(waitCtx, consume, path, wait)
	switch {
	case err == nil:
		return b, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case context.Cause(waitCtx) == errClientStopped:
		return nil, lostRelay(client.URL(), client)
	case errors.Is(err, moq.ErrNotFound):
		return nil, errNotAnnounced
	}
	return nil, err
}

// nowGrace is how long --wait 0 gives the relay to announce what is live.
const nowGrace = time.Second

var errClientStopped = errors.New("client stopped")

// waitFlag is --wait: a duration, or "forever" (the default, stored as -1).
type waitFlag struct{ d time.Duration }

func (w *waitFlag) String() string {
	if w.d < 0 {
		return "forever"
	}
	return w.d.String()
}

func (w *waitFlag) Set(s string) error {
	if s == "forever" {
		w.d = -1
		return nil
	}
	d, err := time.ParseDuration(s)
	if s == "0" {
		d, err = 0, nil
	}
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration such as 30s, 0 (do not wait) or forever, got %q", s)
	}
	w.d = d
	return nil
}

func (w *waitFlag) Type() string { return "duration" }

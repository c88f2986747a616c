package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// liveSink is a sink that sends a broadcast live to one destination, the
// way restream and rtp-out run it (sendLive).
type liveSink struct {
	// command names the command in the log line that ends it.
	command string
	sink    sdk.Sink
	// lost is the sink's ErrSourceLost: the broadcast went away, and the
	// sink goes on once it is back.
	lost error
	// dest names where the sink sends, in errors (never with a stream
	// key).
	dest string
	// stopped says why nothing was sent when the command is stopped
	// (--duration, Ctrl-C) while the broadcast is there.
	stopped string
	// stats returns the frames sent so far, and the attributes of the log
	// line that ends the command.
	stats func() (frames uint64, attrs []any)
	// failed, if set, turns an error of the sink into the command's.
	failed func(error) error
}

// sendLive sends the broadcast at path, found through the relay at url
// (dialled with dial), with out until ctx ends (Ctrl-C), duration passed
// (--duration, when positive), the broadcast ends, or the sink fails. It
// starts at the group being sent now: what the relay still holds from
// before is not live. When the relay or the publisher goes
// away it waits for the broadcast to come back and goes on (unless
// --reconnect=false). It fails when nothing was sent.
func sendLive(ctx context.Context, url, path string, duration, wait time.Duration, dial *dialFlags, out liveSink) error {
	opts, err := dial.options()
	if err != nil {
		return err
	}
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	began := time.Now()
	client, consume, err := connectConsumer(ctx, url, path, duration, opts)
	if client == nil {
		return err
	}
	defer consume.Close()
	defer client.Close()
	defer func() {
		_, attrs := out.stats()
		slog.Info(out.command+": done", attrs...)
	}()
	nothing := func(why string) error {
		if frames, _ := out.stats(); frames > 0 {
			return nil
		}
		return fmt.Errorf("nothing was sent to %s: %s", out.dest, why)
	}
	for first := true; ; first = false {
		b, err := nextBroadcast(ctx, client, consume, path, first, wait, began, nothing)
		if b == nil {
			return err
		}
		err = sdk.RunSinkFrom(ctx, b, path, out.sink, moq.FromLatest)
		switch {
		case ctx.Err() != nil:
			return nothing(out.stopped)
		case errors.Is(err, out.lost):
			if !dial.reconnect {
				return fmt.Errorf("lost broadcast %q after %s: %w", path, time.Since(began).Round(time.Second), explain(err))
			}
			slog.Warn("lost the broadcast; waiting for it to come back", "broadcast", path, "err", explain(err))
		case err != nil && out.failed != nil:
			return out.failed(err)
		case err != nil:
			return err
		default:
			return nothing("the broadcast ended before anything could be sent")
		}
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/pipelines/builtin"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtp"
)

// rtpFlags are serve's RTP ingest options: each --rtp-sdp session
// description is received into the relay as the broadcast at the
// --rtp-path given with it, in order.
type rtpFlags struct {
	sdpFiles      []string
	paths         []string
	listens       []string // per SDP: comma-separated overrides, one per m= line
	timeout       time.Duration
	reorderWindow time.Duration

	ingests []*rtpIngest // made by open
}

// rtpIngest is one SDP received into one broadcast.
type rtpIngest struct {
	file, path string
	src        *builtin.RTPSourceAdapter
	timeout    time.Duration
}

func (r *rtpFlags) register(f *pflag.FlagSet) {
	f.StringArrayVar(&r.sdpFiles, "rtp-sdp", nil, "also ingest the RTP media this session description (SDP) announces, e.g. ffmpeg's -sdp_file, as the broadcast --rtp-path; repeatable, each with its --rtp-path")
	f.StringArrayVar(&r.paths, "rtp-path", nil, "broadcast path of the --rtp-sdp of the same position (live/cam)")
	f.StringArrayVar(&r.listens, "rtp-listen", nil, "where the media of the --rtp-sdp of the same position are received instead of the SDP's addresses: HOST:PORT (or HOST) per m= line, comma-separated; RTCP on each port + 1")
	f.DurationVar(&r.timeout, "rtp-timeout", rtp.DefaultTimeout, "an RTP sender silent this long ends its broadcast; the ingest then waits for it on the same ports, and it publishes again when it returns")
	f.DurationVar(&r.reorderWindow, "rtp-reorder-window", rtp.DefaultReorderWindow, "how long a packet after a gap waits for the missing ones before they count as lost")
}

// enabled reports whether any RTP ingest was asked for.
func (r *rtpFlags) enabled() bool { return len(r.sdpFiles) > 0 }

// check reports flags that make no sense together, before anything
// listens.
func (r *rtpFlags) check(f *pflag.FlagSet) error {
	if !r.enabled() {
		for _, name := range []string{"rtp-path", "rtp-listen", "rtp-timeout", "rtp-reorder-window"} {
			if f.Changed(name) {
				return fmt.Errorf("--%s needs --rtp-sdp FILE", name)
			}
		}
		return nil
	}
	if len(r.paths) != len(r.sdpFiles) {
		return fmt.Errorf("%d --rtp-sdp and %d --rtp-path: give each session description the path of its broadcast (--rtp-sdp cam.sdp --rtp-path live/cam)", len(r.sdpFiles), len(r.paths))
	}
	if len(r.listens) > len(r.sdpFiles) {
		return fmt.Errorf("%d --rtp-listen for %d --rtp-sdp: one comma-separated list per session description", len(r.listens), len(r.sdpFiles))
	}
	seen := map[string]bool{}
	for _, p := range r.paths {
		clean := moq.CleanPath(p)
		if err := moq.ValidatePath(clean); err != nil || clean == "" {
			return fmt.Errorf("--rtp-path %q: not a broadcast path: %v", p, err)
		}
		if seen[clean] {
			return fmt.Errorf("--rtp-path %q is given twice", p)
		}
		seen[clean] = true
	}
	if r.timeout <= 0 {
		return fmt.Errorf("--rtp-timeout must be positive, got %v", r.timeout)
	}
	if r.reorderWindow <= 0 {
		return fmt.Errorf("--rtp-reorder-window must be positive, got %v", r.reorderWindow)
	}
	return nil
}

// open parses every session description and opens its sockets, so that
// a description the ingest cannot take, or a port in use, stops serve
// before it serves. After an error nothing is left open.
func (r *rtpFlags) open(log *slog.Logger) error {
	for i, file := range r.sdpFiles {
		opts := &builtin.RTPSourceOptions{SDPFile: file, ReorderWindow: r.reorderWindow, Timeout: r.timeout, TrackWait: rtp.DefaultTrackWait}
		if i < len(r.listens) && r.listens[i] != "" {
			opts.Listen = strings.Split(r.listens[i], ",")
		}
		path := moq.CleanPath(r.paths[i])
		src, err := builtin.NewRTPSource(pipelines.SourceEnv{Path: path, Logger: log.With("rtp", file, "path", path)}, opts)
		if err != nil {
			r.close()
			return rtpFlagError(file, err)
		}
		if err := src.Source().Listen(); err != nil {
			r.close()
			return fmt.Errorf("--rtp-sdp %s: %w", file, err)
		}
		r.ingests = append(r.ingests, &rtpIngest{file: file, path: path, src: src, timeout: r.timeout})
	}
	return nil
}

// rtpFlagError names the flag of an option the source refused.
func rtpFlagError(file string, err error) error {
	var fe *pipelines.FieldError
	if !errors.As(err, &fe) {
		return fmt.Errorf("--rtp-sdp %s: %w", file, err)
	}
	switch {
	case fe.Field == "sdp_file":
		return fmt.Errorf("--rtp-sdp: %w", fe.Err)
	case strings.HasPrefix(fe.Field, "listen"):
		return fmt.Errorf("--rtp-listen of %s: %w", file, fe.Err)
	}
	return fmt.Errorf("--rtp-sdp %s: %s: %w", file, fe.Field, fe.Err)
}

// close closes the sockets open still opened.
func (r *rtpFlags) close() {
	for _, in := range r.ingests {
		_ = in.src.Source().Close()
	}
}

// parts returns a function per ingest that publishes it into origin until
// ctx ends: a sender that went silent (a transient error) is waited for
// again on the same ports after a backoff; a permanent error ends it.
func (r *rtpFlags) parts(origin *moq.Origin, log *slog.Logger) []func(context.Context) error {
	var out []func(context.Context) error
	for _, in := range r.ingests {
		out = append(out, func(ctx context.Context) error { return in.run(ctx, origin, log.With("rtp", in.file, "path", in.path)) })
	}
	return out
}

// run publishes the ingest at its path, again after every transient end:
// at once after a sender went silent (sdk.ErrInputIdle, which comes a
// timeout after the last packet), so that the ports are open again when
// it returns; after a backoff when the run failed otherwise (a port
// taken, say).
func (in *rtpIngest) run(ctx context.Context, origin *moq.Origin, log *slog.Logger) error {
	defer in.src.Source().Close()
	backoff := sdk.DefaultBackoff
	attempt := 0
	for {
		err := sdk.Publish(ctx, origin, in.path, in.src, sdk.PublishOptions{
			Published: func(path string) { log.Info("rtp: broadcast live", "path", path) },
		})
		if ctx.Err() != nil {
			return nil
		}
		if sdk.IsPermanent(err) {
			return fmt.Errorf("rtp ingest %s → %s: %w", in.file, in.path, err)
		}
		if errors.Is(err, sdk.ErrInputIdle) {
			log.Info("rtp: broadcast ended; waiting for the sender again", "err", err)
			attempt = 0
			continue
		}
		wait := backoff.Wait(attempt)
		attempt++
		log.Warn("rtp: ingest failed; restarting", "err", err, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// printInfo tells the operator where each ingest receives.
func (r *rtpFlags) printInfo(out io.Writer) {
	for _, in := range r.ingests {
		fmt.Fprintf(out, "RTP ingest of %s is published as the broadcast %s\n", in.file, in.path)
		medias := in.src.Source().Session().Medias
		for i, a := range in.src.Source().Addrs() {
			fmt.Fprintf(out, "  %s: udp %s, RTCP %d\n", medias[i].Describe(), a.RTP, a.RTCP.Port())
		}
	}
	if len(r.ingests) > 0 {
		fmt.Fprintf(out, "  a sender silent for %v ends its broadcast; it publishes again when it returns\n", r.timeout)
	}
}

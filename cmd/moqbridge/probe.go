package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

func newProbeCommand() *cobra.Command {
	var (
		prefix      string
		duration    time.Duration
		connectTime time.Duration
		asJSON      bool
		dial        dialFlags
	)
	cmd := &cobra.Command{
		Use:   "probe [--prefix P] [--duration D] [--json] URL [BROADCAST…]",
		Short: "Connect to a MOQ relay and report its version, transport, broadcasts, their tracks and measured bitrates",
		Long: `probe connects to a MOQ Lite relay and reports the negotiated version and
transport, the broadcasts it announces (under --prefix), and for each of them
(or only those named) the tracks of its catalog: codec, resolution, frame rate,
sample rate and channels. It then reads every track for --duration and
reports the measured bitrate, group rate and frame rate.

It exits with a non-zero status when the relay cannot be reached, refuses the
connection, or a named broadcast is not there.`,
		Example: `  moqbridge probe http://localhost:4443/
  moqbridge probe --fingerprint <hex> moql://relay.example:4443 live/cam
  moqbridge probe --prefix live --duration 5s --json https://relay.example/`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("probe needs URL, got no argument (see \"moqbridge probe --help\")")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			url, named := args[0], args[1:]
			if err := notNegative("duration", duration); err != nil {
				return err
			}
			if connectTime <= 0 {
				return fmt.Errorf("--connect-timeout %s: must be positive", connectTime)
			}
			if err := checkURL(url); err != nil {
				return err
			}
			for _, p := range named {
				if err := moq.ValidatePath(moq.CleanPath(p)); err != nil {
					return fmt.Errorf("broadcast %q: %w", p, err)
				}
			}
			opts, err := dial.options()
			if err != nil {
				return err
			}
			report, err := probe(cmd.Context(), url, moq.CleanPath(prefix), named, duration, connectTime, opts)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else {
				report.writeText(cmd.OutOrStdout())
			}
			return report.missing()
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", "", "report only the broadcasts under this path prefix")
	f.DurationVar(&duration, "duration", 3*time.Second, "how long to measure each track's bitrate and group rate (0: do not measure)")
	f.DurationVar(&connectTime, "connect-timeout", maxDialTime, "how long to wait for the relay to answer")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	dial.register(f)
	return cmd
}

// probeReport is what probe found: its JSON form is the --json output.
type probeReport struct {
	URL        string           `json:"url"`
	Version    string           `json:"version"`
	Transport  string           `json:"transport"`
	Prefix     string           `json:"prefix"`
	Announced  []string         `json:"announced"`
	Broadcasts []probeBroadcast `json:"broadcasts"`
	// Measured is how long each track was read, in seconds.
	Measured float64 `json:"measured_seconds"`
}

// probeBroadcast is one broadcast probed.
type probeBroadcast struct {
	Path   string       `json:"path"`
	Error  string       `json:"error,omitempty"`
	Tracks []probeTrack `json:"tracks"`
	found  bool
}

// probeTrack is one track of a broadcast's catalog, with what was measured.
type probeTrack struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind"`
	Codec      string  `json:"codec"`
	Container  string  `json:"container"`
	Width      int     `json:"width,omitempty"`
	Height     int     `json:"height,omitempty"`
	Framerate  float64 `json:"framerate,omitempty"`
	SampleRate int     `json:"sample_rate,omitempty"`
	Channels   int     `json:"channels,omitempty"`
	// CatalogBitrate is the bitrate the catalog declares (bits/s).
	CatalogBitrate int `json:"catalog_bitrate,omitempty"`
	// Measured over the report's measured_seconds.
	Bitrate      float64 `json:"bitrate"`
	GroupRate    float64 `json:"groups_per_second"`
	FrameRate    float64 `json:"frames_per_second"`
	Bytes        int64   `json:"bytes"`
	Groups       int64   `json:"groups"`
	Frames       int64   `json:"frames"`
	MeasureError string  `json:"measure_error,omitempty"`
}

// catalogWait bounds how long probe waits for a broadcast's catalog, and
// for a named broadcast to be announced.
const catalogWait = 5 * time.Second

// probe connects to the relay at url and builds the report.
func probe(ctx context.Context, url, prefix string, named []string, duration, connectTime time.Duration, opts []protocol.DialOption) (*probeReport, error) {
	consume := moq.NewOrigin()
	defer consume.Close()
	dialCtx, cancel := context.WithTimeout(ctx, connectTime)
	defer cancel()
	// The relay announces what is under the prefix, and the broadcasts
	// named wherever they are; interests must not overlap, or the relay
	// announces a broadcast twice and the second replaces the first.
	interest := []string{prefix}
	wanted := slices.Clone(named)
	slices.SortFunc(wanted, func(a, b string) int { return len(a) - len(b) }) // "live" before "live/a"
	for _, p := range wanted {
		p = moq.CleanPath(p)
		if !slices.ContainsFunc(interest, func(q string) bool { return moq.HasPathPrefix(p, q) }) {
			interest = append(interest, p)
		}
	}
	sess, err := protocol.Dial(dialCtx, url, append(opts, protocol.WithConsume(consume), protocol.WithAnnounceInterest(interest...),
		protocol.WithLogger(slog.Default()))...)
	if err != nil {
		return nil, explainProbeDial(ctx, dialCtx, url, connectTime, err)
	}
	defer sess.Close()
	report := &probeReport{URL: url, Version: sess.Version().String(), Transport: sess.Transport(), Prefix: prefix, Announced: []string{}}
	report.Announced = announcedNow(ctx, consume, prefix)
	paths := report.Announced
	if len(named) > 0 {
		paths = nil
		for _, p := range named {
			paths = append(paths, moq.CleanPath(p))
		}
	}
	report.Broadcasts = make([]probeBroadcast, len(paths))
	readers := make([]*sdk.BroadcastReader, len(paths))
	defer func() {
		for _, r := range readers {
			if r != nil {
				r.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	for i, path := range paths {
		wg.Go(func() { readers[i] = describe(ctx, consume, path, &report.Broadcasts[i]) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if duration > 0 {
		measureCtx, stop := context.WithTimeout(ctx, duration)
		defer stop()
		started := time.Now()
		for i, r := range readers {
			for j := range report.Broadcasts[i].Tracks {
				if r == nil {
					continue
				}
				b, _ := consume.Consume(paths[i])
				wg.Go(func() { measure(measureCtx, b, &report.Broadcasts[i].Tracks[j], started, duration) })
			}
		}
		wg.Wait()
		report.Measured = duration.Seconds()
	}
	return report, nil
}

// explainProbeDial says why the relay could not be reached.
func explainProbeDial(ctx, dialCtx context.Context, url string, limit time.Duration, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(dialCtx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("could not reach the relay at %s within %s: is it running, and is the address right?", url, limit)
	case protocol.IsCertificateError(err):
		return explainDialError(url, err)
	case protocol.Permanent(err):
		return fmt.Errorf("the relay at %s refused the connection: %w (a token goes into the URL as ?jwt=TOKEN)", url, err)
	}
	return fmt.Errorf("could not connect to the relay at %s: %w", url, err)
}

// announcedNow collects the broadcasts the relay announces under prefix
// within nowGrace: what is live now arrives within a round trip.
func announcedNow(ctx context.Context, consume *moq.Origin, prefix string) []string {
	ann := consume.Announced(prefix)
	defer ann.Close()
	waitCtx, cancel := context.WithTimeout(ctx, nowGrace)
	defer cancel()
	live := map[string]bool{}
	for {
		a, err := ann.Next(waitCtx)
		if err != nil {
			break
		}
		live[a.Path] = a.Active
	}
	out := []string{}
	for p, active := range live {
		if active {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// describe fills pb with the tracks of the catalog of the broadcast at
// path and returns its reader (nil when there is none).
func describe(ctx context.Context, consume *moq.Origin, path string, pb *probeBroadcast) *sdk.BroadcastReader {
	pb.Path, pb.Tracks = path, []probeTrack{}
	b, err := sdk.WaitBroadcast(ctx, consume, path, catalogWait)
	if err != nil {
		pb.Error = "not announced by the relay"
		return nil
	}
	pb.found = true
	r, err := sdk.NewBroadcastReader(b)
	if err != nil {
		pb.Error = err.Error()
		return nil
	}
	waitCtx, cancel := context.WithTimeout(ctx, catalogWait)
	defer cancel()
	if err := r.WaitCatalog(waitCtx); err != nil {
		pb.Error = fmt.Sprintf("no catalog within %s: %v", catalogWait, err)
		return r
	}
	for _, t := range r.Tracks() {
		container := string(t.Container)
		if container == "" {
			container = string(sdk.ContainerLegacy)
		}
		pb.Tracks = append(pb.Tracks, probeTrack{
			Name: t.Name, Kind: t.Kind.String(), Codec: t.Codec, Container: container,
			Width: t.Width, Height: t.Height, Framerate: t.Framerate,
			SampleRate: t.SampleRate, Channels: t.Channels, CatalogBitrate: t.Bitrate,
		})
	}
	return r
}

// measure reads track pt of b until ctx ends and fills in its rates. The
// first group is the one in progress, whose earlier frames arrive at once:
// the rates count from the start of the next group when one starts in
// time, so that this burst does not inflate them.
func measure(ctx context.Context, b *moq.BroadcastReader, pt *probeTrack, started time.Time, duration time.Duration) {
	if b == nil {
		return
	}
	tr, err := b.Subscribe(pt.Name, 0)
	if err != nil {
		pt.MeasureError = err.Error()
		return
	}
	defer tr.Close()
	var (
		all, fromSecond struct{ bytes, frames, groups int64 }
		second          time.Time
	)
	for n := 0; ; n++ {
		g, err := tr.NextGroup(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				pt.MeasureError = err.Error()
			}
			break
		}
		if n == 1 {
			second = time.Now()
		}
		all.groups++
		if n >= 1 {
			fromSecond.groups++
		}
		for {
			f, err := g.NextFrame(ctx)
			if err != nil {
				break
			}
			all.bytes += int64(len(f))
			all.frames++
			if n >= 1 {
				fromSecond.bytes += int64(len(f))
				fromSecond.frames++
			}
		}
		g.Close()
		if ctx.Err() != nil {
			break
		}
	}
	pt.Bytes, pt.Frames, pt.Groups = all.bytes, all.frames, all.groups
	span := duration.Seconds()
	counted := all
	if !second.IsZero() {
		if s := started.Add(duration).Sub(second).Seconds(); s > 0.5 {
			span, counted = s, fromSecond
		}
	}
	pt.Bitrate = float64(counted.bytes) * 8 / span
	pt.GroupRate = float64(counted.groups) / span
	pt.FrameRate = float64(counted.frames) / span
}

// missing fails when a named broadcast was not there.
func (r *probeReport) missing() error {
	var gone []string
	for _, b := range r.Broadcasts {
		if !b.found {
			gone = append(gone, b.Path)
		}
	}
	if len(gone) > 0 {
		return fmt.Errorf("not on the relay: %s", strings.Join(gone, ", "))
	}
	return nil
}

// writeText prints the report for people.
func (r *probeReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "relay      %s\n", r.URL)
	fmt.Fprintf(w, "version    %s over %s\n", r.Version, r.Transport)
	under := ""
	if r.Prefix != "" {
		under = fmt.Sprintf(" under %q", r.Prefix)
	}
	fmt.Fprintf(w, "announced  %d broadcast%s%s\n", len(r.Announced), plural(len(r.Announced)), under)
	for _, p := range r.Announced {
		fmt.Fprintf(w, "  %s\n", p)
	}
	for _, b := range r.Broadcasts {
		fmt.Fprintf(w, "\nbroadcast %s\n", b.Path)
		if b.Error != "" {
			fmt.Fprintf(w, "  %s\n", b.Error)
		}
		if len(b.Tracks) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  TRACK\tKIND\tCODEC\tFORMAT\tBITRATE\tGROUPS/S\tFRAMES/S")
		for _, t := range b.Tracks {
			measured := [3]string{"-", "-", "-"}
			switch {
			case t.MeasureError != "":
				measured[0] = "error: " + t.MeasureError
			case r.Measured > 0:
				measured = [3]string{formatBitrate(t.Bitrate), fmt.Sprintf("%.2f", t.GroupRate), fmt.Sprintf("%.1f", t.FrameRate)}
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Kind, t.Codec, t.format(), measured[0], measured[1], measured[2])
		}
		_ = tw.Flush()
	}
	if r.Measured > 0 {
		fmt.Fprintf(w, "\nmeasured over %s\n", time.Duration(r.Measured*float64(time.Second)))
	}
}

// format describes a track's picture or sound.
func (t probeTrack) format() string {
	var parts []string
	if t.Width > 0 && t.Height > 0 {
		parts = append(parts, fmt.Sprintf("%dx%d", t.Width, t.Height))
	}
	if t.Framerate > 0 {
		parts = append(parts, fmt.Sprintf("%g fps", t.Framerate))
	}
	if t.SampleRate > 0 {
		parts = append(parts, fmt.Sprintf("%d Hz", t.SampleRate))
	}
	if t.Channels > 0 {
		parts = append(parts, fmt.Sprintf("%d ch", t.Channels))
	}
	if t.Container != string(sdk.ContainerLegacy) {
		parts = append(parts, t.Container)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// formatBitrate writes bits per second in kb/s or Mb/s.
func formatBitrate(bps float64) string {
	if bps >= 1e6 {
		return fmt.Sprintf("%.2f Mb/s", bps/1e6)
	}
	return fmt.Sprintf("%.0f kb/s", bps/1e3)
}

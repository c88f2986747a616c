package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/fmp4"
	"github.com/moqbridge/moqbridge/sources/rtmp"
)

func newPublishCommand() *cobra.Command {
	var (
		broadcast  string
		loop, fast bool
		dial       dialFlags
	)
	cmd := &cobra.Command{
		Use:   "publish [--broadcast PATH] [--loop] [--fast] INPUT URL",
		Short: "Publish an MP4 file (fragmented or progressive), an fMP4 stream on stdin (-) or a remote RTMP stream to a MOQ relay",
		Example: `  moqbridge publish --fingerprint <hex> clip.mp4 https://localhost:4443/
  ffmpeg -re -i in.mp4 -c copy -movflags cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame -f mp4 - \
    | moqbridge publish --broadcast live/cam - moql://localhost:4443
  moqbridge publish rtmp://encoder.example/live/cam https://relay.example/
      # plays the RTMP stream (reconnecting when it drops) as the broadcast live/cam`,
		Args: needArgs("INPUT", "URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			input, url := args[0], args[1]
			if broadcast == "" {
				broadcast = defaultBroadcastName(input)
			}
			opts, err := dial.options()
			if err != nil {
				return err
			}
			if err := checkURL(url); err != nil {
				return err
			}
			if isRTMP(input) {
				if loop || fast {
					return errors.New("--loop and --fast are for files, not an RTMP input")
				}
				src, err := rtmp.NewPull(rtmp.PullConfig{URL: input, Logger: slog.Default()})
				if err != nil {
					return err
				}
				return publish(cmd.Context(), src, broadcast, url, dial.reconnect, opts)
			}
			if input != "-" {
				if err := checkMP4(input); err != nil {
					return err
				}
			}
			src, closeBar, err := openSource(input, fmp4.Options{Fast: fast, Loop: loop}, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeBar()
			return publish(cmd.Context(), src, broadcast, url, dial.reconnect, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&broadcast, "broadcast", "", "broadcast path (default: the input file name without extension, or \"live\" for stdin)")
	f.BoolVar(&loop, "loop", false, "loop a file forever, keeping timestamps and group sequences continuous")
	f.BoolVar(&fast, "fast", false, "send as fast as possible instead of in real time")
	dial.register(f)
	return cmd
}

// isRTMP reports whether INPUT is an RTMP URL to play.
func isRTMP(input string) bool {
	return strings.HasPrefix(input, "rtmp://") || strings.HasPrefix(input, "rtmps://")
}

// defaultBroadcastName names a broadcast after its input file, or an RTMP
// input after its application and stream key (rtmp://host/live/cam:
// live/cam).
func defaultBroadcastName(input string) string {
	if input == "-" {
		return "live"
	}
	if isRTMP(input) {
		if u, err := neturl.Parse(input); err == nil {
			return moq.CleanPath(u.Path)
		}
	}
	return strings.TrimSuffix(filepath.Base(input), filepath.Ext(input))
}

// openSource opens INPUT, with a progress bar on stderr for files when it
// is a terminal.
func openSource(input string, opt fmp4.Options, stderr io.Writer) (*fmp4.Source, func(), error) {
	closeBar := func() {}
	if input == "-" {
		return fmp4.New(os.Stdin, opt), closeBar, nil
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(filepath.Base(input)), progressbar.OptionShowBytes(true))
		opt.Progress = func(read, total int64) {
			if total > 0 && bar.GetMax64() != total {
				bar.ChangeMax64(total)
			}
			_ = bar.Set64(read)
		}
		closeBar = func() { _ = bar.Finish() }
	}
	src, err := fmp4.Open(input, opt)
	if err != nil {
		return nil, nil, err
	}
	return src, closeBar, nil
}

// publish runs src into a broadcast at path and serves it to the relay at
// url until the input ends or ctx is cancelled. The broadcast enters the
// origin, and so is announced to the relay, only once its catalog is
// written: a subscriber reacting at once to the announcement finds
// catalog.json. When the relay goes away the source keeps running and the
// client reconnects (unless --reconnect=false): the relay gets the same
// broadcast again, with group sequences going on where they were.
func publish(ctx context.Context, src sdk.Source, path, url string, reconnect bool, opts []protocol.DialOption) error {
	if err := moq.ValidatePath(path); err != nil {
		return fmt.Errorf("--broadcast %q: %w", path, err)
	}
	origin := moq.NewOrigin()
	defer origin.Close()
	// others mirrors what the relay announces at path: another publisher's
	// broadcast there means this one waits as its backup.
	others := moq.NewOrigin()
	defer others.Close()
	client, err := connectRelay(ctx, url, 0, append(opts, protocol.WithPublish(origin), protocol.WithConsume(others),
		protocol.WithAnnounceInterest(path), protocol.WithLogger(slog.Default())))
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	defer client.Close()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The source ends when the input does or when ctx does (Ctrl-C: not
	// an error); sdk.Publish puts the broadcast into origin once its
	// catalog is written, and takes it out when the source is done.
	published := make(chan struct{})
	ran := make(chan struct{})
	var srcErr error
	go func() {
		defer close(ran)
		srcErr = sdk.Publish(runCtx, origin, path, src, sdk.PublishOptions{Published: func(string) { close(published) }})
	}()
	// Whatever ends publish, the source stops and its broadcast ends
	// (its tracks FIN to the relay) before the connection closes.
	defer func() {
		cancel()
		<-ran
	}()
	select {
	case <-published:
	case <-ran:
		return srcErr
	}
	go reportBackup(runCtx, client, others, path)

	// Each session, the first and every one after a reconnection, must be
	// one the relay takes the broadcast on.
	var sess *protocol.Session
	for {
		next, changed := client.Session()
		if next != sess && next != nil {
			sess = next
			if err := sess.WaitWanted(runCtx, path); err != nil {
				if errors.Is(err, protocol.ErrNotWanted) {
					return refusedPublish(path, err)
				}
				if runCtx.Err() != nil {
					return nil
				}
				continue // the session ended meanwhile
			}
			slog.Info("publishing", "broadcast", path, "url", url, "version", sess.Version().String())
		}
		select {
		case <-ran:
			return srcErr
		case <-client.Done():
			return lostRelay(url, client)
		case <-changed:
			if s, _ := client.Session(); s == nil && !reconnect {
				return sessionEnded(sess.Err())
			}
		}
	}
}

// sessionEnded explains why the relay session ended.
func sessionEnded(err error) error {
	if e := explain(err); e == errRelayShutDown {
		return e
	}
	return fmt.Errorf("relay session ended: %w", err)
}

// refusedPublish explains a relay that does not ask for the broadcast.
func refusedPublish(path string, err error) error {
	_, asked, _ := strings.Cut(err.Error(), ": it asks ")
	return fmt.Errorf("the relay does not accept a broadcast at %q: it asks %s; a token's put claim decides where a client may publish", path, asked)
}

// reportBackup logs when another publisher's broadcast is live at path on
// the relay, so that this one waits as its backup, and when that ends.
func reportBackup(ctx context.Context, client *protocol.Client, others *moq.Origin, path string) {
	ann := others.Announced(path)
	defer ann.Close()
	backup := false
	for {
		a, err := ann.Next(ctx)
		if err != nil {
			return
		}
		if a.Path != path || a.Active == backup {
			continue
		}
		if s, _ := client.Session(); !a.Active && (s == nil || s.Err() != nil) {
			// The relay connection ended, not the other publisher.
			backup = false
			continue
		}
		backup = a.Active
		if backup {
			slog.Warn("another publisher is live at this path: this one waits as its backup and goes live when that one ends", "broadcast", path)
		} else {
			slog.Info("the publisher live at this path ended: this one is live now", "broadcast", path)
		}
	}
}

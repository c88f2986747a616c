package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/internal/rtmpurl"
	"github.com/moqbridge/moqbridge/sdk"
	rtmpsink "github.com/moqbridge/moqbridge/sinks/rtmp"
)

func newRestreamCommand() *cobra.Command {
	var (
		cfg      rtmpsink.Config
		duration time.Duration
		wait     = waitFlag{d: -1}
		insecure bool
		dial     dialFlags
	)
	cmd := &cobra.Command{
		Use:   "restream [--wait D] [--duration D] URL BROADCAST RTMP_URL",
		Short: "Push a MOQ broadcast to an RTMP server (YouTube, Twitch, any RTMP server)",
		Long: `restream subscribes to BROADCAST on the relay at URL and publishes it to
RTMP_URL (rtmp:// or rtmps://), the way an encoder would: one video and one
audio track, H.264 and AAC as legacy FLV, H.265, AV1, VP9 and Opus as
Enhanced RTMP. The stream key is the last part of RTMP_URL; it is never
logged.

When the RTMP server goes away or refuses, restream retries with backoff
(--rtmp-reconnect-min, --rtmp-reconnect-max, --rtmp-give-up) and starts
again at a keyframe; a server that is too slow loses whole GOPs rather than
holding up the broadcast. When the relay goes away, restream reconnects to
it (--reconnect) and goes on once the broadcast is back.

It exits 0 after Ctrl-C, --duration or the end of the broadcast if it sent
anything, and with an error when nothing could be sent, when the broadcast
was lost with --reconnect=false, or after --rtmp-give-up.`,
		Example: `  # YouTube: the stream URL and key from YouTube Studio
  moqbridge restream --fingerprint <hex> https://relay.example.com:4443/ live/cam rtmp://a.rtmp.youtube.com/live2/xxxx-xxxx-xxxx-xxxx

  # Twitch, over RTMPS
  moqbridge restream http://localhost:4443/ live/cam rtmps://live.twitch.tv/app/live_123456_abcdef

  # a local ffmpeg receiving into a file (ffmpeg 5.1 reads H.264 and AAC only)
  ffmpeg -listen 1 -i rtmp://127.0.0.1:1935/live/test -c copy out.mp4 &
  moqbridge restream http://localhost:4443/ live/cam rtmp://127.0.0.1:1935/live/test`,
		Args: needArgs("URL", "BROADCAST", "RTMP_URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			url, path, rtmpURL := args[0], args[1], args[2]
			for _, c := range []struct {
				flag string
				d    time.Duration
			}{{"duration", duration}, {"rtmp-give-up", cfg.Backoff.GiveUpAfter}, {"rtmp-queue", cfg.MaxQueueDelay}} {
				if err := notNegative(c.flag, c.d); err != nil {
					return err
				}
			}
			if cfg.Backoff.Min <= 0 || cfg.Backoff.Max < cfg.Backoff.Min {
				return fmt.Errorf("--rtmp-reconnect-min %s and --rtmp-reconnect-max %s: want 0 < min <= max", cfg.Backoff.Min, cfg.Backoff.Max)
			}
			if err := checkURL(url); err != nil {
				return err
			}
			cfg.URL = rtmpURL
			if insecure {
				cfg.TLSConfig = &tls.Config{InsecureSkipVerify: true}
			}
			cfg.Logger = slog.Default()
			sink, err := rtmpsink.New(cfg)
			if err != nil {
				return fmt.Errorf("%w (RTMP_URL, e.g. rtmp://a.rtmp.youtube.com/live2/STREAM-KEY)", err)
			}
			return restream(cmd.Context(), url, path, rtmpURL, duration, wait.d, &dial, sink)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: until the broadcast ends or Ctrl-C)")
	f.Var(&wait, "wait", "how long to wait for the broadcast to appear on the relay: a duration, or 0 to fail at once if it is not there")
	f.StringVar(&cfg.Video, "video", "", "the video track to send (default: the one with the most pixels)")
	f.StringVar(&cfg.Audio, "audio", "", "the audio track to send (default: the first AAC, else Opus, track)")
	f.BoolVar(&insecure, "rtmp-insecure", false, "rtmps: skip the server's certificate verification (development only)")
	f.DurationVar(&cfg.Backoff.Min, "rtmp-reconnect-min", sdk.DefaultBackoff.Min, "first wait before reconnecting to the RTMP server; it doubles at each failure")
	f.DurationVar(&cfg.Backoff.Max, "rtmp-reconnect-max", sdk.DefaultBackoff.Max, "longest wait between two attempts to reconnect to the RTMP server")
	f.DurationVar(&cfg.Backoff.GiveUpAfter, "rtmp-give-up", 0, "exit with an error once the RTMP server has been unreachable this long (0: never)")
	f.DurationVar(&cfg.MaxQueueDelay, "rtmp-queue", rtmpsink.DefaultMaxQueueDelay, "how much media may wait for a slow RTMP server before whole GOPs are dropped")
	dial.register(f)
	return cmd
}

// restream publishes the broadcast at path, found through the relay at
// url, to the RTMP server with sink (see sendLive); it gives up as the
// sink does (--rtmp-give-up).
func restream(ctx context.Context, url, path, rtmpURL string, duration, wait time.Duration, dial *dialFlags, sink *rtmpsink.Sink) error {
	dest := rtmpurl.Redact(rtmpURL)
	return sendLive(ctx, url, path, duration, wait, dial, liveSink{
		command: "restream",
		sink:    sink,
		lost:    rtmpsink.ErrSourceLost,
		dest:    dest,
		stopped: "the RTMP server did not take the broadcast (see the log)",
		stats: func() (uint64, []any) {
			st := sink.Stats()
			return st.Frames, []any{"frames", st.Frames, "bytes", st.Bytes, "connections", st.Connections,
				"dropped_gops", st.DroppedGOPs, "unsent", st.Unsent}
		},
		failed: func(err error) error {
			if errors.Is(err, rtmpsink.ErrGaveUp) {
				return fmt.Errorf("%s: %w (--rtmp-give-up)", dest, err)
			}
			return err
		},
	})
}

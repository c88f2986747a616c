package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	rtpsink "github.com/moqbridge/moqbridge/sinks/rtp"
)

func newRTPOutCommand() *cobra.Command {
	var (
		cfg      rtpsink.Config
		duration time.Duration
		wait     = waitFlag{d: -1}
		dial     dialFlags
	)
	cmd := &cobra.Command{
		Use:   "rtp-out [flags] URL BROADCAST --dest HOST:PORT [--sdp FILE]",
		Short: "Send a MOQ broadcast as RTP (unicast or multicast) with an SDP for ffplay, ffmpeg, GStreamer or VLC",
		Long: `rtp-out subscribes to BROADCAST on the relay at URL and sends it as RTP over
UDP to --dest HOST:PORT: one video and one audio track (H.264, H.265, AV1,
VP8, VP9; Opus, AAC, G.711), the video to PORT, the audio to PORT+2, the
RTCP sender reports of each to its port + 1. HOST may be a unicast or
multicast address, IPv4 or IPv6 (--ttl for multicast). URL and BROADCAST
may come in either order: the one with "://" is the relay.

The session description (SDP) a receiver opens is written to --sdp FILE
(atomically) or, with --sdp - or no --sdp, printed on stdout, as soon as
the tracks are known and before the first packet. Start the receiver with
it: it starts decoding at the next keyframe, which carries its parameter
sets.

Frames are paced in real time, a keyframe's packets spread out, and no
datagram is larger than --mtu. When rtp-out stays behind by more than
--max-delay (for 3 s: a source may deliver a GOP at a time) it skips to
the latest keyframe rather than sending a burst.
When the relay goes away, rtp-out reconnects to it (--reconnect) and goes
on once the broadcast is back.

It exits 0 after Ctrl-C, --duration or the end of the broadcast if it sent
anything, and with an error when nothing could be sent or the broadcast
was lost with --reconnect=false.`,
		Example: `  # to a player on this machine: rtp-out writes cam.sdp and keeps sending;
  # ffplay, started with it, shows the picture from the next keyframe
  moqbridge rtp-out http://localhost:4443/ live/cam --dest 127.0.0.1:5004 --sdp cam.sdp &
  ffplay -protocol_whitelist file,udp,rtp cam.sdp

  # record what arrives (ffmpeg copies H.264 without B-frames, and Opus or AAC)
  ffmpeg -protocol_whitelist file,udp,rtp -i cam.sdp -c copy cam.mkv

  # multicast on the local network, the SDP on stdout
  moqbridge rtp-out --fingerprint <hex> https://relay.example.com:4443/ live/cam --dest 239.1.1.1:5004 --ttl 4 > cam.sdp

  # GStreamer
  gst-launch-1.0 filesrc location=cam.sdp ! sdpdemux ! decodebin ! autovideosink`,
		Args: needArgs("URL", "BROADCAST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			url, path := relayFirst(args[0], args[1])
			if cfg.Dest == "" {
				return errors.New("rtp-out needs --dest HOST:PORT, where the RTP goes (e.g. --dest 127.0.0.1:5004)")
			}
			for _, c := range []struct {
				flag string
				d    time.Duration
			}{{"duration", duration}, {"max-delay", cfg.MaxDelay}} {
				if err := notNegative(c.flag, c.d); err != nil {
					return err
				}
			}
			if cfg.MTU < rtpsink.MinMTU || cfg.MTU > rtpsink.MaxMTU {
				return fmt.Errorf("--mtu %d: want %d to %d bytes (the largest UDP payload, RTP header included)", cfg.MTU, rtpsink.MinMTU, rtpsink.MaxMTU)
			}
			if cfg.TTL < 1 || cfg.TTL > 255 {
				return fmt.Errorf("--ttl %d: want 1 to 255", cfg.TTL)
			}
			if err := checkURL(url); err != nil {
				return err
			}
			if cfg.SDPFile == "" || cfg.SDPFile == "-" {
				cfg.SDPFile = ""
				out := cmd.OutOrStdout()
				cfg.OnSDP = func(sdp []byte) { _, _ = out.Write(sdp) }
			}
			cfg.Logger = slog.Default()
			sink, err := rtpsink.New(cfg)
			if err != nil {
				return fmt.Errorf("--dest: %w", err)
			}
			return rtpOut(cmd.Context(), url, path, cfg.Dest, duration, wait.d, &dial, sink)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dest, "dest", "", "where the RTP goes: HOST:PORT, unicast or multicast, IPv4 or IPv6 (video at PORT, audio at PORT+2, RTCP at each + 1)")
	f.StringVar(&cfg.SDPFile, "sdp", "-", `where to write the session description for the receiver ("-": stdout)`)
	f.IntVar(&cfg.TTL, "ttl", rtpsink.DefaultTTL, "multicast TTL (IPv4) or hop limit (IPv6)")
	f.IntVar(&cfg.MTU, "mtu", rtpsink.DefaultMTU, "largest UDP payload sent, RTP header included")
	f.StringVar(&cfg.Video, "video", "", "the video track to send (default: the one with the most pixels)")
	f.StringVar(&cfg.Audio, "audio", "", "the audio track to send (default: the first AAC or Opus track)")
	f.DurationVar(&cfg.MaxDelay, "max-delay", rtpsink.DefaultMaxDelay, "how far behind live sending may stay (for 3 s) before it skips to the latest keyframe")
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: until the broadcast ends or Ctrl-C)")
	f.Var(&wait, "wait", "how long to wait for the broadcast to appear on the relay: a duration, or 0 to fail at once if it is not there")
	dial.register(f)
	return cmd
}

// relayFirst returns the relay URL and the broadcast of rtp-out's two
// arguments, which may come in either order: the relay's has a scheme.
func relayFirst(a, b string) (url, path string) {
	if !strings.Contains(a, "://") && strings.Contains(b, "://") {
		return b, a
	}
	return a, b
}

// rtpOut sends the broadcast at path, found through the relay at url, as
// RTP to dest with sink (see sendLive).
func rtpOut(ctx context.Context, url, path, dest string, duration, wait time.Duration, dial *dialFlags, sink *rtpsink.Sink) error {
	return sendLive(ctx, url, path, duration, wait, dial, liveSink{
		command: "rtp-out",
		sink:    sink,
		lost:    rtpsink.ErrSourceLost,
		dest:    dest,
		stopped: "no frame came before the end (see the log)",
		stats: func() (uint64, []any) {
			st := sink.Stats()
			return st.Frames, []any{"frames", st.Frames, "packets", st.Packets, "bytes", st.Bytes,
				"dropped_gops", st.DroppedGOPs, "send_errors", st.SendErrors}
		},
	})
}

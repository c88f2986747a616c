package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version, when set at build time with -ldflags "-X main.version=…",
// replaces the version from the build information.
var version = ""

func newRootCommand() *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:   "moqbridge",
		Short: "MOQ Lite relay with RTMP and RTP ingest, RTMP restream, RTP out, and fMP4 publish and record",
		Long: `moqbridge moves live media over MOQ Lite (Media over QUIC Lite) on QUIC,
WebTransport and WebSocket: a relay (serve), fMP4 files, live fMP4 on stdin
or a remote RTMP stream into a relay (publish), broadcasts from a relay into
fMP4 files (record) and on to RTMP servers such as YouTube or Twitch
(restream) and out as RTP with an SDP (rtp-out); "serve --rtmp" also
ingests RTMP publishers (OBS, ffmpeg) into the relay, and "serve --rtp-sdp"
an RTP sender (a camera, an encoder, ffmpeg) that an SDP describes.

"moqbridge run -c FILE" runs every bridge a YAML file describes (the relay,
RTMP ingest, pipelines from sources to sinks, /metrics) and reloads it when
the file changes; "validate" and "plan" check and explain such a file.

Run without a command, it runs the built-in default configuration (see
"moqbridge plan"): the relay on :4443 with a development certificate, RTMP
ingest on :1935 (rtmp://HOST:1935/live/KEY is the broadcast live/KEY), a
looping demo broadcast at "demo", and /metrics on 127.0.0.1:9090. The
environment variables MOQBRIDGE_LISTEN, MOQBRIDGE_RTMP_LISTEN,
MOQBRIDGE_ADMIN_LISTEN and MOQBRIDGE_LOG_LEVEL change those.`,
		Example: `  moqbridge                                  # the built-in default: relay, RTMP ingest, demo
  MOQBRIDGE_LISTEN=:8443 moqbridge           # the same on another port
  moqbridge run -c moqbridge.yaml            # a configuration of your own
  moqbridge record -o recordings http://localhost:4443/ demo
  moqbridge probe http://localhost:4443/
  source <(moqbridge completion bash)        # shell completion (also zsh, fish, powershell)`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(newServeCommand(), newPublishCommand(), newRecordCommand(), newRestreamCommand(), newTokenCommand(), newVersionCommand())
	root.AddCommand(newRTPOutCommand())
	root.AddCommand(newProbeCommand(), newRunCommand(), newValidateCommand(), newPlanCommand())
	// No command: run the built-in default configuration.
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		return runConfig(cmd, builtinConfig(), runOptions{quickStart: true})
	}
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the moqbridge version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			info, _ := debug.ReadBuildInfo()
			fmt.Fprintln(cmd.OutOrStdout(), versionString(version, info))
		},
	}
}

// versionString is the version line: the -X version if set, else the
// module version ("(devel)" for a build from a checkout), then the VCS
// revision and whether the checkout had changes, when recorded.
func versionString(override string, info *debug.BuildInfo) string {
	v := override
	if v == "" && info != nil {
		v = info.Main.Version
	}
	if v == "" {
		v = "(unknown)"
	}
	parts := []string{"moqbridge", v}
	if info != nil {
		var rev, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			parts = append(parts, "revision", rev)
			if modified == "true" {
				parts = append(parts, "(modified)")
			}
		}
	}
	return strings.Join(parts, " ")
}

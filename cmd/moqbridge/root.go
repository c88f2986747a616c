package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newRootCommand() *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:   "moqbridge",
		Short: "Bridge live media between RTMP, RTP, fMP4 and MOQ Lite",
		Long: `moqbridge moves live media between the protocols people run today and
MOQ Lite (Media over QUIC Lite) over QUIC and WebTransport.

Run without a command, it starts the built-in relay on its defaults
(the same as "moqbridge serve").`,
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
	serve := newServeCommand()
	root.AddCommand(serve, newPublishCommand(), newRecordCommand(), newTokenCommand(), newVersionCommand())
	// No command: run the relay on its defaults.
	root.RunE = serve.RunE
	root.Flags().AddFlagSet(serve.Flags())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the moqbridge version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "moqbridge", version)
		},
	}
}

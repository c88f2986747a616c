package main

import (
	"github.com/spf13/cobra"
)

func newPlanCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "plan -c FILE",
		Short: "Print what a configuration would run: the relay, listeners, and every pipeline's source, paths and sinks",
		Long: `plan reads a configuration file as "moqbridge run" would and prints the
resolved graph, defaults filled in and ${VAR} expanded: the relay (addresses,
TLS, auth), the RTMP listener, the admin address and log settings, then every
pipeline with its source and options, the path or pattern it publishes or
takes, its sinks and its restart policy. Secrets (keys, tokens, passwords,
RTMP stream keys in URLs) are never shown. An invalid file is reported as by
"moqbridge validate". Without -c, it plans the built-in default.`,
		Example: `  moqbridge plan -c moqbridge.yaml
  moqbridge plan        # the built-in default that "moqbridge" runs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src := builtinConfig()
			if file != "" {
				var err error
				if src, err = openConfig(file, cmd.InOrStdin()); err != nil {
					return err
				}
			}
			cfg, _, err := src.load(newRegistry())
			if err != nil {
				return printProblems(cmd, err)
			}
			return cfg.Plan(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "configuration file (YAML); - reads standard input; default: the built-in default")
	return cmd
}

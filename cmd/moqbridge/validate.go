package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// errInvalidConfig is returned once a command printed a configuration's
// problems itself: main prints nothing more but exits with status 1.
var errInvalidConfig = errors.New("invalid configuration")

func newValidateCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate -c FILE",
		Short: "Check a configuration file: every problem with its position, or how many pipelines it holds",
		Long: `validate reads a configuration file as "moqbridge run" would, without
starting anything: the YAML, every key and option, ${VAR} expansion from the
environment, and files the options name. It prints every problem, one per
line on stderr as FILE:LINE:COLUMN: KEY: PROBLEM, and exits with status 1; a
valid file prints "FILE: N pipelines, ok" and exits 0.`,
		Example: `  moqbridge validate -c moqbridge.yaml
  moqbridge validate -c - < moqbridge.yaml
  STREAM_KEY=s3cret moqbridge validate -c moqbridge.yaml && systemctl reload moqbridge`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New(`validate needs -c FILE (see "moqbridge validate --help")`)
			}
			src, err := openConfig(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			cfg, _, err := src.load(newRegistry())
			if err != nil {
				return printProblems(cmd, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d pipeline%s, ok\n", src.name, len(cfg.Pipelines), plural(len(cfg.Pipelines)))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "configuration file (YAML); - reads standard input")
	return cmd
}

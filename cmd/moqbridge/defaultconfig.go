package main

import (
	"crypto/sha256"
	_ "embed" // the built-in default configuration
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/pipelines/builtin"
)

// defaultConfig is default.yaml, what "moqbridge" runs without arguments.
// A string, so that nothing can change it.
//
//go:embed default.yaml
var defaultConfig string

// defaultConfigName names the built-in configuration in positions and
// messages.
const defaultConfigName = "built-in default config"

// newRegistry returns the kinds a configuration may name: every built-in
// one, the demo source included.
func newRegistry() *pipelines.Registry { return builtin.Registry() }

// configSource is where a configuration comes from: a file, which is read
// again on every reload, or text read once (standard input, the built-in
// default).
type configSource struct {
	// name is the file name, or what stands for it in positions.
	name string
	// file is the file to read ("" for text read once).
	file string
	// text is the configuration when file is "".
	text []byte
}

// stdinName names standard input in positions and messages.
const stdinName = "stdin"

// openConfig returns the source of -c file: "-" reads stdin now.
func openConfig(file string, stdin io.Reader) (*configSource, error) {
	if file != "-" {
		return &configSource{name: file, file: file}, nil
	}
	data, err := io.ReadAll(io.LimitReader(stdin, pipelines.MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read the configuration from standard input: %w", err)
	}
	return &configSource{name: stdinName, text: data}, nil
}

// builtinConfig returns the source of the built-in default.
func builtinConfig() *configSource {
	return &configSource{name: defaultConfigName, text: []byte(defaultConfig)}
}

// read returns the configuration's bytes as they are now.
func (s *configSource) read() ([]byte, error) {
	if s.file == "" {
		return s.text, nil
	}
	f, err := os.Open(s.file)
	if err != nil {
		return nil, fmt.Errorf("read the configuration: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, pipelines.MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read the configuration: %w", err)
	}
	return data, nil
}

// parse validates data as the source's configuration.
func (s *configSource) parse(data []byte, reg *pipelines.Registry) (*pipelines.Config, error) {
	return pipelines.Parse(data, s.name, reg)
}

// load reads and parses the configuration, returning the hash of what it
// read too.
func (s *configSource) load(reg *pipelines.Registry) (*pipelines.Config, [32]byte, error) {
	data, err := s.read()
	if err != nil {
		return nil, [32]byte{}, err
	}
	cfg, err := s.parse(data, reg)
	return cfg, sha256.Sum256(data), err
}

// problemLines returns the lines of a configuration's problems, one per
// problem: "file:line:col: key: message"; nil when err is not about the
// configuration's content (an unreadable file).
func problemLines(err error) []string {
	var ce *pipelines.ConfigError
	if !errors.As(err, &ce) {
		return nil
	}
	lines := make([]string, len(ce.Problems))
	for i, p := range ce.Problems {
		lines[i] = p.String()
	}
	return lines
}

// printProblems prints the problems of a configuration on stderr, one per
// line, and returns errInvalidConfig; another error is returned as it is.
func printProblems(cmd *cobra.Command, err error) error {
	lines := problemLines(err)
	if lines == nil {
		return err
	}
	for _, line := range lines {
		fmt.Fprintln(cmd.ErrOrStderr(), line)
	}
	return errInvalidConfig
}

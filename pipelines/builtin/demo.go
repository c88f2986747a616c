package builtin

import (
	"github.com/moqbridge/moqbridge/internal/democlip"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
)

// DemoSourceOptions are the options of the demo source: it has none
// ("source: demo").
type DemoSourceOptions struct{}

// Validate implements pipelines.Validator: there is nothing to check.
func (*DemoSourceOptions) Validate() error { return nil }

// DemoSource is the demo source kind: the test clip embedded in moqbridge
// (10 s of a test pattern with a running clock and a 440 Hz tone, H.264
// and AAC, a keyframe every second), looped forever in real time and
// published at the pipeline's path, so that a configuration has
// something to watch without any input. The built-in default
// configuration publishes it at "demo".
func DemoSource() pipelines.SourceKind {
	return pipelines.SourceKind{
		Name:    "demo",
		Summary: "the embedded demo clip (test pattern with a clock, 440 Hz tone), looped forever",
		Options: func() any { return &DemoSourceOptions{} },
		NewSource: func(pipelines.SourceEnv, any) (sdk.Source, error) {
			// A source runs once: the runner makes a new one for every
			// (re)start, and the clip plays from its start again.
			return democlip.NewSource(), nil
		},
	}
}

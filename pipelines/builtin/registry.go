package builtin

import (
	"fmt"

	"github.com/moqbridge/moqbridge/pipelines"
)

// Registry returns a new registry holding every built-in kind.
func Registry() *pipelines.Registry {
	reg := pipelines.NewRegistry()
	if err := Register(reg); err != nil {
		// A new registry is empty, and the built-in names are distinct.
		panic(err)
	}
	return reg
}

// Register adds every built-in source and sink kind to reg; it fails when
// reg holds a kind of the same name already.
func Register(reg *pipelines.Registry) error {
	for _, k := range []pipelines.SourceKind{FMP4Source(), RTMPSource(), RTMPPullSource(), MOQSource(), DemoSource(), RTPSource()} {
		if err := reg.AddSource(k); err != nil {
			return fmt.Errorf("builtin: %w", err)
		}
	}
	for _, k := range []pipelines.SinkKind{FMP4Sink(), RTMPSink(), MOQSink(), RTPSink()} {
		if err := reg.AddSink(k); err != nil {
			return fmt.Errorf("builtin: %w", err)
		}
	}
	return nil
}

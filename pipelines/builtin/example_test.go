package builtin_test

import (
	"fmt"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/pipelines/builtin"
)

// A registry of every built-in kind, as a configuration is loaded with;
// an SDK user adds their own kinds to it with AddSource and AddSink.
func ExampleRegistry() {
	reg := builtin.Registry()
	fmt.Println("sources:", reg.SourceNames())
	fmt.Println("sinks:", reg.SinkNames())
	// Output:
	// sources: [demo fmp4 moq rtmp rtmp_pull rtp]
	// sinks: [fmp4 moq rtmp rtp]
}

// Register adds the built-in kinds to a registry that has others.
func ExampleRegister() {
	reg := pipelines.NewRegistry()
	// reg.AddSource(myKind) …
	if err := builtin.Register(reg); err != nil {
		fmt.Println(err)
	}
	_, ok := reg.Sink("rtmp")
	fmt.Println(ok)
	// Output: true
}

// The pattern the broadcasts of an rtmp source follow, which the
// pipeline's sinks attach to.
func ExampleRTMPPaths() {
	for _, template := range []string{"live/{key}", "{app}/{key}", "studio/main"} {
		pattern, _ := builtin.RTMPPaths(template, "live")
		fmt.Println(template, "→", pattern)
	}
	// Output:
	// live/{key} → live/*
	// {app}/{key} → live/*
	// studio/main → studio/main
}

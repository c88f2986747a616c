// Command moqbridge bridges live media to and from MOQ Lite. Run without
// arguments it runs the built-in default configuration: the relay, RTMP
// ingest and a demo broadcast.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	stopSignals := onStopSignals(cancel, os.Stderr)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopSignals()
	cancel()
	os.Exit(code)
}

// Exit statuses: 0 when a command did its work or was stopped by a signal
// and stopped cleanly, 1 for anything else (a bad flag or configuration, a
// failure to start or while running), and 1 as well when a second signal
// cut a graceful stop short.
const (
	exitOK      = 0
	exitFailure = 1
)

// onStopSignals makes the first SIGINT or SIGTERM cancel the commands'
// context, which stops them gracefully (recordings close, sinks flush),
// and a second one exit at once. The returned function stops listening.
func onStopSignals(cancel context.CancelFunc, stderr io.Writer) func() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			fmt.Fprintf(stderr, "moqbridge: %s again: exiting without waiting for the graceful stop\n", sig)
			os.Exit(exitFailure)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		<-finished
	}
}

// run runs the command line args and returns the exit status; an error is
// printed to stderr as one line, unless the command printed it already
// (the problems of a configuration).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newRootCommand()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, errInvalidConfig) {
			fmt.Fprintln(stderr, "moqbridge:", explain(err))
		}
		return exitFailure
	}
	return exitOK
}

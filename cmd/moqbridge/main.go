// Command moqbridge bridges live media to and from MOQ Lite. Run without
// arguments it starts the built-in relay on its defaults.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "moqbridge:", err)
		os.Exit(1)
	}
}

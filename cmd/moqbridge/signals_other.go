//go:build !unix

package main

import "os"

// reloadSignals: none where there is no SIGHUP; a configuration file is
// reloaded when it changes.
func reloadSignals() []os.Signal { return nil }

// certReloadSignals: none where there is no SIGUSR1.
func certReloadSignals() []os.Signal { return nil }

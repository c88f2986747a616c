//go:build unix

package main

import (
	"os"
	"syscall"
)

// reloadSignals are the signals that reload the configuration (and the
// certificate files), as the reference relay has them: SIGHUP.
func reloadSignals() []os.Signal { return []os.Signal{syscall.SIGHUP} }

// certReloadSignals are the signals that reload only the certificate
// files: SIGUSR1.
func certReloadSignals() []os.Signal { return []os.Signal{syscall.SIGUSR1} }

package main

import (
	"log/slog"
	"os"
	"os/signal"
	"sync"

	"github.com/moqbridge/moqbridge/protocol"
)

// reloadCertificateOnSignals makes SIGHUP and SIGUSR1 read --cert and
// --key again while serve runs, as "run -c" does for server.cert and
// server.key: sessions keep the certificate they have, new ones get the
// new one (a renewed Let's Encrypt certificate, say). With the generated
// development certificate there is nothing to read; the signal is logged
// (rather than ending the process, as an unhandled SIGHUP would). stop
// ends the watch.
func reloadCertificateOnSignals(srv *protocol.Server, certFile string, log *slog.Logger) (stop func()) {
	sigs := append(reloadSignals(), certReloadSignals()...)
	if len(sigs) == 0 {
		return func() {}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case sig := <-ch:
				switch {
				case certFile == "":
					log.Info("no certificate to reload: the relay uses a generated development certificate", "signal", sig.String())
				default:
					if err := srv.ReloadCertificate(); err != nil {
						log.Error("certificate not reloaded; the relay keeps the one it has", "signal", sig.String(), "err", err)
					}
				}
			}
		}
	})
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}

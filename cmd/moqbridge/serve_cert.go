package main

import (
	"log/slog"
	"os"
	"os/signal"
	"sync"

	"github.com/moqbridge/moqbridge/protocol"
)

// reloadCertificate reads the relay's certificate files (certFile and
// its key) again, as why (a signal, a reload) asks; with the generated
// development certificate (no file, or no relay) there is nothing to
// read, which is logged. Sessions keep the certificate they have.
func reloadCertificate(srv *protocol.Server, certFile, why string, log *slog.Logger) {
	if srv == nil || certFile == "" {
		log.Info("no certificate to reload: the relay uses a generated development certificate", "why", why)
		return
	}
	if err := srv.ReloadCertificate(); err != nil {
		log.Error("certificate not reloaded; the relay keeps the one it has", "why", why, "err", err)
	}
}

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
				reloadCertificate(srv, certFile, sig.String(), log)
			}
		}
	})
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}

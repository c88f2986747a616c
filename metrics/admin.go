package metrics

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin returns the handler of the admin endpoints:
//
//   - GET /metrics: m's registry in the Prometheus exposition format;
//   - GET /healthz: 200 "ok" while the process serves;
//   - GET /readyz: 200 "ready" when ready returns nil (a nil ready is
//     always ready), else 503 with the error's text, such as which
//     pipeline's source is not up.
//
// Any other path is 404. The endpoints carry no secrets but reveal the
// broadcast paths: serve them on loopback or a private network.
func Admin(m *Metrics, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A collector that fails leaves its metrics out rather than
		// failing the whole scrape.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
				return
			}
		}
		writeText(w, http.StatusOK, "ready")
	})
	return mux
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text+"\n")
}

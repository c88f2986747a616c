package metrics_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/moqbridge/moqbridge/metrics"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/protocol"
)

// Example wires Metrics as a command does: the runner reports to it, the
// relay's counters are read at every scrape, and the admin handler serves
// /metrics, /healthz and /readyz.
func Example() {
	m := metrics.New()
	runner := pipelines.NewRunner(pipelines.NewRegistry(), pipelines.RunnerOptions{Observer: m})
	_ = runner                 // runner.Run(ctx, cfg) in the command
	var relay *protocol.Server // the running relay, e.g. the runner's Server()
	m.SetRelay(func() protocol.ServerStats {
		if relay == nil {
			return protocol.ServerStats{}
		}
		return relay.Stats()
	})
	admin := &http.Server{Addr: "127.0.0.1:9090", Handler: metrics.Admin(m, m.SourcesUp), ReadHeaderTimeout: 5 * time.Second}
	_ = admin // admin.ListenAndServe() on a goroutine the command owns

	// What a scraper sees of readiness while a pipeline's source is down.
	m.SourceUp("cam", false)
	rec := httptest.NewRecorder()
	admin.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	fmt.Print(rec.Code, " ", rec.Body)
	// Output: 503 not ready: source not up: cam
}

package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// get requests path from srv and returns the status and body.
func get(t *testing.T, srv *httptest.Server, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestAdmin(t *testing.T) {
	m := New()
	var mu sync.Mutex
	var notReady error
	srv := httptest.NewServer(Admin(m, func() error {
		mu.Lock()
		defer mu.Unlock()
		return notReady
	}))
	defer srv.Close()

	if code, body := get(t, srv, http.MethodGet, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, srv, http.MethodGet, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz while ready: %d %q", code, body)
	}
	mu.Lock()
	notReady = errors.New(`pipeline "cam": source not up`)
	mu.Unlock()
	if code, body := get(t, srv, http.MethodGet, "/readyz"); code != http.StatusServiceUnavailable || body != "not ready: pipeline \"cam\": source not up\n" {
		t.Errorf("/readyz while not ready: %d %q", code, body)
	}
	if code, _ := get(t, srv, http.MethodGet, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while not ready: %d", code)
	}

	m.SourceUp("cam", true)
	code, body := get(t, srv, http.MethodGet, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		"# HELP moqbridge_source_up ",
		"# TYPE moqbridge_source_up gauge\n",
		`moqbridge_source_up{pipeline="cam"} 1` + "\n",
		"# TYPE go_goroutines gauge\n",
		"# TYPE process_cpu_seconds_total counter\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if code, _ := get(t, srv, http.MethodPost, "/healthz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d, want 405", code)
	}
	if code, _ := get(t, srv, http.MethodGet, "/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /nothing: %d, want 404", code)
	}
}

// TestAdminReadySources uses SourcesUp as the ready function, as the
// command does: /readyz names the pipelines whose source is down.
func TestAdminReadySources(t *testing.T) {
	m := New()
	srv := httptest.NewServer(Admin(m, m.SourcesUp))
	defer srv.Close()
	m.SourceUp("cam", false)
	m.SourceUp("file", true)
	if code, body := get(t, srv, http.MethodGet, "/readyz"); code != http.StatusServiceUnavailable || body != "not ready: source not up: cam\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	m.SourceUp("cam", true)
	if code, body := get(t, srv, http.MethodGet, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
}

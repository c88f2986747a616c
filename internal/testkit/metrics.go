package testkit

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ScrapeMetrics serves /metrics from h and returns every sample of the
// Prometheus text exposition by series, name{label="value",…} with the
// labels sorted (NormalizeSeries), parsed from the text as Prometheus
// reads it.
func ScrapeMetrics(t testing.TB, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	out := make(map[string]float64)
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("exposition line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("exposition line %q: %v", line, err)
		}
		out[NormalizeSeries(line[:i])] = v
	}
	return out
}

// NormalizeSeries sorts the labels of a series name{a="x",b="y"}, so that
// keys do not depend on the order the exposition writes them in. Label
// values must hold neither commas nor quotes.
func NormalizeSeries(s string) string {
	name, labels, ok := strings.Cut(s, "{")
	if !ok {
		return s
	}
	parts := strings.Split(strings.TrimSuffix(labels, "}"), ",")
	slices.Sort(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

package metrics

import (
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scrape serves /metrics from h and returns every sample of the text
// exposition by series (see series), parsed from the text as Prometheus
// reads it.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
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
		out[normalize(line[:i])] = v
	}
	return out
}

// normalize sorts the labels of a series name{a="x",b="y"}, so that keys
// do not depend on the order the exposition writes them in. Label values
// in these tests hold neither commas nor quotes.
func normalize(s string) string {
	name, labels, ok := strings.Cut(s, "{")
	if !ok {
		return s
	}
	parts := strings.Split(strings.TrimSuffix(labels, "}"), ",")
	slices.Sort(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// series returns the key scrape uses for a sample: name and label pairs.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var parts []string
	for i := 0; i+1 < len(labels); i += 2 {
		parts = append(parts, labels[i]+`="`+labels[i+1]+`"`)
	}
	return normalize(name + "{" + strings.Join(parts, ",") + "}")
}

// family returns the samples of the named families.
func family(got map[string]float64, names ...string) map[string]float64 {
	out := make(map[string]float64)
	for k, v := range got {
		name, _, _ := strings.Cut(k, "{")
		if slices.Contains(names, name) {
			out[k] = v
		}
	}
	return out
}

// expect checks that the samples of the named families are exactly want.
func expect(t *testing.T, got, want map[string]float64, names ...string) {
	t.Helper()
	have := family(got, names...)
	for k, v := range want {
		if hv, ok := have[k]; !ok {
			t.Errorf("missing %s (want %v)", k, v)
		} else if hv != v && !(math.IsNaN(hv) && math.IsNaN(v)) {
			t.Errorf("%s = %v, want %v", k, hv, v)
		}
	}
	for k, v := range have {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s = %v", k, v)
		}
	}
}

// fakeStats are counters by track that a test changes between scrapes,
// as a writer's or reader's Stats would return them.
type fakeStats struct {
	mu     sync.Mutex
	tracks map[string]sdk.TrackStats
	calls  int
}

func newFakeStats(tracks map[string]sdk.TrackStats) *fakeStats {
	return &fakeStats{tracks: tracks}
}

func (f *fakeStats) Stats() map[string]sdk.TrackStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := make(map[string]sdk.TrackStats, len(f.tracks))
	for k, v := range f.tracks {
		out[k] = v
	}
	return out
}

func (f *fakeStats) set(tracks map[string]sdk.TrackStats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tracks = tracks
}

func (f *fakeStats) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

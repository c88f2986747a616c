package metrics

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// series returns the key testkit.ScrapeMetrics uses for a sample: name
// and label pairs.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var parts []string
	for i := 0; i+1 < len(labels); i += 2 {
		parts = append(parts, labels[i]+`="`+labels[i+1]+`"`)
	}
	return testkit.NormalizeSeries(name + "{" + strings.Join(parts, ",") + "}")
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

package metrics

import (
	"sync"
	"testing"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
)

// fakeInput are a source's own counters that a test changes between
// scrapes, as an RTP source's would move.
type fakeInput struct {
	mu    sync.Mutex
	c     pipelines.SourceCounters
	calls int
}

func (f *fakeInput) SourceCounters() pipelines.SourceCounters {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.c
}

func (f *fakeInput) set(c pipelines.SourceCounters) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c = c
}

func (f *fakeInput) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestSourceInputMetrics follows a source with SourceCounters through
// the Observer: its counters are read at scrape time, kept once its
// broadcast ends, and the source the supervisor makes again (counting
// from zero) adds to them, so that the series never go backwards. A
// source without them has no such series.
func TestSourceInputMetrics(t *testing.T) {
	m := New()
	h := Admin(m, nil)
	noTracks := func() map[string]sdk.TrackStats { return nil }
	all := []string{nameSourcePackets, nameSourceInputBytes, nameSourceLost, nameSourceDuplicates, nameSourceLate,
		nameSourceInvalid, nameSourceInputDropped, nameSourceRestarts}
	want := func(packets, lost, dropped, restarts float64) map[string]float64 {
		l := []string{"pipeline", "cam", "path", "live/cam"}
		return map[string]float64{
			series(nameSourcePackets, l...):      packets,
			series(nameSourceInputBytes, l...):   packets * 100,
			series(nameSourceLost, l...):         lost,
			series(nameSourceDuplicates, l...):   1,
			series(nameSourceLate, l...):         0,
			series(nameSourceInvalid, l...):      2,
			series(nameSourceInputDropped, l...): dropped,
			series(nameSourceRestarts, l...):     restarts,
		}
	}
	counters := func(packets, lost, dropped, restarts uint64) pipelines.SourceCounters {
		return pipelines.SourceCounters{InputPackets: packets, InputBytes: packets * 100, LostPackets: lost,
			DuplicatePackets: 1, InvalidPackets: 2, DroppedFrames: dropped, SenderRestarts: restarts}
	}

	// A source without counters of its own: no input series.
	m.BroadcastStarted("file", "live/file", noTracks, nil)
	expect(t, testkit.ScrapeMetrics(t, h), nil, all...)

	first := &fakeInput{c: counters(100, 3, 2, 0)}
	m.BroadcastStarted("cam", "live/cam", noTracks, first.SourceCounters)
	expect(t, testkit.ScrapeMetrics(t, h), want(100, 3, 2, 0), all...)
	first.set(counters(200, 5, 4, 1))
	expect(t, testkit.ScrapeMetrics(t, h), want(200, 5, 4, 1), all...)

	// The source fails; its last values are taken at the end and kept.
	first.set(counters(210, 6, 5, 1))
	m.BroadcastEnded("cam", "live/cam")
	calls := first.callCount()
	expect(t, testkit.ScrapeMetrics(t, h), want(210, 6, 5, 1), all...)
	if first.callCount() != calls {
		t.Error("source counters read after BroadcastEnded")
	}

	// The supervisor makes the source again: it counts from zero, and
	// adds to the totals. Its duplicates and invalid count (1 and 2 each
	// time) add up too.
	second := &fakeInput{c: counters(10, 1, 0, 0)}
	m.BroadcastStarted("cam", "live/cam", noTracks, second.SourceCounters)
	got := testkit.ScrapeMetrics(t, h)
	w := want(220, 7, 5, 1)
	w[series(nameSourceDuplicates, "pipeline", "cam", "path", "live/cam")] = 2
	w[series(nameSourceInvalid, "pipeline", "cam", "path", "live/cam")] = 4
	expect(t, got, w, all...)

	m.BroadcastEnded("cam", "live/cam")
	expect(t, testkit.ScrapeMetrics(t, h), w, all...)
}

package sdk

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/moqbridge/moqbridge/moq"
)

// TestPublisherHooks: Started is called with every broadcast a Publisher
// makes, Ended once it ended, whether by End, by a replacement or by
// Close; the writer's counters are readable in between.
func TestPublisherHooks(t *testing.T) {
	origin := moq.NewOrigin()
	defer origin.Close()
	var mu sync.Mutex
	var events []string
	note := func(what string) func(b *Broadcast) {
		return func(b *Broadcast) {
			_ = b.Writer().Stats()
			mu.Lock()
			events = append(events, what+" "+b.Path())
			mu.Unlock()
		}
	}
	p := NewPublisher(origin, PublisherOptions{IfLive: Replace, Started: note("started"), Ended: note("ended")})
	a, err := p.Start("live/a")
	if err != nil {
		t.Fatal(err)
	}
	a.End()
	a.End()
	if _, err := p.Start("live/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Start("live/b"); err != nil { // replaces the first
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), "live/c", opusSource(3, nil)); err != nil {
		t.Fatal(err)
	}
	p.Close()
	want := []string{"started live/a", "ended live/a", "started live/b", "ended live/b", "started live/b",
		"started live/c", "ended live/c", "ended live/b"}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(events, want) {
		t.Errorf("events:\n%q\nwant\n%q", events, want)
	}
}

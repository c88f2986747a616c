package rtp

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newSink returns a Sink with cfg logging to lb, whose log is printed if
// the test fails.
func newSink(t testing.TB, lb *testkit.LogBuffer, cfg Config) *Sink {
	t.Helper()
	cfg.Logger = lb.Logger()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sink log:\n%s", lb.String())
		}
	})
	return s
}

// collector is a Sink that keeps every frame of every track of a
// broadcast, from its oldest cached group.
type collector struct {
	mu     sync.Mutex
	tracks map[string]sdk.Track
	frames map[string][]sdk.Frame // by track name
	wake   chan struct{}
}

func newCollector() *collector {
	return &collector{tracks: map[string]sdk.Track{}, frames: map[string][]sdk.Frame{}, wake: make(chan struct{}, 1)}
}

func (c *collector) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	if err := r.WaitTracks(ctx, 200*time.Millisecond); err != nil {
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, t := range r.Tracks() {
		tr, err := r.Subscribe(t.Name)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.tracks[t.Name] = t
		c.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.Close()
			for {
				f, err := tr.ReadFrame(ctx)
				if err != nil { // the end of the track, or of the test
					return
				}
				f.Payload = append([]byte(nil), f.Payload...)
				c.mu.Lock()
				c.frames[t.Name] = append(c.frames[t.Name], f)
				c.mu.Unlock()
				select {
				case c.wake <- struct{}{}:
				default:
				}
			}
		}()
	}
	return nil
}

// kind returns the track of a kind and a copy of its frames so far.
func (c *collector) kind(k sdk.Kind) (sdk.Track, []sdk.Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, t := range c.tracks {
		if t.Kind == k {
			return t, append([]sdk.Frame(nil), c.frames[name]...)
		}
	}
	return sdk.Track{}, nil
}

// waitFrames waits until the collector has at least video video frames and
// audio audio frames, or ctx ends.
func (c *collector) waitFrames(ctx context.Context, video, audio int) bool {
	for {
		_, v := c.kind(sdk.KindVideo)
		_, a := c.kind(sdk.KindAudio)
		if len(v) >= video && len(a) >= audio {
			return true
		}
		select {
		case <-c.wake:
		case <-ctx.Done():
			return false
		}
	}
}

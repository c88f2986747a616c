package rtp

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/fmp4"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clip is a test clip of sources/fmp4/testdata.
func clip(name string) string { return filepath.Join("..", "..", "sources", "fmp4", "testdata", name) }

// publishFile publishes an MP4 file, looped in real time, at path in a
// new Origin until the test ends.
func publishFile(t testing.TB, file, path string) *moq.Origin {
	t.Helper()
	origin := moq.NewOrigin()
	src, err := fmp4.Open(file, fmp4.Options{Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sdk.Publish(ctx, origin, path, src, sdk.PublishOptions{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("publish %s: %v", file, err)
		}
		origin.Close()
	})
	return origin
}

// runSink runs sink on the broadcast at path until stop is called, which
// waits for Run and returns its error.
func runSink(t testing.TB, origin *moq.Origin, path string, sink sdk.Sink) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sdk.Consume(ctx, origin, path, sink, sdk.ConsumeOptions{Wait: 10 * time.Second}) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				err = fmt.Errorf("Run did not return within 15 s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// freePorts returns the first of n consecutive UDP ports free on
// loopback, the first even (the RTP convention).
func freePorts(t testing.TB, n int) int {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := pc.LocalAddr().(*net.UDPAddr).Port &^ 1
		_ = pc.Close()
		if base+n > 65535 {
			continue
		}
		ok := true
		var open []net.PacketConn
		for p := base; p < base+n && ok; p++ {
			c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			open = append(open, c)
		}
		for _, c := range open {
			_ = c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free UDP ports")
	return 0
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

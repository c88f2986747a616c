// Package testclip runs the test clips of sources/fmp4/testdata through
// the SDK for the tests of sinks: a clip published, looped in real time,
// in an Origin, and a sink run on it. Only tests import it (it is a
// package of its own rather than part of internal/testmedia because it
// needs the SDK, whose own tests use testmedia).
package testclip

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/fmp4"
)

// Path is the path of a test clip of sources/fmp4/testdata from a
// package two levels down (sinks/rtmp, sinks/rtp …).
func Path(name string) string {
	return filepath.Join("..", "..", "sources", "fmp4", "testdata", name)
}

// Publish publishes an MP4 file, looped in real time, at path in a new
// Origin until the test ends.
func Publish(t testing.TB, file, path string) *moq.Origin {
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

// RunSink runs sink on the broadcast at path of origin until stop is
// called (or the test ends), which waits for Run and returns its error.
func RunSink(t testing.TB, origin *moq.Origin, path string, sink sdk.Sink) (stop func() error) {
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

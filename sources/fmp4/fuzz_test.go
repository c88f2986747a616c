package fmp4

import (
	"bytes"
	"context"
	"testing"

	"github.com/moqbridge/moqbridge/internal/testmedia"
	"github.com/moqbridge/moqbridge/sdk"
)

// seeds adds the repository's test media and a few hand-made boxes to f.
func seeds(f *testing.F) { testmedia.AddMP4Seeds(f, "../..") }

// The box reader's fuzz target, FuzzBoxes, is in internal/mp4 with the
// reader.

// FuzzSource runs whole inputs through the Source: no panic, no hang.
func FuzzSource(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(bytes.NewReader(data), Options{Fast: true, MaxBoxSize: 1 << 20})
		s.tap = func(int, *sdk.TrackWriter, sdk.Frame) error { return nil }
		_ = s.Run(context.Background(), nil)
	})
}

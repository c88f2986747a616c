package fmp4

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/moqbridge/moqbridge/sdk"
)

func seeds(f *testing.F) {
	for _, dir := range []string{"testdata", "../../sdk/testdata"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.mp4"))
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
				f.Add(b[:len(b)/3])
			}
		}
	}
	f.Add([]byte{0, 0, 0, 8, 'f', 't', 'y', 'p'})
	f.Add([]byte{0, 0, 0, 0, 'm', 'd', 'a', 't', 1, 2})
	f.Add([]byte{0, 0, 0, 1, 'm', 'o', 'o', 'f', 0, 0, 0, 0, 0, 0, 0, 16})
}

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

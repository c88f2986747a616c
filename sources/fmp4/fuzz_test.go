package fmp4

import (
	"bytes"
	"context"
	"errors"
	"io"
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

// FuzzBoxes splits arbitrary input into top-level boxes: it must end with
// io.EOF or a *FormatError, and account for every byte it consumed.
func FuzzBoxes(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		br := NewBoxReader(bytes.NewReader(data), 1<<16)
		for i := 0; ; i++ {
			h, err := br.Next()
			if err != nil {
				var fe *FormatError
				if !errors.Is(err, io.EOF) && !errors.As(err, &fe) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if h.Offset > int64(len(data)) || br.Offset() > int64(len(data)) {
				t.Fatalf("offset beyond input")
			}
			if i%2 == 0 {
				_, err = br.Body()
			} else {
				err = br.Skip()
			}
			if err != nil {
				return
			}
		}
	})
}

// FuzzSource runs whole inputs through the Source: no panic, no hang.
func FuzzSource(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(bytes.NewReader(data), Options{Fast: true, MaxBoxSize: 1 << 20})
		s.tap = func(int, *sdk.TrackWriter, sdk.Frame) error { return nil }
		_ = s.Run(context.Background(), nil)
	})
}

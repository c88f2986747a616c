// Package testmedia gives tests the repository's small media files: fuzz
// seeds for the parsers of MP4 bytes. Only tests import it.
package testmedia

import (
	"os"
	"path/filepath"
	"testing"
)

// AddMP4Seeds adds to f every test MP4 of the repository (the clips of
// sources/fmp4/testdata and sdk/testdata), whole and cut to a third, and a
// few hand-made boxes. root is the path from the test's package to the
// repository root ("../.." for a package two levels down).
func AddMP4Seeds(f *testing.F, root string) {
	for _, dir := range []string{"sources/fmp4/testdata", "sdk/testdata"} {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.mp4"))
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

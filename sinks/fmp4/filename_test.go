package fmp4

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFileNamesFromPaths: whatever the broadcast path, the file name made
// from it stays inside the recording directory and can be created.
func TestFileNamesFromPaths(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("é", 300) // 600 bytes in one element
	for _, path := range []string{
		"live/alice", "/../../etc/passwd", "a/./b/../c", `c:\windows\x`, "x\x00y\nz", `what?*<>|"`, long, "", "/",
	} {
		name := expandTemplate(DefaultFileTemplate, path, time.Unix(0, 0), 1)
		full := filepath.Join(dir, name)
		if rel, err := filepath.Rel(dir, full); err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("path %q gives %q, outside the directory", path, name)
			continue
		}
		for _, e := range strings.Split(name, string(filepath.Separator)) {
			if len(e) > 255 {
				t.Errorf("path %q gives an element of %d bytes", path, len(e))
			}
			if strings.ContainsAny(e, "\x00\n\\:*?\"<>|") {
				t.Errorf("path %q gives element %q", path, e)
			}
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Errorf("path %q: %v", path, err)
			continue
		}
		if err := os.WriteFile(full, nil, 0o644); err != nil {
			t.Errorf("path %q: cannot create %q: %v", path, name, err)
		}
	}
}

package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CacheDir is where a benchmark keeps the inputs it generates: the
// directory the environment variable env names, else name in the user's
// cache directory, else name in the temporary directory.
func CacheDir(env, name string) string {
	if d := os.Getenv(env); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, name)
	}
	return filepath.Join(os.TempDir(), name)
}

// CachedFFmpeg returns dir/name, running ffmpeg with args(out) to make it
// first when dir does not hold it yet. The file appears whole or not at
// all (ffmpeg writes a temporary file, renamed once complete), so an
// interrupted run leaves no half input for the next; name's extension is
// kept on the temporary file for ffmpeg's choice of format. made says
// whether ffmpeg ran, and took how long.
func CachedFFmpeg(dir, name string, args func(out string) []string) (path string, made time.Duration, err error) {
	path = filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return path, 0, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid()) + filepath.Ext(name)
	defer os.Remove(tmp)
	cmd := exec.Command("ffmpeg", args(tmp)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", 0, fmt.Errorf("making %s: ffmpeg %s: %w\n%s", path, strings.Join(args(tmp), " "), err, out.String())
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", 0, err
	}
	return path, time.Since(start), nil
}

package rtmpbench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/bench"
)

// CacheEnv names the directory where the generated inputs are kept
// between runs; default: moqbridge-rtmpbench in the user's cache
// directory (os.UserCacheDir), else in the temporary directory.
const CacheEnv = "MOQBRIDGE_RTMPBENCH_CACHE"

// inputSpec is a pre-encoded test stream: ffmpeg's testsrc2 pattern and a
// sine tone, H.264 (x264 veryfast, B-frames, a keyframe every 2 s, no
// scene cuts) and AAC-LC in FLV, as an encoder such as OBS would push it.
type inputSpec struct {
	width, height, fps int
	videoKbps          int
	seconds            int
	audio              bool
}

// The inputs of the benchmarks.
var (
	// recordInput is BenchmarkRTMPRecord's and BenchmarkRTMPLatency's:
	// 1080p30 at 6 Mbit/s with 128 kbit/s AAC, one minute.
	recordInput = inputSpec{width: 1920, height: 1080, fps: 30, videoKbps: 6000, seconds: 60, audio: true}
	// publisherInput is BenchmarkRTMPPublishers': 720p30 at 2.5 Mbit/s
	// with AAC, 20 s, looped by every publisher.
	publisherInput = inputSpec{width: 1280, height: 720, fps: 30, videoKbps: 2500, seconds: 20, audio: true}
	// smokeInput is not generated: TestHarnessSmoke writes synthetic
	// access units.
)

// args is the ffmpeg command line (without the program name) that writes
// the stream to out.
func (s inputSpec) args(out string) []string {
	gop := strconv.Itoa(2 * s.fps)
	kbps := func(n int) string { return strconv.Itoa(n) + "k" }
	a := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d", s.width, s.height, s.fps)}
	if s.audio {
		a = append(a, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000")
	}
	a = append(a, "-t", strconv.Itoa(s.seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
		"-b:v", kbps(s.videoKbps), "-maxrate", kbps(s.videoKbps), "-bufsize", kbps(2*s.videoKbps),
		"-g", gop, "-keyint_min", gop, "-sc_threshold", "0")
	if s.audio {
		a = append(a, "-c:a", "aac", "-b:a", "128k", "-ac", "2")
	}
	return append(a, "-f", "flv", out)
}

// name is the cache file name: the shape and a hash of the command line,
// so that a changed command makes a new file.
func (s inputSpec) name() string {
	sum := sha256.Sum256([]byte(strings.Join(s.args("OUT"), "\x00")))
	return fmt.Sprintf("in-%dp%d-%dk-%ds-%s.flv", s.height, s.fps, s.videoKbps, s.seconds, hex.EncodeToString(sum[:4]))
}

// ensureInput returns the path of the stream, generating it with ffmpeg
// if the cache does not hold it yet (a minute of 1080p takes about 40 s
// of two cores).
func ensureInput(s inputSpec) (string, error) {
	path, took, err := bench.CachedFFmpeg(bench.CacheDir(CacheEnv, "moqbridge-rtmpbench"), s.name(), s.args)
	if took > 0 {
		fmt.Fprintf(os.Stderr, "rtmpbench: generated %s in %v\n", path, took.Round(time.Second))
	}
	return path, err
}

// streamPackets counts the packets of each stream of a media file with
// ffprobe, video and audio (the first stream of each).
func streamPackets(path string) (video, audio int, err error) {
	for _, st := range []struct {
		sel string
		n   *int
	}{{"v:0", &video}, {"a:0", &audio}} {
		b, err := exec.Command("ffprobe", "-v", "error", "-select_streams", st.sel, "-count_packets",
			"-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path).Output()
		if err != nil {
			return 0, 0, fmt.Errorf("ffprobe %s: %w", path, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			continue // no such stream
		}
		if *st.n, err = strconv.Atoi(strings.TrimSuffix(s, ",")); err != nil {
			return 0, 0, fmt.Errorf("ffprobe %s: packets %q", path, s)
		}
	}
	return video, audio, nil
}

// needTools skips when ffmpeg or ffprobe is missing.
func needTools() error {
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: the RTMP benchmarks need ffmpeg and ffprobe", tool)
		}
	}
	return nil
}

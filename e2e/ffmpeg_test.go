package e2e

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	fmp4src "github.com/moqbridge/moqbridge/sources/fmp4"
)

// needFFmpeg skips the test when ffmpeg or ffprobe is missing, unless
// MOQBRIDGE_INTEROP=require, which makes it fail.
func needFFmpeg(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("MOQBRIDGE_INTEROP") == "require" {
				t.Fatalf("%s not found and MOQBRIDGE_INTEROP=require: %v", tool, err)
			}
			t.Skipf("skipped: %s not found (%v); set MOQBRIDGE_INTEROP=require to make this a failure", tool, err)
		}
	}
}

// packet is one packet as ffprobe lists it.
type packet struct {
	pts, dts       int64
	hasPTS, hasDTS bool
	key            bool
}

// probePackets lists the packets of one stream of f ("v:0", "a:0") with
// ffprobe; nil when f has no such stream.
func probePackets(t *testing.T, ctx context.Context, f, stream string) []packet {
	t.Helper()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", stream,
		"-show_entries", "packet=pts,dts,flags", "-of", "compact=p=0", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", f, err, out)
	}
	var ps []packet
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var p packet
		for _, kv := range strings.Split(line, "|") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "pts":
				p.pts, err = strconv.ParseInt(v, 10, 64)
				p.hasPTS = err == nil
			case "dts":
				p.dts, err = strconv.ParseInt(v, 10, 64)
				p.hasDTS = err == nil
			case "flags":
				p.key = strings.Contains(v, "K")
			}
		}
		ps = append(ps, p)
	}
	return ps
}

// checkDecode requires `ffmpeg -v error -i f -f null -` to exit 0 and
// print nothing.
func checkDecode(t *testing.T, ctx context.Context, f string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "ffmpeg", "-nostdin", "-v", "error", "-i", f, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("%s: decode not clean (exit %v):\n%s", filepath.Base(f), err, out)
	}
}

// checkRecording runs the ffmpeg and ffprobe checks on a recording of
// input: a clean decode; in every stream, timestamps on every packet and
// strictly increasing DTS; the first video packet a keyframe; and as many
// packets per stream as the input has, less the audio samples the sink
// drops by design (see expected; drops[stream]).
func checkRecording(t *testing.T, ctx context.Context, input, rec string, drops map[string]int) {
	t.Helper()
	checkDecode(t, ctx, rec)
	for _, stream := range []string{"v:0", "a:0"} {
		in := probePackets(t, ctx, input, stream)
		out := probePackets(t, ctx, rec, stream)
		if len(in) == 0 && len(out) == 0 {
			continue
		}
		if want := len(in) - drops[stream]; len(out) != want {
			t.Errorf("%s %s: %d packets, want %d (input %d, less %d dropped)", filepath.Base(rec), stream, len(out), want, len(in), drops[stream])
		}
		for i, p := range out {
			if !p.hasPTS || !p.hasDTS {
				t.Errorf("%s %s packet %d: no timestamp", filepath.Base(rec), stream, i)
				continue
			}
			if i > 0 && p.dts <= out[i-1].dts {
				t.Errorf("%s %s packet %d: dts %d after %d", filepath.Base(rec), stream, i, p.dts, out[i-1].dts)
			}
		}
		if stream == "v:0" && len(out) > 0 && !out[0].key {
			t.Errorf("%s: the first video packet is not a keyframe", filepath.Base(rec))
		}
	}
}

// dropsByStream maps the expected sink drops of the input tracks to ffprobe
// stream selectors (one video and at most one audio track per clip).
func dropsByStream(in []*track) map[string]int {
	m := map[string]int{}
	for _, tr := range in {
		_, n := expected(tr)
		if tr.video() {
			m["v:0"] += n
		} else {
			m["a:0"] += n
		}
	}
	return m
}

// TestFFprobeRecordings checks the recording of every clip with ffmpeg
// and ffprobe (see checkRecording).
func TestFFprobeRecordings(t *testing.T) {
	needFFmpeg(t)
	for _, name := range clips {
		t.Run(name, func(t *testing.T) {
			rec := roundTrip(t, inProcess, name)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			data, err := os.ReadFile(filepath.Join(testdata, name))
			if err != nil {
				t.Fatal(err)
			}
			checkRecording(t, ctx, filepath.Join(testdata, name), rec, dropsByStream(readInput(t, data)))
		})
	}
}

// TestFFmpegLivePipe records a live ffmpeg encode (3 s of H.264 with
// B-frames and AAC in ffmpeg's low-latency cmaf layout) that the fMP4
// source reads from ffmpeg's standard output as a stream, then checks the
// recording against the bytes ffmpeg wrote (compare) and with ffmpeg and
// ffprobe (checkRecording).
func TestFFmpegLivePipe(t *testing.T) {
	needFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "3", "-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "2", "-g", "30",
		"-c:a", "aac",
		"-movflags", "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
		"-f", "mp4", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var input bytes.Buffer // what ffmpeg wrote
	pipe := io.TeeReader(stdout, &input)
	// The video timescale ffmpeg's mp4 muxer picks for 30 fps.
	const ffmpegVideoTimescale = 15360
	res := record(t, ctx, inProcess, ffmpegVideoTimescale, func(opt fmp4src.Options) *fmp4src.Source {
		return fmp4src.New(pipe, opt)
	})
	_, _ = io.Copy(io.Discard, pipe)
	if err := cmd.Wait(); err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg: %v\n%s", err, stderr.String())
	}
	data := input.Bytes()
	inputFile := filepath.Join(t.TempDir(), "input.mp4")
	if err := os.WriteFile(inputFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	in := readInput(t, data)
	if len(in) != 2 || len(in[0].samples) != 90 {
		t.Fatalf("ffmpeg wrote %d tracks (%d video samples), want 2 tracks and 90 video samples", len(in), len(in[0].samples))
	}
	if in[0].timescale != ffmpegVideoTimescale {
		t.Fatalf("ffmpeg video timescale %d, want %d", in[0].timescale, ffmpegVideoTimescale)
	}
	drops := 0
	for _, tr := range in {
		_, n := expected(tr)
		drops += n
	}
	if drops > 0 {
		// The source repairs ffmpeg's drifting per-frame audio times; a
		// drop here means a drift it does not cover.
		t.Errorf("live pipe: %d audio samples still do not advance in time after repair", drops)
	}
	if res.stats.Dropped != uint64(drops) {
		t.Errorf("sink dropped %d frames, want %d", res.stats.Dropped, drops)
	}
	compare(t, "ffmpeg pipe", in, readRecording(t, res.file))
	checkRecording(t, ctx, inputFile, res.file, dropsByStream(in))
}

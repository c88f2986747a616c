package testkit

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// FMP4Check is what CheckFMP4 found in one stream of a file.
type FMP4Check struct {
	Packets    int // packets ffprobe lists
	Keyframes  int // of those, keyframes
	Decoded    int // frames decoded with a PTS
	NoDuration int // packets for which ffprobe reports no duration
}

// CheckFMP4 runs the checks of check-fmp4.sh on one stream of file
// ("v:0", "a:0"), reporting each failure with t.Errorf: every packet has
// timestamps, DTS strictly increase, a duration that is reported is
// positive, the first packet is a keyframe, decoded frames' PTS strictly
// increase, and a full decode of the file prints nothing. It needs ffmpeg
// and ffprobe (see NeedFFmpeg).
//
// ffmpeg 5.1's mov demuxer reports no packet duration (N/A) for fragments
// without composition offsets, its own cmaf output included, so a missing
// duration is only counted (check-fmp4.sh counts those too); a test that
// needs every duration checks NoDuration.
func CheckFMP4(t testing.TB, file, stream string) FMP4Check {
	t.Helper()
	var res FMP4Check
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", stream,
		"-show_entries", "packet=pts,dts,duration,flags", "-of", "compact=p=0", file).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: ffprobe packets: %v\n%s", file, err, out)
	}
	var lastDTS int64
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		v := map[string]string{}
		for kv := range strings.SplitSeq(line, "|") {
			k, val, _ := strings.Cut(kv, "=")
			v[k] = val
		}
		res.Packets++
		if v["dts"] == "N/A" || v["pts"] == "N/A" {
			t.Errorf("%s %s packet %d: missing timestamp: %s", file, stream, res.Packets, line)
			continue
		}
		dts, _ := strconv.ParseInt(v["dts"], 10, 64)
		if res.Packets > 1 && dts <= lastDTS {
			t.Errorf("%s %s packet %d: dts %d after %d", file, stream, res.Packets, dts, lastDTS)
		}
		lastDTS = dts
		if d, err := strconv.ParseInt(v["duration"], 10, 64); err != nil {
			res.NoDuration++
		} else if d <= 0 {
			t.Errorf("%s %s packet %d: bad duration: %s", file, stream, res.Packets, line)
		}
		if strings.Contains(v["flags"], "K") {
			res.Keyframes++
		} else if res.Packets == 1 {
			t.Errorf("%s %s: first packet is not a keyframe: %s", file, stream, line)
		}
	}
	out, err = exec.Command("ffprobe", "-v", "error", "-select_streams", stream,
		"-show_entries", "frame=pts", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: ffprobe frames: %v\n%s", file, err, out)
	}
	var lastPTS int64
	for line := range strings.Lines(string(out)) {
		pts, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), ",")), 10, 64)
		if err != nil {
			continue
		}
		res.Decoded++
		if res.Decoded > 1 && pts <= lastPTS {
			t.Errorf("%s %s decoded frame %d: pts %d after %d", file, stream, res.Decoded, pts, lastPTS)
		}
		lastPTS = pts
	}
	out, err = exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-xerror", "-i", file, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("%s: decode not clean (err %v):\n%s", file, err, out)
	}
	return res
}

// PacketTimes lists the decode times, in seconds, of the packets of one
// stream of file, as ffprobe reports them.
func PacketTimes(t testing.TB, ctx context.Context, file, stream string) []float64 {
	t.Helper()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", stream,
		"-show_entries", "packet=dts_time", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	var dts []float64
	for _, line := range strings.Fields(string(out)) {
		v, err := strconv.ParseFloat(strings.TrimSuffix(line, ","), 64)
		if err != nil {
			t.Fatalf("ffprobe dts %q: %v", line, err)
		}
		dts = append(dts, v)
	}
	return dts
}

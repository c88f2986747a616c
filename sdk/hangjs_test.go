package sdk

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// hangScript parses catalogs with the @moq/hang zod schema and decodes
// legacy frames with its Legacy.Format, printing the results as JSON.
const hangScript = `
import { RootSchema } from "@moq/hang/catalog";
import { Legacy } from "@moq/hang/container";
import { readFileSync } from "node:fs";
const input = JSON.parse(readFileSync(0, "utf8"));
const out = { catalogs: [], frames: [] };
for (const c of input.catalogs) {
  try { out.catalogs.push({ ok: RootSchema.parse(c) }); }
  catch (e) { out.catalogs.push({ error: String(e) }); }
}
for (const h of input.frames) {
  out.frames.push(new Legacy.Format().decode(Buffer.from(h, "hex")).map(
    (f) => ({ timestamp: Number(f.timestamp), payload: Buffer.from(f.payload).toString("hex") })));
}
process.stdout.write(JSON.stringify(out));
`

// hangJS bundles hangScript against interop/node_modules with esbuild and
// returns a function that runs it, or skips the test (fails with
// MOQBRIDGE_INTEROP=require) when node or @moq/hang is missing.
func hangJS(t *testing.T) func(input any, output any) {
	t.Helper()
	skip := func(why string) { testkit.Unavailable(t, "the @moq/hang check cannot run: %s", why) }
	interop, err := filepath.Abs("../interop")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node not found")
	}
	esbuild := filepath.Join(interop, "node_modules", ".bin", "esbuild")
	for _, p := range []string{filepath.Join(interop, "node_modules", "@moq", "hang", "package.json"), esbuild} {
		if _, err := os.Stat(p); err != nil {
			skip(p + " not installed")
		}
	}
	// esbuild resolves the imports of stdin from its working directory,
	// so nothing is written into interop/.
	bundle := filepath.Join(t.TempDir(), "hang.mjs")
	cmd := exec.Command(esbuild, "--bundle", "--platform=node", "--format=esm", "--log-level=warning", "--outfile="+bundle)
	cmd.Dir = interop
	cmd.Stdin = bytes.NewReader([]byte(hangScript))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("esbuild: %v\n%s", err, out)
	}
	return func(input, output any) {
		t.Helper()
		in, err := json.Marshal(input)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(node, bundle)
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node: %v\n%s", err, stderr.Bytes())
		}
		if err := json.Unmarshal(out, output); err != nil {
			t.Fatalf("node output %s: %v", out, err)
		}
	}
}

// TestHangJS checks what BroadcastWriter publishes against the reference
// JavaScript implementation: the catalogs parse with the @moq/hang 0.3.5
// schema (and one the schema must reject fails), and legacy frames decode
// to the same timestamps and payloads.
func TestHangJS(t *testing.T) {
	run := hangJS(t)

	video, err := H264FromConfig(unhex(t, avcCases[1].avcC))
	if err != nil {
		t.Fatal(err)
	}
	video.Name, video.Framerate, video.Bitrate, video.Jitter = "video/hd", 29.97, 2500000, 34*time.Millisecond
	hevc, err := H265FromConfig(unhex(t, hevcCases[0].hvcC))
	if err != nil {
		t.Fatal(err)
	}
	hevc.Name = "hevc"
	av1, err := AV1FromConfig(unhex(t, av1Cases[2].av1C))
	if err != nil {
		t.Fatal(err)
	}
	av1.Name = "av1"
	aac, err := AACFromConfig(unhex(t, "119056e500"))
	if err != nil {
		t.Fatal(err)
	}
	aac.Name = "aac"
	opus, err := OpusFromHead(unhex(t, "4f707573486561640106380180bb00000000010402000401020305"))
	if err != nil {
		t.Fatal(err)
	}
	opus.Name, opus.Jitter = "audio/data", 20*time.Millisecond
	cmaf := readCMAFFile(t, "testdata/aac_cmaf.mp4")
	aacCMAF := aac
	aacCMAF.Name, aacCMAF.Container, aacCMAF.Init = "1.m4s", ContainerCMAF, cmaf.init

	var catalogs []json.RawMessage
	for _, ts := range [][]Track{{video, opus}, {video, hevc, av1, aac, opus, aacCMAF}, {opus}} {
		c, err := NewCatalog(ts)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		catalogs = append(catalogs, b)
	}
	// Must fail: a non-integral jitter.
	catalogs = append(catalogs, json.RawMessage(`{"audio": {"renditions": {"a": {"codec": "opus", "sampleRate": 48000, "numberOfChannels": 2, "jitter": 33.3}}}}`))

	var frames []string
	var wantFrames []time.Duration
	for _, us := range []int64{0, 63, 64, 16383, 33333, 1000000, 1 << 30, 3600000000, 1<<53 - 1} {
		pts := time.Duration(us) * time.Microsecond
		b, err := AppendLegacyFrame(nil, pts, []byte{0xca, 0xfe})
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, hex.EncodeToString(b))
		wantFrames = append(wantFrames, pts)
	}
	marker, _ := AppendLegacyFrame(nil, time.Second, nil)
	frames = append(frames, hex.EncodeToString(marker))

	var out struct {
		Catalogs []struct {
			OK    map[string]any `json:"ok"`
			Error string         `json:"error"`
		} `json:"catalogs"`
		Frames [][]struct {
			Timestamp float64 `json:"timestamp"`
			Payload   string  `json:"payload"`
		} `json:"frames"`
	}
	run(map[string]any{"catalogs": catalogs, "frames": frames}, &out)

	for i, c := range out.Catalogs[:3] {
		if c.Error != "" {
			t.Errorf("catalog %d rejected by @moq/hang: %s\n%s", i, c.Error, catalogs[i])
			continue
		}
		// Everything but the stripped priority survives the schema.
		want := jsonValue(t, catalogs[i]).(map[string]any)
		for _, sec := range []string{"video", "audio"} {
			if s, ok := want[sec].(map[string]any); ok {
				delete(s, "priority")
			}
		}
		got, _ := json.Marshal(c.OK)
		if !jsonEqual(t, got, want) {
			t.Errorf("catalog %d parsed as\n%s\nwant\n%s", i, got, catalogs[i])
		}
	}
	if out.Catalogs[3].Error == "" {
		t.Error("@moq/hang accepted a non-integral jitter; the check is not running the schema")
	}
	for i, want := range wantFrames {
		got := out.Frames[i]
		if len(got) != 1 || time.Duration(got[0].Timestamp)*time.Microsecond != want || got[0].Payload != "cafe" {
			t.Errorf("frame %s decoded as %+v, want %v", frames[i], got, want)
		}
	}
	if got := out.Frames[len(wantFrames)]; len(got) != 0 {
		t.Errorf("marker decoded as %+v", got)
	}
}

func jsonEqual(t *testing.T, a []byte, b any) bool {
	t.Helper()
	bb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(canonicalJSON(t, a), canonicalJSON(t, bb))
}

func canonicalJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := json.Marshal(jsonValue(t, b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

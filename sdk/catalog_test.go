package sdk

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/mp4"
)

// Example catalogs A and B of hang-format §2.3, verbatim; both parse with
// @moq/hang 0.3.5.
const (
	catalogA = `{
  "video": {
    "renditions": {
      "video/hd": {
        "codec": "avc1.640028",
        "container": { "kind": "legacy" },
        "description": "01640028ffe1001967640028acb403c0113f2e0220000003002000000791e3065401000468ef3cb0fdf8f800",
        "codedWidth": 1920,
        "codedHeight": 1080,
        "framerate": 30,
        "bitrate": 6000000,
        "optimizeForLatency": true,
        "jitter": 34
      }
    },
    "display": { "width": 1920, "height": 1080 },
    "priority": 60
  },
  "audio": {
    "renditions": {
      "audio/data": {
        "codec": "opus",
        "container": { "kind": "legacy" },
        "sampleRate": 48000,
        "numberOfChannels": 2,
        "bitrate": 128000,
        "jitter": 20
      }
    },
    "priority": 80
  }
}`
	catalogB = `{
  "video": {
    "renditions": {
      "0.avc3": {
        "codec": "avc3.640028",
        "codedWidth": 1920,
        "codedHeight": 1080,
        "framerate": 30,
        "jitter": 34
      }
    },
    "priority": 60
  },
  "audio": {
    "renditions": {
      "1.aac": {
        "codec": "mp4a.40.2",
        "description": "1190",
        "sampleRate": 48000,
        "numberOfChannels": 2,
        "bitrate": 128000,
        "jitter": 22
      }
    },
    "priority": 80
  }
}`
)

// catalogC is example C of §2.3 (what the 0.3.5 fMP4 importer publishes)
// with the elided description and inits filled in from the cmaf test
// files.
func catalogC(t testing.TB) string {
	v := readCMAFFile(t, "testdata/h264_bframes_cmaf.mp4")
	a := readCMAFFile(t, "testdata/aac_cmaf.mp4")
	return fmt.Sprintf(`{
  "video": { "renditions": { "0.m4s": {
      "codec": "avc1.64000b",
      "description": %q,
      "codedWidth": 160, "codedHeight": 96,
      "container": { "kind": "cmaf", "init": %q },
      "jitter": 33,
      "timeline": { "track": "0.m4s.timeline.z", "timescale": 1000 }
  } } },
  "audio": { "renditions": { "1.m4s": {
      "codec": "mp4a.40.2", "description": "119056e500",
      "sampleRate": 48000, "numberOfChannels": 2, "bitrate": 128000, "jitter": 21,
      "container": { "kind": "cmaf", "init": %q }
  } } }
}`, hex.EncodeToString(v.config()), base64.StdEncoding.EncodeToString(v.init), base64.StdEncoding.EncodeToString(a.init))
}

// jsonValue decodes JSON into generic values for semantic comparison.
func jsonValue(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	return v
}

func TestCatalogGolden(t *testing.T) {
	for name, src := range map[string]string{"A": catalogA, "B": catalogB, "C": catalogC(t)} {
		t.Run(name, func(t *testing.T) {
			c, err := ParseCatalog([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := jsonValue(t, out), jsonValue(t, []byte(src)); !reflect.DeepEqual(got, want) {
				t.Errorf("re-encoded\n%s\nwant (semantically)\n%s", out, src)
			}
		})
	}
}

// TestCatalogFromTracks checks that the catalog the writer publishes for
// the tracks of example A is example A, minus the two optional fields
// NewCatalog does not write (display, and optimizeForLatency whose default
// is already true).
func TestCatalogFromTracks(t *testing.T) {
	video, err := H264FromConfig(unhex(t, avcCases[0].avcC))
	if err != nil {
		t.Fatal(err)
	}
	video.Name, video.Bitrate, video.Jitter = "video/hd", 6000000, 34*time.Millisecond
	audio := Track{Name: "audio/data", Kind: KindAudio, Codec: "opus", SampleRate: 48000, Channels: 2, Bitrate: 128000, Jitter: 20 * time.Millisecond}
	c, err := NewCatalog([]Track{audio, video})
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := jsonValue(t, []byte(catalogA)).(map[string]any)
	v := want["video"].(map[string]any)
	delete(v, "display")
	delete(v["renditions"].(map[string]any)["video/hd"].(map[string]any), "optimizeForLatency")
	if got := jsonValue(t, out); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant (semantically) example A without display and optimizeForLatency", out)
	}

	// And back: the catalog's tracks are the tracks.
	tracks := c.Tracks()
	if len(tracks) != 2 {
		t.Fatalf("%d tracks", len(tracks))
	}
	video.Container, audio.Container = ContainerLegacy, ContainerLegacy
	video.Priority, audio.Priority = PriorityVideo, PriorityAudio
	if !reflect.DeepEqual(tracks[0], video) || !reflect.DeepEqual(tracks[1], audio) {
		t.Errorf("Tracks()\n%+v\n%+v\nwant\n%+v\n%+v", tracks[0], tracks[1], video, audio)
	}
}

func TestCatalogOlderForms(t *testing.T) {
	// Dec-2025: no container, priority required; plus root extras and
	// displayRatio names.
	dec2025 := `{
	  "video": {"renditions": {"video0": {"codec": "avc1.64001f", "description": "0164001FFFE1", "codedWidth": 1280, "codedHeight": 720,
	     "displayRatioWidth": 16, "displayRatioHeight": 9}}, "priority": 1},
	  "audio": {"renditions": {"audio1": {"codec": "mp4a.40.2", "sampleRate": 44100, "numberOfChannels": 2}}, "priority": 2},
	  "chat": {"track": "chat.md"}, "user": {"name": "x"}
	}`
	c, err := ParseCatalog([]byte(dec2025))
	if err != nil {
		t.Fatal(err)
	}
	tracks := c.Tracks()
	if len(tracks) != 2 || tracks[0].Name != "video0" || tracks[0].Priority != 1 || tracks[0].Container != ContainerLegacy ||
		tracks[1].Name != "audio1" || tracks[1].Priority != 2 || tracks[1].SampleRate != 44100 {
		t.Fatalf("tracks %+v", tracks)
	}
	if got := hex.EncodeToString(tracks[0].DecoderConfig); got != "0164001fffe1" {
		t.Errorf("upper-case description read as %s", got)
	}
	if r := c.Video.Renditions["video0"]; r.DisplayAspectWidth != 16 || r.DisplayAspectHeight != 9 {
		t.Errorf("displayRatio alias: %+v", r)
	}
	out, _ := json.Marshal(c)
	if !strings.Contains(string(out), `"chat":{"track":"chat.md"}`) || !strings.Contains(string(out), `"displayAspectWidth":16`) {
		t.Errorf("re-encoded %s", out)
	}

	// The oldest forms: video an array of {track, config}, audio a single
	// {track, config}.
	arrays := `{
	  "video": [{"track": {"name": "hd", "priority": 2}, "config": {"codec": "vp09.00.10.08", "codedWidth": 640, "codedHeight": 360}},
	            {"track": {"name": "sd", "priority": 2}, "config": {"codec": "vp09.00.10.08", "codedWidth": 320, "codedHeight": 180}}],
	  "audio": {"track": {"name": "mic", "priority": 3}, "config": {"codec": "opus", "sampleRate": 48000, "numberOfChannels": 1}}
	}`
	c, err = ParseCatalog([]byte(arrays))
	if err != nil {
		t.Fatal(err)
	}
	tracks = c.Tracks()
	if len(tracks) != 3 || tracks[0].Name != "hd" || tracks[1].Name != "sd" || tracks[1].Width != 320 || tracks[0].Priority != 2 ||
		tracks[2].Name != "mic" || tracks[2].Channels != 1 || tracks[2].Priority != 3 {
		t.Fatalf("tracks %+v", tracks)
	}

	// Unknown container kinds are kept verbatim, loc is known, a
	// non-integral jitter rounds up.
	odd := `{"video": {"renditions": {
	    "a": {"codec": "avc1.64001f", "container": {"kind": "future", "x": [1, 2]}},
	    "b": {"codec": "avc1.64001f", "container": {"kind": "loc"}, "jitter": 33.3}}}}`
	c, err = ParseCatalog([]byte(odd))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Video.Renditions["b"]; r.Jitter != 34 || r.Container.Kind != ContainerLOC {
		t.Errorf("rendition b: %+v", r)
	}
	out, _ = json.Marshal(c)
	if !strings.Contains(string(out), `"container":{"kind":"future","x":[1,2]}`) {
		t.Errorf("unknown container not kept: %s", out)
	}
}

func TestCatalogErrors(t *testing.T) {
	for _, bad := range []string{
		``, `[]`, `null`, `"x"`, `{"video": 1}`, `{"video": {}}`,
		`{"video": {"renditions": []}}`,
		`{"video": {"renditions": {"a": {}}}}`,
		`{"video": {"renditions": {"a": {"codec": 1}}}}`,
		`{"video": {"renditions": {"a": {"codec": "x", "description": "AU"}}}}`,
		`{"video": {"renditions": {"a": {"codec": "x", "description": "abc"}}}}`,
		`{"video": {"renditions": {"a": {"codec": "x", "codedWidth": -1}}}}`,
		`{"video": {"renditions": {"a": {"codec": "x", "codedWidth": "1"}}}}`,
		`{"video": {"renditions": {"a": {"codec": "x", "container": {"kind": "cmaf"}}}}}`,
		`{"video": {"renditions": {"a": {"codec": "x", "container": {"kind": "cmaf", "init": "!!"}}}}}`,
		`{"video": {"renditions": {"a": {"codec": "x", "container": {}}}}}`,
		`{"video": {"renditions": {}, "priority": 256}}`,
		`{"video": [{"config": {"codec": "x"}}]}`,
		`{"audio": {"renditions": {"a": {"codec": "opus", "sampleRate": 1e300}}}}`,
	} {
		if c, err := ParseCatalog([]byte(bad)); err == nil {
			t.Errorf("ParseCatalog(%s) = %+v, want an error", bad, c)
		}
	}
}

func TestMergePatch(t *testing.T) {
	doc := []byte(catalogB)
	patch := []byte(`{"video": {"renditions": {"0.avc3": null, "2.avc3": {"codec": "avc3.64001f", "codedWidth": 1280, "codedHeight": 720}}}, "audio": {"priority": 90}}`)
	merged, err := applyMergePatch(doc, patch)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCatalog(merged)
	if err != nil {
		t.Fatal(err)
	}
	tracks := c.Tracks()
	if len(tracks) != 2 || tracks[0].Name != "2.avc3" || tracks[0].Width != 1280 || tracks[1].Name != "1.aac" || tracks[1].Priority != 90 {
		t.Errorf("merged tracks %+v", tracks)
	}
	if _, err := applyMergePatch(doc, []byte(`{`)); err == nil {
		t.Error("bad patch accepted")
	}
	// A non-object patch replaces the document.
	if out, err := applyMergePatch(doc, []byte(`[1]`)); err != nil || string(out) != `[1]` {
		t.Errorf("array patch: %s, %v", out, err)
	}
}

// FuzzCatalog parses arbitrary catalogs: no panic, and whatever parses
// encodes to JSON that parses to the same catalog (encoding is stable).
func FuzzCatalog(f *testing.F) {
	f.Add([]byte(catalogA))
	f.Add([]byte(catalogB))
	f.Add([]byte(catalogC(f)))
	f.Add([]byte(`{"video": [{"track": {"name": "hd", "priority": 2}, "config": {"codec": "vp09.00.10.08"}}], "audio": {"track": {"name": "a", "priority": 1}, "config": {"codec": "opus", "sampleRate": 48000, "numberOfChannels": 2}}}`))
	f.Add([]byte(`{"video": {"renditions": {"a": {"codec": "x", "container": {"kind": "future"}, "jitter": 1.5, "displayRatioWidth": 4}}, "flip": true, "rotation": 90}, "extra": [1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCatalog(b)
		if err != nil {
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal %+v: %v", c, err)
		}
		c2, err := ParseCatalog(out)
		if err != nil {
			t.Fatalf("re-parse %s: %v", out, err)
		}
		out2, err := json.Marshal(c2)
		if err != nil || string(out2) != string(out) {
			t.Fatalf("unstable encoding:\n%s\n%s (%v)", out, out2, err)
		}
		_ = c.Tracks()
	})
}

// cmafFile is an fMP4 test file split into the init and the fragments.
type cmafFile struct {
	init  []byte
	frags [][]byte
}

// config returns the decoder configuration of the file's sample entry.
func (f *cmafFile) config() []byte {
	in, err := parseCMAFInit(f.init)
	if err != nil {
		panic(err)
	}
	return in.config
}

// readCMAFFile splits an fMP4 file written by ffmpeg with
// frag_every_frame into its init (ftyp+moov) and its moof+mdat fragments.
func readCMAFFile(t testing.TB, path string) *cmafFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &cmafFile{}
	start := -1
	err = mp4.Walk(b, 0, func(bx mp4.Box) error {
		end := int(bx.BodyOffset()) + len(bx.Body)
		switch bx.Type {
		case "ftyp", "moov":
			f.init = b[:end]
		case "moof":
			start = int(bx.Offset)
		case "mdat":
			f.frags = append(f.frags, b[start:end])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

package rtmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sinks/fmp4"
)

// encodeClip encodes 3 s of a test picture at 30 fps with ffmpeg into a
// raw elementary stream file and returns its bytes.
func encodeClip(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("ffmpeg", append(append([]string{"-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "3", "-pix_fmt", "yuv420p"}, args...), f)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hevcAccessUnits splits an Annex B H.265 stream written with AUDs into
// access units.
func hevcAccessUnits(t *testing.T, b []byte) [][][]byte {
	t.Helper()
	var nalus [][]byte // split at start codes (mediacommon's splitter stops at 50 NAL units)
	start := -1
	for i := 0; i+3 <= len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				nalus = append(nalus, bytes.TrimRight(b[start:i], "\x00"))
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 {
		nalus = append(nalus, b[start:])
	}
	var aus [][][]byte
	for _, n := range nalus {
		if (n[0]>>1)&0x3f == 35 || aus == nil {
			aus = append(aus, nil)
		}
		aus[len(aus)-1] = append(aus[len(aus)-1], n)
	}
	return aus
}

// av1TemporalUnits splits a low-overhead AV1 OBU stream into temporal
// units, without their temporal delimiters.
func av1TemporalUnits(t *testing.T, b []byte) [][][]byte {
	t.Helper()
	var bs av1.Bitstream
	if err := bs.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	var tus [][][]byte
	for _, obu := range bs {
		if (obu[0]>>3)&0xf == 2 {
			tus = append(tus, nil)
			continue
		}
		if tus == nil {
			tus = append(tus, nil)
		}
		tus[len(tus)-1] = append(tus[len(tus)-1], obu)
	}
	return tus
}

// ivfFrames splits an IVF file into its frames.
func ivfFrames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	if len(b) < 32 || string(b[:4]) != "DKIF" {
		t.Fatal("not an IVF file")
	}
	var frames [][]byte
	for p := int(binary.LittleEndian.Uint16(b[6:])); p+12 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[p:]))
		if p+12+n > len(b) {
			t.Fatal("IVF frame past the end")
		}
		frames = append(frames, b[p+12:p+12+n])
		p += 12 + n
	}
	return frames
}

// trackResult is what a sink read from one track.
type trackResult struct {
	track     sdk.Track
	frames    int
	firstKey  bool
	keys      int
	backwards int
	last      time.Duration
}

// readAll subscribes to every track of the broadcast and reads each to its
// end.
// subscribed is closed once it subscribed to them all.
func readAll(ctx context.Context, r *sdk.BroadcastReader, results map[string]*trackResult, subscribed chan<- struct{}) error {
	if err := r.WaitTracks(ctx, 300*time.Millisecond); err != nil {
		return err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, tr := range r.Tracks() {
		sub, err := r.Subscribe(tr.Name)
		if err != nil {
			return err
		}
		res := &trackResult{track: tr}
		mu.Lock()
		results[tr.Name] = res
		mu.Unlock()
		wg.Go(func() {
			defer sub.Close()
			for {
				f, err := sub.ReadFrame(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				if res.frames == 0 {
					res.firstKey = f.Keyframe
				} else if f.DecodeTime() < res.last {
					res.backwards++
				}
				if f.Keyframe {
					res.keys++
				}
				res.frames++
				res.last = f.DecodeTime()
				mu.Unlock()
			}
		})
	}
	close(subscribed)
	wg.Wait()
	return nil
}

// TestEnhancedMultitrack: a gortmplib client publishes H.265, AV1 and VP9
// (three video tracks: Enhanced RTMP multitrack) and Opus; the broadcast's
// catalog lists the four with their codecs and sizes, the AV1 and VP9
// tracks added at their first keyframe, and every frame arrives, keyframe
// first, in order; the video of an fMP4 recording decodes cleanly.
func TestEnhancedMultitrack(t *testing.T) {
	testkit.NeedFFmpeg(t)
	aus := hevcAccessUnits(t, encodeClip(t, "clip.hevc", "-c:v", "libx265", "-x265-params", "bframes=0:aud=1:keyint=30:log-level=error", "-f", "hevc"))
	tus := av1TemporalUnits(t, encodeClip(t, "clip.obu", "-c:v", "libsvtav1", "-g", "30", "-f", "obu"))
	vp9s := ivfFrames(t, encodeClip(t, "clip.ivf", "-c:v", "libvpx-vp9", "-g", "30", "-deadline", "realtime", "-f", "ivf"))
	var vps, sps, pps []byte
	for _, n := range aus[0] {
		switch (n[0] >> 1) & 0x3f {
		case 32:
			vps = n
		case 33:
			sps = n
		case 34:
			pps = n
		}
	}
	if vps == nil || sps == nil || pps == nil || len(aus) != 90 || len(tus) != 90 || len(vp9s) != 90 {
		t.Fatalf("clips: %d H.265 access units (parameter sets %v %v %v), %d AV1 temporal units, %d VP9 frames",
			len(aus), vps != nil, sps != nil, pps != nil, len(tus), len(vp9s))
	}

	ctx := testkit.Context(t, 30*time.Second)
	srv := startServer(t, Config{})
	results := map[string]*trackResult{}
	subscribed := make(chan struct{})
	consumed := make(chan error, 1)
	go func() {
		consumed <- sdk.Consume(ctx, srv.origin, "live/multi", sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
			return readAll(ctx, r, results, subscribed)
		}), sdk.ConsumeOptions{})
	}()

	sink := fmp4.New(fmp4.Config{Dir: t.TempDir(), Path: "live/multi"})
	recorded := make(chan error, 1)
	go func() { recorded <- sdk.Consume(ctx, srv.origin, "live/multi", sink, sdk.ConsumeOptions{}) }()

	c, err := clientPublish(ctx, t, srv.url+"/live", "multi")
	if err != nil {
		t.Fatal(err)
	}
	h265 := &gortmplib.Track{Codec: &codecs.H265{VPS: vps, SPS: sps, PPS: pps}}
	av1t := &gortmplib.Track{Codec: &codecs.AV1{}}
	opust := &gortmplib.Track{Codec: &codecs.Opus{IDHeader: &opus.IDHeader{Version: 1, ChannelCount: 2, InputSampleRate: 48000}}}
	vp9t := &gortmplib.Track{Codec: &codecs.VP9{}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{h265, av1t, vp9t, opust}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	v, a := 0, 0
	for v < len(aus) || a < 150 { // 3 s of video at 30 fps and of Opus in 20 ms packets, in time order
		vt := time.Duration(v) * time.Second / 30
		at := time.Duration(a) * 20 * time.Millisecond
		if v < len(aus) && (a >= 150 || vt <= at) {
			if err := w.WriteH265(h265, vt, vt, aus[v]); err != nil {
				t.Fatal(err)
			}
			if err := w.WriteAV1(av1t, vt, tus[v]); err != nil {
				t.Fatal(err)
			}
			if err := w.WriteVP9(vp9t, vt, vp9s[v]); err != nil {
				t.Fatal(err)
			}
			v++
		} else {
			if err := w.WriteOpus(opust, at, []byte{0xfc, byte(a), 1, 2, 3}); err != nil {
				t.Fatal(err)
			}
			a++
		}
	}
	select { // the publisher stays until the sink has subscribed
	case <-subscribed:
	case err := <-consumed:
		t.Fatalf("the sink returned before it subscribed: %v", err)
	}
	c.Close()
	select {
	case err := <-consumed:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the broadcast did not end after the publisher left")
	}
	if err := <-recorded; err != nil {
		t.Fatalf("recording: %v", err)
	}
	// The video of the recording decodes cleanly (the Opus packets are
	// made up).
	for _, f := range sink.Files() {
		for _, stream := range []string{"0:v:0", "0:v:1", "0:v:2"} {
			if b, err := exec.Command("ffmpeg", "-v", "error", "-i", f, "-map", stream, "-f", "null", "-").CombinedOutput(); err != nil || len(b) > 0 {
				t.Errorf("%s of the recording does not decode cleanly: %v\n%s", stream, err, b)
			}
		}
		b, _ := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", f).CombinedOutput()
		if got := strings.Join(strings.Fields(string(b)), ","); got != "hevc,av1,vp9,opus" {
			t.Errorf("recorded streams %q, want hevc,av1,vp9,opus", got)
		}
	}
	if len(sink.Files()) != 1 {
		t.Errorf("recorded %v, want one file", sink.Files())
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: publishing", "path=live/multi", "codecs=\"H.265, AV1, VP9, Opus\"")
	srv.log.WaitLog(t, 5*time.Second, "rtmp: track configured at its first keyframe", "codec=av01.")

	want := []struct {
		codec  string
		frames int
		keys   int
	}{
		{"hvc1.", 90, 3},
		{"av01.", 90, 3},
		{"vp09.", 90, 3},
		{"opus", 150, 150},
	}
	if len(results) != len(want) {
		t.Errorf("%d tracks, want %d", len(results), len(want))
	}
	byCodec := map[string]*trackResult{}
	for name, r := range results {
		t.Logf("%s %s: %d frames, %d keyframes", name, r.track.Codec, r.frames, r.keys)
		for _, w := range want {
			if strings.HasPrefix(r.track.Codec, w.codec) {
				byCodec[w.codec] = r
			}
		}
	}
	for _, w := range want {
		r := byCodec[w.codec]
		if r == nil {
			t.Errorf("no %s track", w.codec)
			continue
		}
		if r.frames != w.frames || r.keys != w.keys || !r.firstKey || r.backwards != 0 {
			t.Errorf("%s: %d frames (%d keyframes, the first a keyframe: %v, %d going back); want %d frames, %d keyframes",
				r.track.Codec, r.frames, r.keys, r.firstKey, r.backwards, w.frames, w.keys)
		}
	}
	for _, c := range []string{"hvc1.", "av01.", "vp09."} {
		if r := byCodec[c]; r != nil && (r.track.Width != 320 || r.track.Height != 240) {
			t.Errorf("%s track %dx%d, want 320x240", r.track.Codec, r.track.Width, r.track.Height)
		}
	}
}

// TestUnsupportedCodec: a publish with a codec the catalog cannot carry
// here (G.711) is refused with a log line naming it, its connection
// closed and nothing published; the server goes on serving others.
func TestUnsupportedCodec(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	srv := startServer(t, Config{})
	c, err := clientPublish(ctx, t, srv.url+"/live", "g711")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g711 := &gortmplib.Track{Codec: &codecs.G711{MULaw: true, ChannelCount: 1}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{g711}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	for i := range 130 { // 2.6 s of 20 ms packets: past the track analysis
		if err := w.WriteG711(g711, time.Duration(i)*20*time.Millisecond, make([]byte, 160)); err != nil {
			break // the server hung up
		}
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: refused: unsupported codec G.711", "remote=127.0.0.1:", "path=live/g711")
	_ = c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := c.Read(); err != nil {
			if strings.Contains(err.Error(), "timeout") {
				t.Fatal("the server did not close the connection")
			}
			break
		}
	}
	if _, err := srv.origin.Consume("live/g711"); err == nil {
		t.Error("live/g711 was published")
	}
	if live := srv.pub.Live(); len(live) != 0 {
		t.Errorf("live: %v", live)
	}
	other, err := clientPublish(ctx, t, srv.url+"/live", "next")
	if err != nil {
		t.Fatalf("the next publisher was refused: %v", err)
	}
	other.Close()
}

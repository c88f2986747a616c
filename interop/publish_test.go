package interop

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
)

// publishReport is what web/publish.js POSTs to /report every 250 ms.
type publishReport struct {
	T          float64 `json:"t"`
	Connection string  `json:"connection"`
	Version    string  `json:"version"`
	Video      bool    `json:"video"` // the camera track is the broadcast's video source
	Audio      bool    `json:"audio"`
}

// publishServer is the page server of the browser publisher tests.
type publishServer = reportServer[publishReport]

// How long the browser publisher tests record, and what the recording
// must then hold at least (Chromium's fake camera runs at 20 to 30 fps,
// the publisher's audio is 20 ms Opus packets).
const (
	publishRecordFor      = 4 * time.Second
	publishMinVideo       = 40
	publishMinAudio       = 100
	publishMinDuration    = 2.5 // seconds
	publishPackage        = "@moq/publish"
	publishPackageVersion = "0.2.17"
)

// TestBrowserPublishRecord records what the reference browser publisher
// sends: headless Chromium with a fake camera and microphone runs the
// <moq-publish> element of @moq/publish 0.2.17 (its default codecs:
// software H.264 announced without a description, i.e. Annex B with
// in-band SPS/PPS, and Opus) over WebTransport into a moqbridge relay; a
// recorder wired as `moqbridge record` is (a raw QUIC session consuming
// the broadcast, sdk.BroadcastReader, the fMP4 sink) records it for four
// seconds. Checks: the catalog's video has no description; the file has an
// H.264 and an Opus stream; every video packet decodes, the first is a
// keyframe, there are at least 40 frames over 2.5 s and 100 audio packets;
// ffmpeg decodes the whole file without a message.
func TestBrowserPublishRecord(t *testing.T) { runPublishRecord(t, true) }

// TestBrowserPublishRecordVideoOnly is TestBrowserPublishRecord with the
// microphone off (the element's muted attribute): a video-only broadcast
// of Annex B H.264, which must record on its own.
func TestBrowserPublishRecordVideoOnly(t *testing.T) { runPublishRecord(t, false) }

func runPublishRecord(t *testing.T, audio bool) {
	requireTools(t, "node", "chromium", "node_modules")
	testkit.NeedFFmpeg(t)
	checkPackage(t, publishPackage, publishPackageVersion)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	start := time.Now()
	html, bundle := loadPage(t, "publish.html", "publish.js")
	name := "interop/browser-camera.hang"
	if !audio {
		name = "interop/browser-camera-video.hang"
	}

	var relayLog testkit.LogBuffer
	srv := serveRelay(t, protocol.ServerConfig{Logger: relayLog.Logger()})
	fp := srv.Fingerprint()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)

	ps := &publishServer{
		pageServer: &pageServer{html: html, bundle: bundle, msgs: make(chan pageMsg, 16)},
		reports:    make(chan publishReport, 1),
		latest:     true,
	}
	hs := httptest.NewServer(ps)
	t.Cleanup(hs.Close)
	query := url.Values{
		"relay": {fmt.Sprintf("https://127.0.0.1:%d/", srv.Addr().Port)},
		"hash":  {hex.EncodeToString(fp[:])},
		"name":  {name},
	}
	if !audio {
		query.Set("audio", "0")
	}
	browser := startChromium(t, hs.URL+"/?"+query.Encode(),
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
		"--autoplay-policy=no-user-gesture-required",
		"--disable-background-timer-throttling", "--disable-renderer-backgrounding")
	var recLog testkit.LogBuffer
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("page console:\n%s", tail(ps.consoleLog(), 100))
		t.Logf("chromium output (D-Bus noise left out):\n%s", tail(dropLines(browser.output(), "dbus/", "D-Bus"), 60))
		t.Logf("relay log:\n%s", tail(relayLog.String(), 60))
		t.Logf("recorder log:\n%s", tail(recLog.String(), 60))
	})
	// The page's failures end the test.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-browser.done:
				t.Errorf("chromium exited early: %v", browser.err)
				cancel()
				return
			case m := <-ps.msgs:
				t.Errorf("page: %s %s", m.Type, m.Error)
				cancel()
				return
			case <-ps.reports:
			}
		}
	}()

	// The recorder, as `moqbridge record` wires it.
	consume := moq.NewOrigin()
	t.Cleanup(consume.Close)
	sess, err := protocol.Dial(ctx, fmt.Sprintf("moql://127.0.0.1:%d", srv.Addr().Port),
		protocol.WithFingerprint(fp), protocol.WithConsume(consume), protocol.WithAnnounceInterest(name),
		protocol.WithLogger(recLog.Logger().With("side", "recorder")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	// `record` runs the sink as soon as the broadcast is announced. The
	// publisher adds its renditions to the catalog as its encoders start
	// (its first catalog is empty, the next has the video, the one after,
	// tens of ms later, the audio): the sink waits for the catalog to
	// list tracks and hold still.
	dir := t.TempDir()
	sink := fmp4sink.New(fmp4sink.Config{Dir: dir, Logger: recLog.Logger().With("side", "sink")})
	var tracks []sdk.Track
	// The recording lasts publishRecordFor from the broadcast's
	// announcement, however long the page took to start its camera.
	err = sdk.Consume(ctx, consume, name, sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
		ctx, cancel := context.WithTimeout(ctx, publishRecordFor)
		defer cancel()
		err := sink.Run(ctx, r)
		tracks = r.Tracks()
		return err
	}), sdk.ConsumeOptions{})
	if ctx.Err() != nil {
		t.Fatalf("timed out or the page failed (%v)", time.Since(start).Round(time.Millisecond))
	}
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	t.Logf("catalog: %s", describeTracks(tracks))
	var video sdk.Track
	for _, tr := range tracks {
		if tr.Kind == sdk.KindVideo {
			video = tr
		}
	}
	if !strings.HasPrefix(video.Codec, "avc1.") || len(video.DecoderConfig) != 0 {
		t.Errorf("video rendition %q with a %d-byte description; want avc1 without (Annex B)", video.Codec, len(video.DecoderConfig))
	}
	ps.setState(true, true)
	files := sink.Files()
	t.Logf("recorded %v: %+v (%v)", files, sink.Stats(), time.Since(start).Round(time.Millisecond))
	if len(files) != 1 {
		t.Fatalf("recorded %d files, want one", len(files))
	}
	f := files[0]

	streams := probeStreams(t, f)
	wantStreams := "video:h264"
	if audio {
		wantStreams = "video:h264 audio:opus"
	}
	if streams != wantStreams {
		t.Errorf("streams %q, want %q", streams, wantStreams)
	}
	v := probePackets(t, f, "v:0")
	t.Logf("video: %+v", v)
	if v.packets < publishMinVideo || v.decoded != v.packets || v.keyframes < 1 || !v.firstKey || v.badDTS > 0 {
		t.Errorf("video: %+v; want at least %d packets, all decoded, the first a keyframe, DTS increasing", v, publishMinVideo)
	}
	if v.seconds < publishMinDuration {
		t.Errorf("video spans %.2f s, want at least %.1f s", v.seconds, publishMinDuration)
	}
	if audio {
		a := probePackets(t, f, "a:0")
		t.Logf("audio: %+v", a)
		if a.packets < publishMinAudio || a.badDTS > 0 {
			t.Errorf("audio: %+v; want at least %d packets, DTS increasing", a, publishMinAudio)
		}
	}
	out, err := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-i", f, "-f", "null", "-").CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("ffmpeg decode of %s not clean (err %v):\n%s", f, err, out)
	}
}

// checkPackage checks the installed version of an npm package pinned in
// package.json.
func checkPackage(t *testing.T, name, want string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("node_modules", filepath.FromSlash(name), "package.json"))
	var pkg struct{ Version string }
	if err == nil {
		err = json.Unmarshal(raw, &pkg)
	}
	if err == nil && pkg.Version != want {
		err = fmt.Errorf("%s is %s, want %s", name, pkg.Version, want)
	}
	if err != nil {
		msg := fmt.Sprintf("interop peer missing: %s %s (%v; run `npm ci` in interop/)", name, want, err)
		testkit.Unavailable(t, "%s", msg)
	}
}

func describeTracks(ts []sdk.Track) string {
	var parts []string
	for _, tr := range ts {
		parts = append(parts, fmt.Sprintf("%s %s %s %dx%d description=%dB", tr.Kind, tr.Name, tr.Codec, tr.Width, tr.Height, len(tr.DecoderConfig)))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// probeStreams lists the file's streams as "type:codec" in order.
func probeStreams(t *testing.T, f string) string {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name", "-of", "csv=p=0", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", f, err, out)
	}
	var s []string
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		fields := strings.Split(strings.TrimSpace(line), ",")
		if len(fields) >= 2 {
			s = append(s, fields[1]+":"+fields[0])
		}
	}
	return strings.Join(s, " ")
}

// packetStats is what probePackets found for one stream.
type packetStats struct {
	packets, keyframes, decoded, badDTS int
	firstKey                            bool
	seconds                             float64 // last DTS − first DTS
}

// probePackets lists the packets and decoded frames of one stream.
func probePackets(t *testing.T, f, stream string) packetStats {
	t.Helper()
	var st packetStats
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", stream,
		"-show_entries", "packet=dts_time,flags", "-of", "compact=p=0", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", f, err, out)
	}
	var first, last float64
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		kv := map[string]string{}
		for _, p := range strings.Split(line, "|") {
			k, v, _ := strings.Cut(p, "=")
			kv[k] = v
		}
		dts, err := strconv.ParseFloat(kv["dts_time"], 64)
		if err != nil {
			st.badDTS++
			continue
		}
		key := strings.Contains(kv["flags"], "K")
		if st.packets == 0 {
			first, st.firstKey = dts, key
		} else if dts <= last {
			st.badDTS++
		}
		last = dts
		st.packets++
		if key {
			st.keyframes++
		}
	}
	st.seconds = last - first
	out, err = exec.Command("ffprobe", "-v", "error", "-select_streams", stream,
		"-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", f, err, out)
	}
	st.decoded, _ = strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(out)), ",")))
	return st
}

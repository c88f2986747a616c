package interop

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/fmp4"
)

// watchReport is what web/watch.js POSTs to /report every 250 ms: a
// snapshot of the <moq-watch> player. Timestamps are milliseconds.
type watchReport struct {
	T                 float64         `json:"t"` // performance.now() of the page
	Connection        string          `json:"connection"`
	Version           string          `json:"version"`
	Broadcast         string          `json:"broadcast"`
	Catalog           json.RawMessage `json:"catalog"` // as @moq/hang parsed it
	VideoTrack        string          `json:"videoTrack"`
	VideoCodec        string          `json:"videoCodec"`
	VideoError        string          `json:"videoError"`
	VideoSubmitted    int             `json:"videoSubmitted"` // chunks given to the VideoDecoder
	VideoBytes        int             `json:"videoBytes"`
	VideoTimestamp    *float64        `json:"videoTimestamp"`    // the decoder's presented frame
	RendererTimestamp *float64        `json:"rendererTimestamp"` // the frame on the canvas
	VideoStalled      bool            `json:"videoStalled"`
	Decoded           int             `json:"decoded"` // VideoFrames the decoder output and the player presented
	DecodedFirstTs    *float64        `json:"decodedFirstTs"`
	DecodedLastTs     *float64        `json:"decodedLastTs"`
	Width             int             `json:"width"`
	Height            int             `json:"height"`
	Pictures          int             `json:"pictures"` // distinct pixel checksums among them
	AudioTrack        string          `json:"audioTrack"`
	AudioCodec        string          `json:"audioCodec"`
	AudioBytes        int             `json:"audioBytes"`
	AudioTimestamp    *float64        `json:"audioTimestamp"`
	AudioEnabled      bool            `json:"audioEnabled"`
}

func (r watchReport) String() string {
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.0f", *p)
	}
	return fmt.Sprintf("t=%.0f %s %s broadcast=%s video=%s(%s) submitted=%d decoded=%d pictures=%d %dx%d ts=%s renderer=%s stalled=%v audio=%s(%s) bytes=%d ts=%s",
		r.T, r.Connection, r.Version, r.Broadcast, r.VideoTrack, r.VideoCodec, r.VideoSubmitted, r.Decoded, r.Pictures,
		r.Width, r.Height, f(r.VideoTimestamp), f(r.RendererTimestamp), r.VideoStalled, r.AudioTrack, r.AudioCodec, r.AudioBytes, f(r.AudioTimestamp))
}

// watchServer is the page server of TestWatchPlays: pageServer (page,
// bundle, console log, /event) plus /report.
type watchServer = reportServer[watchReport]

// What TestWatchPlays requires of the player, once it shows video: over
// watchWindow of the page's time, at least watchMinFrames more decoded
// frames, at least watchMinAdvance of media time on screen, and more than
// one distinct picture; likewise at least watchMinAdvance of audio played,
// and audio and video within watchMaxSkew of each other. The clip is
// 30 fps, published in real time.
const (
	watchWindow     = 3 * time.Second
	watchMinFrames  = 45
	watchMinAdvance = 2 * time.Second
	watchMaxSkew    = time.Second
	watchBroadcast  = "interop/clip.hang"
)

// TestWatchPlays plays a moqbridge broadcast in headless Chromium with the
// reference web player, @moq/watch 0.4.6 (its <moq-watch> element, on
// @moq/net over WebTransport with the relay's certificate pinned by hash).
// The broadcast is sources/fmp4/testdata/h264_aac_bframes.mp4 (H.264 High
// with B-frames, 160x96 at 30 fps, plus AAC-LC), looped in real time by the
// moqbridge fMP4 source through sdk.BroadcastWriter into a relay, wired as
// `moqbridge publish` does. Checks: the relay's only WebTransport session
// negotiated moq-lite-04, and over three seconds of playback the player
// decodes and presents frames of the catalog's video rendition whose
// timestamps advance, with changing pictures, and plays the AAC rendition
// (its AudioWorklet's playback position advances, in step with the video).
func TestWatchPlays(t *testing.T) {
	requireTools(t, "node", "chromium", "node_modules")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	html, bundle := loadPage(t, "watch.html", "watch.js")

	// The relay.
	var relayLog testkit.LogBuffer
	srv := serveRelay(t, protocol.ServerConfig{Logger: relayLog.Logger()})
	fp := srv.Fingerprint()

	// The helper goroutines end with ctx, which the deferred cancel ends
	// before any cleanup runs.
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)

	// The publisher, as cmd/moqbridge publish wires it: the source run
	// into a broadcast of an Origin (sdk.Publish) served over a raw QUIC
	// session.
	src, err := fmp4.Open(filepath.Join("..", "sources", "fmp4", "testdata", "h264_aac_bframes.mp4"), fmp4.Options{Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	origin := moq.NewOrigin()
	t.Cleanup(origin.Close)
	pubSess, err := protocol.Dial(ctx, fmt.Sprintf("moql://127.0.0.1:%d", srv.Addr().Port),
		protocol.WithFingerprint(fp), protocol.WithPublish(origin), protocol.WithLogger(relayLog.Logger().With("side", "publisher")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pubSess.Close() })
	pubErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		pubErr <- sdk.Publish(ctx, origin, watchBroadcast, src, sdk.PublishOptions{})
	}()
	waitAnnounced(t, ctx, srv.Origin(), watchBroadcast)
	t.Logf("%s published (%v)", watchBroadcast, time.Since(start).Round(time.Millisecond))

	playWatch(t, ctx, watchCase{srv: srv, relayLog: &relayLog, html: html, bundle: bundle,
		name: watchBroadcast, start: start, stopped: pubErr})
	cancel()
	if err := <-pubErr; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("publisher: %v", err)
	}
}

// watchCase is what playWatch needs: the relay and the broadcast the page
// plays, the test's start (for the timings it logs) and how it learns that
// the publisher stopped.
type watchCase struct {
	srv          *protocol.Server
	relayLog     *testkit.LogBuffer
	html, bundle []byte // loadPage("watch.html", "watch.js")
	name         string // the broadcast
	start        time.Time
	stopped      <-chan error // anything received fails the test: the publisher stopped
	// onReport, if set, is called with every report and when it arrived.
	onReport func(r watchReport, at time.Time)
	// playUntil, if set, holds the checks back until it accepts a report:
	// the checked window then runs from the first presented frame to it.
	playUntil func(r watchReport) bool
}

// playWatch runs headless Chromium on the watch page playing wc.name from
// wc.srv and checks the playback as TestWatchPlays describes. It returns
// the first report with a presented frame and the report the checks
// passed on, once the page has been told to close the player; it fails
// the test when a check fails, ctx ends or wc.stopped delivers first.
func playWatch(t *testing.T, ctx context.Context, wc watchCase) (watchReport, watchReport) {
	t.Helper()
	srv, start := wc.srv, wc.start
	fp := srv.Fingerprint()

	// The page server.
	ws := &watchServer{
		pageServer: &pageServer{html: wc.html, bundle: wc.bundle, msgs: make(chan pageMsg, 16)},
		reports:    make(chan watchReport, 64),
	}
	hs := httptest.NewServer(ws)
	t.Cleanup(hs.Close)

	// Chromium. WebCodecs needs a secure context: the page is on
	// http://127.0.0.1, which is one.
	query := url.Values{
		"relay": {fmt.Sprintf("https://127.0.0.1:%d/", srv.Addr().Port)},
		"hash":  {hex.EncodeToString(fp[:])},
		"name":  {wc.name},
	}
	browser := startChromium(t, hs.URL+"/?"+query.Encode(),
		"--autoplay-policy=no-user-gesture-required",
		"--disable-background-timer-throttling", "--disable-renderer-backgrounding")
	var last watchReport
	// Registered last, so it runs first: diagnostics while all is alive.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("last page report: %v", last)
		t.Logf("page console:\n%s", tail(ws.consoleLog(), 200))
		t.Logf("chromium output (D-Bus noise left out):\n%s", tail(dropLines(browser.output(), "dbus/", "D-Bus"), 80))
		t.Logf("relay log:\n%s", tail(wc.relayLog.String(), 80))
	})

	var (
		versionChecked bool
		base           *watchReport // the first report with a presented frame
		prevTs         float64
		audioBase      *watchReport // the first report with audio playing
		prevAudio      float64
	)
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v; last report: %v", time.Since(start).Round(time.Millisecond), last)
		case <-browser.done:
			t.Fatalf("chromium exited early: %v", browser.err)
		case err := <-wc.stopped:
			t.Fatalf("publisher stopped: %v", err)
		case m := <-ws.msgs:
			t.Fatalf("page: %s %s", m.Type, m.Error)
		case r := <-ws.reports:
			if wc.onReport != nil {
				wc.onReport(r, time.Now())
			}
			if r.VideoError != "" {
				t.Fatalf("player: video source error: %s", r.VideoError)
			}
			if last.Version == "" && r.Version != "" {
				t.Logf("page connected: %s (%v)", r.Version, time.Since(start).Round(time.Millisecond))
			}
			if last.Broadcast != r.Broadcast {
				t.Logf("player broadcast status %s (%v)", r.Broadcast, time.Since(start).Round(time.Millisecond))
			}
			if last.VideoTrack == "" && r.VideoTrack != "" {
				t.Logf("player chose video %s (%s), audio %q (%s); catalog as parsed: %s",
					r.VideoTrack, r.VideoCodec, r.AudioTrack, r.AudioCodec, r.Catalog)
			}
			last = r
			if r.Version != "" && !versionChecked {
				if r.Version != protocol.Lite04.String() {
					t.Fatalf("page negotiated %q, want %s", r.Version, protocol.Lite04)
				}
				checkRelaySide(t, srv, chromiumCase{transport: "webtransport", version: protocol.Lite04})
				versionChecked = true
			}
			if r.AudioTimestamp != nil && *r.AudioTimestamp > 0 && r.AudioBytes > 0 {
				if *r.AudioTimestamp < prevAudio {
					t.Fatalf("audio playback timestamp went back from %.0f to %.0f ms", prevAudio, *r.AudioTimestamp)
				}
				prevAudio = *r.AudioTimestamp
				if audioBase == nil {
					audioBase = &r
					t.Logf("audio playing: %v (%v)", r, time.Since(start).Round(time.Millisecond))
				}
			}
			if r.VideoTimestamp == nil || r.Decoded == 0 {
				continue
			}
			if *r.VideoTimestamp < prevTs {
				t.Fatalf("presented video timestamp went back from %.0f to %.0f ms", prevTs, *r.VideoTimestamp)
			}
			prevTs = *r.VideoTimestamp
			if base == nil {
				base = &r
				t.Logf("first presented frame: %v (%v)", r, time.Since(start).Round(time.Millisecond))
				continue
			}
			window := float64(watchWindow.Milliseconds())
			if r.T-base.T < window || audioBase == nil || r.AudioTimestamp == nil || r.T-audioBase.T < window {
				continue
			}
			if wc.playUntil != nil && !wc.playUntil(r) {
				continue
			}
			frames := r.Decoded - base.Decoded
			advance := *r.VideoTimestamp - *base.VideoTimestamp
			audioAdvance := *r.AudioTimestamp - *audioBase.AudioTimestamp
			skew := *r.VideoTimestamp - *r.AudioTimestamp
			t.Logf("after %.0f ms of page time: %d frames decoded and presented, video time advanced %.0f ms, %d distinct pictures; "+
				"audio time advanced %.0f ms in %.0f ms; video − audio %.0f ms; %v",
				r.T-base.T, frames, advance, r.Pictures, audioAdvance, r.T-audioBase.T, skew, r)
			if !versionChecked {
				t.Fatalf("the page never reported its connection's version")
			}
			if frames < watchMinFrames {
				t.Errorf("%d frames decoded in %.0f ms, want at least %d", frames, r.T-base.T, watchMinFrames)
			}
			if advance < float64(watchMinAdvance.Milliseconds()) {
				t.Errorf("video time advanced %.0f ms in %.0f ms, want at least %v", advance, r.T-base.T, watchMinAdvance)
			}
			if r.Pictures < 2 {
				t.Errorf("%d distinct pictures among the decoded frames, want more", r.Pictures)
			}
			if audioAdvance < float64(watchMinAdvance.Milliseconds()) {
				t.Errorf("audio time advanced %.0f ms in %.0f ms, want at least %v", audioAdvance, r.T-audioBase.T, watchMinAdvance)
			}
			if skew < -float64(watchMaxSkew.Milliseconds()) || skew > float64(watchMaxSkew.Milliseconds()) {
				t.Errorf("video is %.0f ms ahead of audio, want within ±%v", skew, watchMaxSkew)
			}
			if r.Width == 0 || r.Height == 0 {
				t.Errorf("decoded frames are %dx%d", r.Width, r.Height)
			}
			if t.Failed() {
				t.FailNow()
			}
			t.Logf("playback checks passed (%v)", time.Since(start).Round(time.Millisecond))
			// Let the page close the player.
			ws.setState(true, true)
			return *base, r
		}
	}
}

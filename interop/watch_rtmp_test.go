package interop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtmp"
)

// The stream ffmpeg pushes in TestWatchPlaysRTMP: a 320x240 test pattern at
// 30 fps with a keyframe every second, and a 48 kHz sine, for at most
// rtmpPushDuration (the test ends long before, once the checks pass).
const (
	rtmpWatchWidth   = 320
	rtmpWatchHeight  = 240
	rtmpPushDuration = 40 * time.Second
	rtmpWatchPath    = "live/x"
)

// TestWatchPlaysRTMP plays an RTMP-ingested stream in headless Chromium
// with @moq/watch 0.4.6: Debian's ffmpeg pushes a live H.264 + AAC test
// stream (-re) to moqbridge's RTMP server (sources/rtmp), which publishes
// it as live/x into the relay's Origin, wired as `moqbridge serve --rtmp`
// does; the page plays live/x over WebTransport. The checks are those of
// TestWatchPlays (playWatch), plus the decoded picture size. Two encodings:
// without B-frames (-tune zerolatency -bf 0) and with them (x264's default
// for -preset veryfast, so the composition offsets of the FLV tags matter).
//
// It also logs what it observes of start-up and latency: from ffmpeg's
// start to the broadcast in the relay and to the first presented frame,
// and at every report the latency of the presented frame, measured against
// the relay's clock (when the relay received frames of that media time)
// and against ffmpeg's start (an upper bound that includes the encoder).
func TestWatchPlaysRTMP(t *testing.T) {
	for _, tc := range []struct {
		name string
		x264 []string
	}{
		{"no-bframes", []string{"-tune", "zerolatency", "-bf", "0"}},
		{"bframes", []string{"-bf", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) { watchRTMP(t, tc.x264) })
	}
}

func watchRTMP(t *testing.T, x264 []string) {
	requireTools(t, "node", "chromium", "node_modules")
	testkit.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	html, bundle := loadPage(t, "watch.html", "watch.js")

	// The relay, and the RTMP ingest publishing into its Origin.
	var relayLog testkit.LogBuffer
	srv := serveRelay(t, protocol.ServerConfig{Logger: relayLog.Logger()})
	ingest := rtmp.NewServer(rtmp.Config{Addr: "127.0.0.1:0", Logger: relayLog.Logger()})
	if err := ingest.Listen(); err != nil {
		t.Fatal(err)
	}
	pub := sdk.NewPublisher(srv.Origin(), sdk.PublisherOptions{})
	t.Cleanup(pub.Close)

	// The helper goroutines end with ctx, which the deferred cancel ends
	// before any cleanup runs.
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	ingestErr := make(chan error, 1)
	wg.Go(func() { ingestErr <- ingest.Run(ctx, pub) })

	// ffmpeg, killed at cleanup if it is still pushing.
	ffStart := time.Now()
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=%dx%d:rate=30", rtmpWatchWidth, rtmpWatchHeight),
		"-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-map", "0:v:0", "-map", "1:a:0",
		"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
		"-g", "30", "-keyint_min", "30", "-sc_threshold", "0"}
	args = append(args, x264...)
	args = append(args, "-c:a", "aac", "-b:a", "96k", "-ar", "48000", "-ac", "1",
		"-t", strconv.Itoa(int(rtmpPushDuration.Seconds())),
		"-f", "flv", fmt.Sprintf("rtmp://%s/%s", ingest.Addr(), rtmpWatchPath))
	ff := startProcess(t, "ffmpeg", args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ffmpeg %v\noutput:\n%s", args, tail(ff.output(), 40))
		}
	})

	// Anything on stopped ends the test: ffmpeg or the ingest stopped
	// before the checks passed.
	stopped := make(chan error, 1)
	wg.Go(func() {
		select {
		case <-ff.done:
			stopped <- fmt.Errorf("ffmpeg exited: %v", ff.err)
		case err := <-ingestErr:
			stopped <- fmt.Errorf("RTMP server stopped: %v", err)
			ingestErr <- err // for the end of the test
		case <-ctx.Done():
		}
	})

	waitAnnounced(t, ctx, srv.Origin(), rtmpWatchPath)
	announced := time.Since(ffStart)
	t.Logf("%s published (%v after ffmpeg started; gortmplib analyses up to 2 s of media before that)",
		rtmpWatchPath, announced.Round(time.Millisecond))

	// The relay's clock: when it received each media time of the video.
	arrival := &arrivalClock{}
	probeErr := make(chan error, 1)
	wg.Go(func() { probeErr <- sdk.Consume(ctx, srv.Origin(), rtmpWatchPath, arrival, sdk.ConsumeOptions{}) })

	// Per report with a presented frame: relay-to-screen latency and
	// ffmpeg-to-screen latency of that frame, in milliseconds.
	var relayLat, ffLat []float64
	var firstFrame time.Time // when the first report with a presented frame arrived
	onReport := func(r watchReport, at time.Time) {
		if r.VideoTimestamp == nil || r.Decoded == 0 {
			return
		}
		if firstFrame.IsZero() {
			firstFrame = at
		}
		media := time.Duration(*r.VideoTimestamp * float64(time.Millisecond))
		if zero, ok := arrival.zero(); ok {
			relayLat = append(relayLat, float64(at.Sub(zero.Add(media)).Milliseconds()))
		}
		ffLat = append(ffLat, float64((at.Sub(ffStart) - media).Milliseconds()))
	}
	first, last := playWatch(t, ctx, watchCase{srv: srv, relayLog: &relayLog, html: html, bundle: bundle,
		name: rtmpWatchPath, start: start, stopped: stopped, onReport: onReport})
	if last.Width != rtmpWatchWidth || last.Height != rtmpWatchHeight {
		t.Errorf("decoded frames are %dx%d, want %dx%d", last.Width, last.Height, rtmpWatchWidth, rtmpWatchHeight)
	}
	if !strings.HasPrefix(last.VideoCodec, "avc1.64") || last.AudioCodec != "mp4a.40.2" {
		t.Errorf("the player plays %s and %s, want H.264 High (avc1.64…) and AAC-LC (mp4a.40.2)", last.VideoCodec, last.AudioCodec)
	}
	// Chromium is started once the broadcast is in the relay: the time from
	// there to the first frame is mostly the browser's start.
	t.Logf("start-up: broadcast in the relay %v after ffmpeg started; first presented frame %v after ffmpeg started (%v after the broadcast was announced, Chromium's start included), at media time %.0f ms (%d frames decoded by then)",
		announced.Round(time.Millisecond), firstFrame.Sub(ffStart).Round(time.Millisecond),
		(firstFrame.Sub(ffStart) - announced).Round(time.Millisecond), *first.VideoTimestamp, first.Decoded)
	t.Logf("latency of the presented frame over %d reports: relay to screen %s; ffmpeg start to screen (encoder included) %s",
		len(ffLat), spread(relayLat), spread(ffLat))

	cancel()
	wg.Wait()
	if err := <-probeErr; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("relay-side probe: %v", err)
	}
	if err := <-ingestErr; err != nil {
		t.Errorf("RTMP server: %v", err)
	}
}

// arrivalClock is a sink that reads the broadcast's video track in the
// relay and keeps the earliest wall time of media time 0 implied by its
// frames (arrival − PTS): when the relay had a frame of a given media time
// at the earliest. The player's clock is made the same way.
type arrivalClock struct {
	mu  sync.Mutex
	min time.Time
}

func (a *arrivalClock) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	if err := r.WaitCatalog(ctx); err != nil {
		return err
	}
	var video string
	for _, tr := range r.Tracks() {
		if tr.Kind == sdk.KindVideo {
			video = tr.Name
			break
		}
	}
	if video == "" {
		return errors.New("the catalog has no video track")
	}
	tr, err := r.Subscribe(video)
	if err != nil {
		return err
	}
	defer tr.Close()
	for {
		f, err := tr.ReadFrame(ctx)
		if err != nil {
			return err
		}
		zero := time.Now().Add(-f.PTS)
		a.mu.Lock()
		if a.min.IsZero() || zero.Before(a.min) {
			a.min = zero
		}
		a.mu.Unlock()
	}
}

// zero returns the wall time of media time 0, once a frame has arrived.
func (a *arrivalClock) zero() (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.min, !a.min.IsZero()
}

// spread summarises values in milliseconds as min/median/max.
func spread(v []float64) string {
	if len(v) == 0 {
		return "(none)"
	}
	s := append([]float64(nil), v...)
	slices.Sort(s)
	return fmt.Sprintf("min %.0f ms, median %.0f ms, max %.0f ms", s[0], s[len(s)/2], s[len(s)-1])
}

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
		t.Run(tc.name, func(t *testing.T) { watchRTMP(t, tc.x264, 0) })
	}
}

// TestWatchPlaysRTMPReconnect: the encoder drops while the player plays:
// ffmpeg stops after 3 s and a new ffmpeg publishes with the same stream
// key half a second later, its timestamps from 0 again. The broadcast
// lingers and continues (sources/rtmp), and the player plays on through
// the reconnection: the checks of TestWatchPlays, whose 3 s window spans
// it, still pass.
func TestWatchPlaysRTMPReconnect(t *testing.T) {
	watchRTMP(t, []string{"-tune", "zerolatency", "-bf", "0"}, 3*time.Second)
}

// watchRTMP plays what ffmpeg pushes with the x264 options; with reconnect
// > 0 the first ffmpeg stops after that long and a second one takes over.
func watchRTMP(t *testing.T, x264 []string, reconnect time.Duration) {
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
	push := func(d time.Duration) []string {
		return append(slices.Clone(args), "-c:a", "aac", "-b:a", "96k", "-ar", "48000", "-ac", "1",
			"-t", strconv.FormatFloat(d.Seconds(), 'f', -1, 64),
			"-f", "flv", fmt.Sprintf("rtmp://%s/%s", ingest.Addr(), rtmpWatchPath))
	}
	firstPush := rtmpPushDuration
	if reconnect > 0 {
		firstPush = reconnect
	}
	ff := startProcess(t, "ffmpeg", push(firstPush)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ffmpeg %v\noutput:\n%s", args, tail(ff.output(), 40))
		}
	})
	// With reconnect, the first ffmpeg ends by itself while the page
	// plays, and a report after that starts the second (startProcess
	// belongs to the test's goroutine); second hands it to the watcher.
	second := make(chan *process, 1)
	var firstEnded time.Time

	// Anything on stopped ends the test: ffmpeg or the ingest stopped
	// before the checks passed.
	stopped := make(chan error, 1)
	wg.Go(func() {
		cur := ff
		for {
			select {
			case <-cur.done:
				if reconnect > 0 && cur == ff && cur.err == nil {
					select {
					case cur = <-second:
						continue
					case <-ctx.Done():
						return
					}
				}
				stopped <- fmt.Errorf("ffmpeg exited: %v", cur.err)
			case err := <-ingestErr:
				stopped <- fmt.Errorf("RTMP server stopped: %v", err)
				ingestErr <- err // for the end of the test
			case <-ctx.Done():
			}
			return
		}
	})
	startSecond := func() {
		if reconnect == 0 || second == nil {
			return
		}
		select {
		case <-ff.done:
		default:
			return
		}
		if firstEnded.IsZero() {
			firstEnded = time.Now()
		}
		if time.Since(firstEnded) < 500*time.Millisecond {
			return
		}
		second <- startProcess(t, "ffmpeg", push(rtmpPushDuration)...)
		second = nil
		t.Logf("the first ffmpeg ended; a second one publishes (%v after ffmpeg started)", time.Since(ffStart).Round(time.Millisecond))
	}

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
		startSecond()
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
	var playUntil func(watchReport) bool
	if reconnect > 0 {
		// The checked window must reach a second into what the second
		// ffmpeg sent: the player played on through the reconnection.
		playUntil = func(r watchReport) bool {
			resumed, ok := arrival.resumedAt()
			return ok && *r.VideoTimestamp >= float64((resumed+time.Second).Milliseconds()) &&
				*r.AudioTimestamp >= float64((resumed+time.Second).Milliseconds())
		}
	}
	first, last := playWatch(t, ctx, watchCase{srv: srv, relayLog: &relayLog, html: html, bundle: bundle,
		name: rtmpWatchPath, start: start, stopped: stopped, onReport: onReport, playUntil: playUntil})
	if reconnect > 0 {
		resumed, _ := arrival.resumedAt()
		t.Logf("the second ffmpeg's frames start at media time %v; the player presented video up to %.0f ms",
			resumed, *last.VideoTimestamp)
		relayLog.WaitLog(t, 5*time.Second, "rtmp: publisher returned; the broadcast continues")
	}
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
	mu      sync.Mutex
	min     time.Time
	last    time.Time     // when the latest frame arrived
	resumed time.Duration // the PTS of the first frame after 300 ms without any
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
		now := time.Now()
		if a.resumed == 0 && !a.last.IsZero() && now.Sub(a.last) > 300*time.Millisecond {
			a.resumed = f.PTS
		}
		a.last = now
		a.mu.Unlock()
	}
}

// resumedAt returns the media time where the video resumed after a gap
// (a publisher that returned), once it has.
func (a *arrivalClock) resumedAt() (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.resumed, a.resumed > 0
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

package interop

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtp"
)

// The stream ffmpeg sends in TestWatchPlaysRTP: a 320x240 test pattern at
// 30 fps with a keyframe every second, and a 48 kHz stereo sine, for at
// most rtpSendDuration (the test ends long before, once the checks pass).
const (
	rtpWatchWidth   = 320
	rtpWatchHeight  = 240
	rtpSendDuration = 40 * time.Second
	rtpWatchPath    = "live/rtp"

	// rtpFirstPacketTime is the broadcast time sources/rtp gives the
	// session's first packet (its clock starts there, not at 0, so that a
	// stream the sender reports place slightly earlier stays positive).
	// RTP timestamps carry no origin of their own: the latency from
	// ffmpeg's start is measured against it.
	rtpFirstPacketTime = time.Second
)

// rtpWatchSDP is the session description of what ffmpeg sends, as its
// -sdp_file writes it (hang-format.md §6.2: no sprop-parameter-sets, so
// the H.264 track comes from the parameter sets in band), with the video
// and audio ports to fill in.
const rtpWatchSDP = `v=0
o=- 0 0 IN IP4 127.0.0.1
s=No Name
t=0 0
m=video %d RTP/AVP 96
c=IN IP4 127.0.0.1
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=1
m=audio %d RTP/AVP 111
c=IN IP4 127.0.0.1
a=rtpmap:111 opus/48000/2
a=fmtp:111 sprop-stereo=1
`

// TestWatchPlaysRTP plays an RTP-ingested stream in headless Chromium with
// @moq/watch 0.4.6: Debian's ffmpeg sends a live H.264 (x264 zerolatency,
// no B-frames) + Opus test stream (-re) over RTP to loopback ports, which
// moqbridge's RTP source (sources/rtp) receives and publishes as live/rtp
// into the relay's own Origin (sdk.Publish), as `moqbridge serve
// --rtp-sdp` does; the page plays live/rtp over WebTransport. The session
// description is written here for fixed free ports and the source listens
// before ffmpeg starts, so no packet is sent to a closed port; ffmpeg's
// own -sdp_file must describe the same media. The checks are those of
// TestWatchPlays (playWatch), plus the decoded picture size, the
// catalog's codecs (H.264 High, Opus) and the source's counters (on
// loopback nothing lost, damaged or invalid, and a sender report of each
// media, which puts both on ffmpeg's clock).
//
// Like TestWatchPlaysRTMP it logs start-up (from ffmpeg's start to the
// broadcast in the relay and to the first presented frame) and, at every
// report, the latency of the presented frame against the relay's clock
// and against ffmpeg's start.
func TestWatchPlaysRTP(t *testing.T) {
	requireTools(t, "node", "chromium", "node_modules")
	testkit.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	html, bundle := loadPage(t, "watch.html", "watch.js")

	// The relay, and the RTP source listening on the ports of the session
	// description: video on port, audio on port+2, their RTCP on the next.
	var relayLog testkit.LogBuffer
	srv := serveRelay(t, protocol.ServerConfig{Logger: relayLog.Logger()})
	port := testkit.FreeUDPPorts(t, 4)
	src, err := rtp.New(rtp.Config{SDP: fmt.Sprintf(rtpWatchSDP, port, port+2), Logger: relayLog.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() }) // in case Run never ran
	addrs := src.Addrs()

	// The helper goroutines end with ctx, which the deferred cancel ends
	// before any cleanup runs.
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	published := make(chan error, 1)
	wg.Go(func() {
		published <- sdk.Publish(ctx, srv.Origin(), rtpWatchPath, src, sdk.PublishOptions{})
	})

	// ffmpeg, killed at cleanup if it is still sending.
	sdpPath := filepath.Join(t.TempDir(), "ffmpeg.sdp")
	dest := func(a rtp.MediaAddrs) string {
		return fmt.Sprintf("rtp://%s?pkt_size=1200&rtcpport=%d", a.RTP, a.RTCP.Port())
	}
	secs := fmt.Sprint(rtpSendDuration.Seconds())
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-t", secs, "-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=%dx%d:rate=30", rtpWatchWidth, rtpWatchHeight),
		"-re", "-t", secs, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-map", "0:v:0", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "high",
		"-pix_fmt", "yuv420p", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-bf", "0", "-b:v", "500k",
		"-payload_type", "96", "-f", "rtp", dest(addrs[0]),
		"-map", "1:a:0", "-c:a", "libopus", "-b:a", "96k", "-ar", "48000", "-ac", "2", "-application", "lowdelay",
		"-frame_duration", "20", "-payload_type", "111", "-f", "rtp", dest(addrs[1]),
		"-sdp_file", sdpPath}
	ffStart := time.Now()
	ff := startProcess(t, "ffmpeg", args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ffmpeg %v\noutput:\n%s", args, tail(ff.output(), 40))
			t.Logf("RTP source counters: %+v", src.Stats())
		}
	})

	// Anything on stopped ends the test: ffmpeg or the source stopped
	// before the checks passed.
	stopped := make(chan error, 1)
	wg.Go(func() {
		select {
		case <-ff.done:
			stopped <- fmt.Errorf("ffmpeg exited: %v", ff.err)
		case err := <-published:
			stopped <- fmt.Errorf("RTP source stopped: %v", err)
			published <- err // for the end of the test
		case <-ctx.Done():
		}
	})

	waitAnnounced(t, ctx, srv.Origin(), rtpWatchPath)
	announced := time.Since(ffStart)
	t.Logf("%s published (%v after ffmpeg started)", rtpWatchPath, announced.Round(time.Millisecond))
	checkFFmpegSDP(t, sdpPath, src.Session())

	// The relay's clock: when it received each media time of the video.
	arrival := &arrivalClock{}
	probeErr := make(chan error, 1)
	wg.Go(func() { probeErr <- sdk.Consume(ctx, srv.Origin(), rtpWatchPath, arrival, sdk.ConsumeOptions{}) })

	// Per report with a presented frame: relay-to-screen latency and
	// ffmpeg-to-screen latency of that frame, in milliseconds. ffmpeg's
	// first packets are at rtpFirstPacketTime on the broadcast clock, and
	// -re sends the rest in real time after them.
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
		ffLat = append(ffLat, float64((at.Sub(ffStart) - (media - rtpFirstPacketTime)).Milliseconds()))
	}
	first, last := playWatch(t, ctx, watchCase{srv: srv, relayLog: &relayLog, html: html, bundle: bundle,
		name: rtpWatchPath, start: start, stopped: stopped, onReport: onReport})
	if last.Width != rtpWatchWidth || last.Height != rtpWatchHeight {
		t.Errorf("decoded frames are %dx%d, want %dx%d", last.Width, last.Height, rtpWatchWidth, rtpWatchHeight)
	}
	if !strings.HasPrefix(last.VideoCodec, "avc1.64") || last.AudioCodec != "opus" {
		t.Errorf("the player plays %s and %s, want H.264 High (avc1.64…) and Opus", last.VideoCodec, last.AudioCodec)
	}
	t.Logf("start-up: broadcast in the relay %v after ffmpeg started; first presented frame %v after ffmpeg started (%v after the broadcast was announced, Chromium's start included), at broadcast time %.0f ms (ffmpeg's first packet at %v; %d frames decoded by then)",
		announced.Round(time.Millisecond), firstFrame.Sub(ffStart).Round(time.Millisecond),
		(firstFrame.Sub(ffStart) - announced).Round(time.Millisecond), *first.VideoTimestamp, rtpFirstPacketTime, first.Decoded)
	t.Logf("latency of the presented frame over %d reports: relay to screen %s; ffmpeg start to screen (encoder included) %s",
		len(ffLat), spread(relayLat), spread(ffLat))

	// A clean loopback: nothing lost, damaged or invalid, and the sender
	// reports placed both media on ffmpeg's clock.
	for i, st := range src.Stats() {
		t.Logf("RTP %s: %+v", src.Session().Medias[i].Describe(), st)
		if st.Lost+st.Damaged+st.Invalid != 0 || st.SenderReports == 0 {
			t.Errorf("RTP %s: %+v, want no loss and sender reports", src.Session().Medias[i].Describe(), st)
		}
	}

	cancel()
	wg.Wait()
	if err := <-probeErr; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("relay-side probe: %v", err)
	}
	if err := <-published; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("RTP source: %v", err)
	}
}

// checkFFmpegSDP checks that the session description ffmpeg wrote
// (-sdp_file, written once its outputs started, so by the time the
// broadcast is in the relay) describes the media the source receives: the
// same types, addresses, ports and payload formats.
func checkFFmpegSDP(t *testing.T, path string, want *rtp.Session) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("ffmpeg's SDP: %v", err)
	}
	got, err := rtp.ParseSDP(text)
	if err != nil {
		t.Fatalf("ffmpeg's SDP: %v\n%s", err, text)
	}
	if len(got.Medias) != len(want.Medias) {
		t.Fatalf("ffmpeg's SDP has %d media, want %d:\n%s", len(got.Medias), len(want.Medias), text)
	}
	for i, g := range got.Medias {
		w := want.Medias[i]
		if g.Describe() != w.Describe() || g.Addr != w.Addr || g.RTCPPort != w.RTCPPort {
			t.Errorf("ffmpeg's SDP: %s at %v (RTCP %d), want %s at %v (RTCP %d):\n%s",
				g.Describe(), g.Addr, g.RTCPPort, w.Describe(), w.Addr, w.RTCPPort, text)
		}
	}
}

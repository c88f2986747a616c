package rtp

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sinks/fmp4"
)

// TestFFmpegToRecording sends H.264 + Opus over RTP with ffmpeg, as
// hang-format.md §6.2 does, into the source, and records the broadcast
// with the fMP4 sink: the recording passes the checks of check-fmp4.sh,
// and its audio and video start within one video frame of each other.
func TestFFmpegToRecording(t *testing.T) {
	testkit.NeedFFmpeg(t)
	st, v, a := ffmpegToRecording(t, nil, "baseline", 0, 0)
	for i, s := range st {
		if s.Lost+s.Damaged+s.Invalid != 0 || s.SenderReports == 0 {
			t.Errorf("media %d: %+v", i, s)
		}
	}
	if v.Packets < 110 || v.Keyframes < 4 || a.Packets < 190 {
		t.Errorf("video %+v, audio %+v: want about 120 frames with 4 keyframes and 200 audio packets", v, a)
	}
}

// TestFFmpegImpaired puts a seeded impairment proxy between ffmpeg and
// the source (the kernel here has no netem): 5 % loss, 50 ms ± 20 ms of
// jitter (so reordering), 2 % duplication. The recording stays clean by
// the same checks; video loses whole GOP tails only.
func TestFFmpegImpaired(t *testing.T) {
	testkit.NeedFFmpeg(t)
	st, v, a := ffmpegToRecording(t, &proxyConfig{loss: 0.05, delay: 50 * time.Millisecond, jitter: 20 * time.Millisecond, dup: 0.02, seed: 9}, "baseline", 0, 0)
	if st[0].Lost == 0 || st[0].Damaged+st[0].Skipped == 0 || st[1].Lost == 0 {
		t.Errorf("losses not counted: video %+v, audio %+v", st[0], st[1])
	}
	if v.Packets == 0 || a.Packets == 0 {
		t.Errorf("video %+v, audio %+v", v, a)
	}
}

// TestFFmpegBFrames: H.264 High with B-frames, whose RTP timestamps (the
// presentation times) go back and forth in decode order.
func TestFFmpegBFrames(t *testing.T) {
	testkit.NeedFFmpeg(t)
	st, v, a := ffmpegToRecording(t, nil, "high", 2, 0)
	if st[0].Lost+st[0].Damaged+st[0].Skipped != 0 || st[0].Frames != 120 {
		t.Errorf("video %+v", st[0])
	}
	if v.Packets != 120 || v.Decoded != 120 || a.Packets < 190 {
		t.Errorf("video %+v, audio %+v: want 120 frames and about 200 audio packets", v, a)
	}
}

// TestFFmpegJoinMidStream starts the source and the recording while
// ffmpeg has been sending for 1.5 s, half-way between two keyframes: the
// audio before the first video keyframe is dropped, so that the
// recording's audio and video start within one audio frame (20 ms) of
// each other.
func TestFFmpegJoinMidStream(t *testing.T) {
	testkit.NeedFFmpeg(t)
	st, v, a := ffmpegToRecording(t, nil, "baseline", 0, 1500*time.Millisecond)
	if st[0].Lost+st[0].Damaged+st[0].Invalid+st[1].Lost+st[1].Damaged+st[1].Invalid != 0 {
		t.Errorf("video %+v, audio %+v", st[0], st[1])
	}
	if st[1].Skipped == 0 {
		t.Errorf("no audio frame skipped before the first video keyframe: %+v", st[1])
	}
	if v.Packets == 0 || a.Packets == 0 {
		t.Errorf("video %+v, audio %+v", v, a)
	}
}

// ffmpegToRecording runs ffmpeg's H.264 (profile, with bframes B-frames)
// and Opus over RTP into the source, through the impairment proxy if
// impair is set, and records the broadcast. With joinAfter, the source
// and the recording start that long after ffmpeg.
func ffmpegToRecording(t *testing.T, impair *proxyConfig, profile string, bframes int, joinAfter time.Duration) ([]MediaStats, testkit.FMP4Check, testkit.FMP4Check) {
	t.Helper()
	ctx := testkit.Context(t, 60*time.Second)
	lb := &testkit.LogBuffer{}
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	}()
	src, err := New(Config{
		SDPFile: "testdata/ffmpeg-h264-opus.sdp",
		Listen:  []string{"127.0.0.1:0", "127.0.0.1:0"},
		Timeout: time.Second, // Run ends a second after ffmpeg
		Logger:  lb.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Listen(); err != nil {
		t.Fatal(err)
	}
	addrs := src.Addrs()
	if impair != nil {
		addrs = startProxy(t, *impair, addrs)
	}
	if joinAfter > 0 {
		// The ports are free until Run listens again: what ffmpeg sends
		// meanwhile is lost, as to a receiver that was not there yet.
		src.Close()
	}

	origin := moq.NewOrigin()
	defer origin.Close()
	published := make(chan error, 1)
	sink := fmp4.New(fmp4.Config{Dir: t.TempDir(), Path: "live/rtp", Logger: lb.Logger()})
	recorded := make(chan error, 1)
	record := func() {
		go func() { published <- sdk.Publish(ctx, origin, "live/rtp", src, sdk.PublishOptions{}) }()
		go func() { recorded <- sdk.Consume(ctx, origin, "live/rtp", sink, sdk.ConsumeOptions{}) }()
	}
	if joinAfter == 0 {
		record()
	}

	url := func(a MediaAddrs) string {
		return fmt.Sprintf("rtp://%s?pkt_size=1200&rtcpport=%d", a.RTP, a.RTCP.Port())
	}
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-t", "4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
		"-re", "-t", "4", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-map", "0:v:0", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", profile,
		"-pix_fmt", "yuv420p", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-bf", fmt.Sprint(bframes), "-b:v", "500k",
		"-payload_type", "96", "-ssrc", "1111", "-f", "rtp", url(addrs[0]),
		"-map", "1:a:0", "-c:a", "libopus", "-b:a", "96k", "-ar", "48000", "-ac", "2", "-application", "lowdelay",
		"-frame_duration", "20", "-payload_type", "111", "-ssrc", "2222", "-f", "rtp", url(addrs[1]))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	if joinAfter > 0 {
		select {
		case <-time.After(joinAfter):
		case <-ctx.Done():
		}
		record()
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out.String())
	}
	// A second of silence ends Run with a transient error: the broadcast
	// ends, and with it the recording.
	if err := <-published; err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "no packets") {
		t.Errorf("Publish: %v, want the transient end of a silent sender", err)
	}
	if err := <-recorded; err != nil {
		t.Errorf("recording: %v", err)
	}
	st := src.Stats()
	t.Logf("video %+v", st[0])
	t.Logf("audio %+v", st[1])
	files := sink.Files()
	if len(files) != 1 {
		t.Fatalf("recorded %v, want one file", files)
	}
	v := testkit.CheckFMP4(t, files[0], "v:0")
	a := testkit.CheckFMP4(t, files[0], "a:0")
	t.Logf("recording: video %+v, audio %+v", v, a)
	vt := testkit.PacketTimes(t, ctx, files[0], "v:0")
	at := testkit.PacketTimes(t, ctx, files[0], "a:0")
	if len(vt) == 0 || len(at) == 0 {
		t.Fatal("no packet times")
	}
	t.Logf("video starts at %.4f s, audio at %.4f s", vt[0], at[0])
	// (Packet times are decode times: with B-frames the video's first one
	// is its reorder delay, ffmpeg's own, later.)
	if impair == nil && bframes == 0 {
		if d := math.Abs(vt[0] - at[0]); d > 1.0/30 {
			t.Errorf("video starts at %.3f s, audio at %.3f s: more than a frame apart", vt[0], at[0])
		}
	}
	if joinAfter > 0 {
		if d := math.Abs(vt[0] - at[0]); d >= 0.020+1e-6 {
			t.Errorf("video starts at %.4f s, audio at %.4f s: more than an audio frame apart", vt[0], at[0])
		}
	}
	return st, v, a
}

// proxyConfig is the impairment of the UDP proxy.
type proxyConfig struct {
	loss, dup     float64
	delay, jitter time.Duration
	seed          uint64
}

// startProxy forwards datagrams from new loopback sockets to the
// source's, impaired, and returns the addresses to send to instead. It
// runs until the test ends.
func startProxy(t *testing.T, cfg proxyConfig, to []MediaAddrs) []MediaAddrs {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex // guards r
	r := rand.New(rand.NewPCG(cfg.seed, 1))
	var conns []*net.UDPConn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
	forward := func(dst netip.AddrPort, impaired bool) netip.AddrPort {
		in, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		out, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, in, out)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, maxDatagram)
			for {
				n, _, err := in.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				b := append([]byte(nil), buf[:n]...)
				if !impaired {
					_, _ = out.Write(b)
					continue
				}
				mu.Lock()
				drop, copies := r.Float64() < cfg.loss, 1
				if r.Float64() < cfg.dup {
					copies = 2
				}
				delays := make([]time.Duration, copies)
				for i := range delays {
					delays[i] = cfg.delay - cfg.jitter + time.Duration(r.Int64N(int64(2*cfg.jitter)+1))
				}
				mu.Unlock()
				if drop {
					continue
				}
				for _, d := range delays {
					wg.Add(1)
					time.AfterFunc(d, func() {
						defer wg.Done()
						_, _ = out.Write(b)
					})
				}
			}
		}()
		return in.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	out := make([]MediaAddrs, len(to))
	for i, a := range to {
		out[i] = MediaAddrs{RTP: forward(a.RTP, true), RTCP: forward(a.RTCP, false)}
	}
	return out
}

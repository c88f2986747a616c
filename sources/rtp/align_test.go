package rtp

import (
	"context"
	"encoding/base64"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpsimpleaudio"
	"github.com/pion/rtcp"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// collected is what collectFrames read: the frames of the video and
// audio tracks, and the groups of the video track.
type collected struct {
	video, audio []sdk.Frame
	videoGroups  int
}

// collectFrames reads every track of a broadcast from its first group,
// as the catalog lists them, until the broadcast ends; the returned
// function waits for that and returns what was read.
func collectFrames(t *testing.T, ctx context.Context, pb *moq.BroadcastWriter) func() collected {
	t.Helper()
	br, err := sdk.NewBroadcastReaderFrom(pb.Reader(), moq.FromOldest)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got collected
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		seen := map[string]bool{}
		for {
			changed := br.Changed()
			for _, tr := range br.Tracks() {
				if seen[tr.Name] {
					continue
				}
				seen[tr.Name] = true
				sub, err := br.Subscribe(tr.Name)
				if err != nil {
					t.Errorf("subscribing to %s: %v", tr.Name, err)
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer sub.Close()
					for {
						f, err := sub.ReadFrame(ctx)
						if err != nil {
							break
						}
						mu.Lock()
						if tr.Kind == sdk.KindVideo {
							got.video = append(got.video, f)
						} else {
							got.audio = append(got.audio, f)
						}
						mu.Unlock()
					}
					if tr.Kind == sdk.KindVideo {
						mu.Lock()
						got.videoGroups = int(sub.Stats().Groups)
						mu.Unlock()
					}
				}()
			}
			select {
			case <-changed:
			case <-br.Done():
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() collected {
		wg.Wait()
		br.Close()
		return got
	}
}

// TestJoinMidStream starts the source while a sender is already running,
// between two keyframes: the audio before the first video keyframe is
// dropped, so that both tracks start within one audio frame of each
// other; with the parameter sets in band (the tracks wait for them) and
// in the SDP (the tracks are added at once).
func TestJoinMidStream(t *testing.T) {
	sprop := "a=fmtp:96 packetization-mode=1; sprop-parameter-sets=" +
		base64.StdEncoding.EncodeToString(testSPS) + "," + base64.StdEncoding.EncodeToString(testPPS)
	for _, tc := range []struct{ name, sdp string }{
		{"in_band", testSDP},
		{"sprop", strings.Replace(testSDP, "a=fmtp:96 packetization-mode=1", sprop, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) { joinMidStream(t, tc.sdp) })
	}
}

func joinMidStream(t *testing.T, sdp string) {
	ctx := testkit.Context(t, 30*time.Second)
	lb := &testkit.LogBuffer{}
	src, err := New(Config{SDP: sdp, Listen: []string{"127.0.0.1:0", "127.0.0.1:0"}, Logger: lb.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	// The ports, free while the sender starts: what it sends before Run
	// listens again is lost, as to a receiver that was not there yet.
	if err := src.Listen(); err != nil {
		t.Fatal(err)
	}
	addrs := src.Addrs()
	src.Close()

	r := rand.New(rand.NewPCG(9, 7))
	const seconds = 3
	video := makeVideo(r, seconds*30)
	audio := makeAudio(r, seconds*50)
	out, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	joined := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		sendInRealTime(t, ctx, out, addrs, video, audio, joined)
	}()

	pb := moq.NewBroadcast()
	w, err := sdk.NewBroadcastWriter(pb, sdk.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	frames := collectFrames(t, ctx, pb)
	// Join 0.4 s into the sender's second GOP: its next keyframe is 0.6 s
	// later.
	select {
	case <-joined:
	case <-ctx.Done():
		t.Fatal("the sender did not start")
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(runCtx, w) }()
	<-sent
	time.Sleep(3 * DefaultReorderWindow)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	_ = w.Close()
	got := frames()
	v, a := got.video, got.audio
	st := src.Stats()
	t.Logf("video %+v; audio %+v; frames out: video %d, audio %d", st[0], st[1], len(v), len(a))
	if len(v) == 0 || len(a) == 0 {
		t.Fatalf("%d video and %d audio frames out\nlog:\n%s", len(v), len(a), lb.String())
	}
	if !v[0].Keyframe {
		t.Error("the first video frame is no keyframe")
	}
	d := a[0].PTS - v[0].PTS
	t.Logf("video starts at %v, audio at %v", v[0].PTS, a[0].PTS)
	if absDur(d) >= audioFrameTime {
		t.Errorf("audio starts %v after the video, more than an audio frame apart", d)
	}
	if st[1].Skipped == 0 {
		t.Error("no audio frame counted as skipped before the video's first keyframe")
	}
	for i := 1; i < len(a); i++ {
		if a[i].PTS <= a[i-1].PTS {
			t.Fatalf("audio frame %d at %v after %v", i, a[i].PTS, a[i-1].PTS)
		}
	}
}

// sendInRealTime sends the video (GOPs of testGOP frames) and audio to
// addrs at their pace, with sender reports every half second, and closes
// joined 1.4 s in.
func sendInRealTime(t *testing.T, ctx context.Context, c *net.UDPConn, addrs []MediaAddrs, video, audio []sentAU, joined chan<- struct{}) {
	vSSRC, aSSRC := uint32(1111), uint32(2222)
	vSeq, aSeq := uint16(100), uint16(200)
	vBase, aBase := uint32(123456), uint32(654321)
	venc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, SSRC: &vSSRC, InitialSequenceNumber: &vSeq, PayloadMaxSize: 1200}
	aenc := &rtpsimpleaudio.Encoder{PayloadType: 111, SSRC: &aSSRC, InitialSequenceNumber: &aSeq}
	if err := venc.Init(); err != nil {
		t.Error(err)
		return
	}
	if err := aenc.Init(); err != nil {
		t.Error(err)
		return
	}
	// Errors are ignored: nothing listens before the source joins.
	send := func(to netip.AddrPort, b []byte) { _, _ = c.WriteToUDPAddrPort(b, to) }
	sr := func(to netip.AddrPort, ssrc, base uint32, ticks, rate int64) {
		mediaTime := time.Duration(ticks * int64(time.Second) / rate)
		b, _ := (&rtcp.SenderReport{SSRC: ssrc, NTPTime: ntpOf(mediaTime), RTPTime: base + uint32(ticks)}).Marshal()
		send(to, b)
	}
	start := time.Now()
	const joinAt = 1400 * time.Millisecond
	vi, ai := 0, 0
	nextReport := time.Duration(0)
	for vi < len(video) || ai < len(audio) {
		vt, at := time.Duration(vi)*videoFrameTime, time.Duration(ai)*audioFrameTime
		next := min(vt, at)
		if vi >= len(video) {
			next = at
		} else if ai >= len(audio) {
			next = vt
		}
		if wait := time.Until(start.Add(next)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
		}
		if joined != nil && next >= joinAt {
			close(joined)
			joined = nil
		}
		if next >= nextReport {
			sr(addrs[0].RTCP, vSSRC, vBase, int64(next)*90000/int64(time.Second), 90000)
			sr(addrs[1].RTCP, aSSRC, aBase, int64(next)*48000/int64(time.Second), 48000)
			nextReport += 500 * time.Millisecond
		}
		if vi < len(video) && (ai >= len(audio) || vt <= at) {
			pkts, err := venc.Encode(video[vi].nalus)
			if err != nil {
				t.Error(err)
				return
			}
			for _, p := range pkts {
				p.Timestamp = vBase + uint32(vi*videoTicks)
				b, _ := p.Marshal()
				send(addrs[0].RTP, b)
			}
			vi++
		} else {
			p, err := aenc.Encode(audio[ai].payload)
			if err != nil {
				t.Error(err)
				return
			}
			p.Timestamp = aBase + uint32(ai*audioTicks)
			b, _ := p.Marshal()
			send(addrs[1].RTP, b)
			ai++
		}
	}
}

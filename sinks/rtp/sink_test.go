package rtp

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/moqbridge/moqbridge/internal/testclip"
	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// TestMTUAndPacing: with an MTU of 1000, no datagram is larger, the
// packets of each frame carry its timestamp with the marker on the last,
// a keyframe of about 150 packets is spread over more than a millisecond
// (not one burst), and sender reports reach the RTCP port with the
// stream's SSRC.
func TestMTUAndPacing(t *testing.T) {
	const mtu = 1000
	origin := publishSynth(t, synthStream{gop: 15, keySize: 150_000, frameSz: 3000})
	port := testkit.FreeUDPPorts(t, 4)
	video, videoRTCP, audio := receiveUDP(t, port), receiveUDP(t, port+1), receiveUDP(t, port+2)
	lb := &testkit.LogBuffer{}
	sink := newSink(t, lb, Config{Dest: fmt.Sprintf("127.0.0.1:%d", port), MTU: mtu})
	stop := testclip.RunSink(t, origin, "live/synth", sink)
	ctx := testkit.Context(t, 20*time.Second)
	waitFor(t, ctx, "two keyframes and two sender reports", func() bool {
		return sink.Stats().Frames > 40 && sink.Stats().SenderReports >= 4
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the last datagrams in flight on loopback

	for _, r := range []*udpReceiver{video, videoRTCP, audio} {
		for _, d := range r.datagrams() {
			if len(d.b) > mtu {
				t.Fatalf("a datagram of %d bytes, MTU %d", len(d.b), mtu)
			}
		}
	}
	// Group the video packets by access unit.
	type unit struct {
		n           int
		first, last time.Time
		marker      bool
	}
	var units []*unit
	dgs := video.datagrams()
	pkts := video.packets(t)
	for i, p := range pkts {
		if i > 0 && p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, p.SequenceNumber, pkts[i-1].SequenceNumber)
		}
		if i == 0 || p.Timestamp != pkts[i-1].Timestamp {
			if i > 0 && !units[len(units)-1].marker {
				t.Errorf("packet %d starts an access unit but the last did not have the marker", i)
			}
			units = append(units, &unit{first: dgs[i].at})
		}
		u := units[len(units)-1]
		u.n++
		u.last, u.marker = dgs[i].at, p.Marker
		if p.PayloadType != 96 || p.SSRC != pkts[0].SSRC {
			t.Fatalf("packet %d: payload type %d, SSRC %x", i, p.PayloadType, p.SSRC)
		}
	}
	keyframes := 0
	for _, u := range units {
		if u.n < 100 {
			continue
		}
		keyframes++
		if spread := u.last.Sub(u.first); spread < time.Millisecond {
			t.Errorf("a keyframe of %d packets arrived within %s: one burst", u.n, spread)
		}
	}
	if keyframes < 2 {
		t.Errorf("%d keyframes of 100 packets or more among %d access units", keyframes, len(units))
	}
	reports := 0
	for _, d := range videoRTCP.datagrams() {
		ps, err := rtcp.Unmarshal(d.b)
		if err != nil {
			t.Fatalf("RTCP: %v", err)
		}
		for _, p := range ps {
			if sr, ok := p.(*rtcp.SenderReport); ok {
				reports++
				if sr.SSRC != pkts[0].SSRC {
					t.Errorf("sender report SSRC %x, stream %x", sr.SSRC, pkts[0].SSRC)
				}
			}
		}
	}
	if reports < 2 {
		t.Errorf("%d video sender reports", reports)
	}
	if len(audio.packets(t)) < 20 {
		t.Errorf("%d audio packets", len(audio.datagrams()))
	}
}

// TestBacklogSkipsToLive: the broadcast holds 10 s of frames when the
// sink starts, and the sink gets them at once from the cache. It sends
// them in real time while the lag lasts less than behindFor, then skips to
// the latest keyframe, counting what it skipped, instead of sending 10 s
// of media in a burst or lagging 10 s behind.
func TestBacklogSkipsToLive(t *testing.T) {
	backlog := make(chan struct{})
	origin := publishSynth(t, synthStream{gop: 30, keySize: 20_000, frameSz: 2000, backlog: 10 * time.Second, backlogDone: backlog})
	<-backlog
	port := testkit.FreeUDPPorts(t, 4)
	video := receiveUDP(t, port)
	receiveUDP(t, port+1)
	receiveUDP(t, port+2)
	receiveUDP(t, port+3)
	lb := &testkit.LogBuffer{}
	sink := newSink(t, lb, Config{Dest: fmt.Sprintf("127.0.0.1:%d", port)})
	began := time.Now()
	stop := testclip.RunSink(t, origin, "live/synth", sink)
	ctx := testkit.Context(t, 20*time.Second)
	waitFor(t, ctx, "the skip to live", func() bool { return sink.Stats().DroppedGOPs >= 8 })
	atSkip := sink.Stats().Frames
	waitFor(t, ctx, "frames after the skip", func() bool { return sink.Stats().Frames > atSkip+30 })
	elapsed := time.Since(began)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := sink.Stats()
	if st.DroppedGOPs < 8 || st.DroppedFrames < 200 {
		t.Errorf("stats %+v: want the 10 s backlog (300 video frames, 10 GOPs) mostly skipped", st)
	}
	// What was received is about the frames of the time the sink ran
	// (one frame of the backlog may go out before the rest arrived), not
	// 10 s of them.
	frames := map[uint32]bool{}
	for _, p := range video.packets(t) {
		frames[p.Timestamp] = true
	}
	t.Logf("ran %s, received %d video frames, stats %+v", elapsed.Round(time.Millisecond), len(frames), st)
	if limit := int(elapsed.Seconds()*30) + 35; len(frames) > limit {
		t.Errorf("received %d video frames in %s, more than %d", len(frames), elapsed, limit)
	}
}

// TestMulticast sends to a multicast group with a TTL: the SDP's c= line
// has the group and the TTL, and a member of the group on this host
// receives the packets.
func TestMulticast(t *testing.T) {
	port := testkit.FreeUDPPorts(t, 4)
	group := &net.UDPAddr{IP: net.IPv4(239, 255, 42, 99), Port: port}
	conn, err := net.ListenMulticastUDP("udp4", nil, group)
	if err != nil {
		t.Skipf("cannot join a multicast group here: %v", err)
	}
	rcv := listenUDP(t, conn)
	origin := publishSynth(t, synthStream{gop: 30, keySize: 5000, frameSz: 500})
	var sdp []byte
	lb := &testkit.LogBuffer{}
	sink := newSink(t, lb, Config{Dest: group.String(), TTL: 3, OnSDP: func(b []byte) { sdp = b }})
	stop := testclip.RunSink(t, origin, "live/synth", sink)
	ctx := testkit.Context(t, 10*time.Second)
	waitFor(t, ctx, "frames sent", func() bool { return sink.Stats().Frames > 20 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sdp), "c=IN IP4 239.255.42.99/3\r\n") {
		t.Errorf("SDP:\n%s", sdp)
	}
	if strings.Contains(lb.String(), "cannot set the multicast TTL") {
		t.Errorf("the TTL was not set:\n%s", lb.String())
	}
	st := sink.Stats()
	if len(rcv.datagrams()) == 0 {
		if st.SendErrors > 0 {
			t.Skipf("no route for multicast here (%d send errors): %s", st.SendErrors, lb.String())
		}
		t.Fatalf("nothing received from the group; stats %+v", st)
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestNewRefuses: bad destinations, MTUs, TTLs are refused by New with a
// permanent error that names the problem.
func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, `rtp: destination "": want HOST:PORT`},
		{Config{Dest: "127.0.0.1"}, `rtp: destination "127.0.0.1": want HOST:PORT`},
		{Config{Dest: "127.0.0.1:0"}, `port "0" is not a number from 1 to 65535`},
		{Config{Dest: "127.0.0.1:70000"}, `port "70000" is not a number from 1 to 65535`},
		{Config{Dest: "0.0.0.0:5004"}, `0.0.0.0 is not an address to send to`},
		{Config{Dest: "no-such-host.invalid:5004"}, `is neither an IP address nor a host name that resolves`},
		{Config{Dest: "127.0.0.1:5004", MTU: 64}, `rtp: MTU 64 out of range (128 to 65507 bytes)`},
		{Config{Dest: "127.0.0.1:5004", MTU: 70000}, `rtp: MTU 70000 out of range`},
		{Config{Dest: "127.0.0.1:5004", TTL: 300}, `rtp: TTL 300 out of range`},
		{Config{Dest: "127.0.0.1:5004", MaxDelay: -time.Second}, `rtp: negative maximum delay`},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !sdk.IsPermanent(err) {
			t.Errorf("New(%+v): %v, want a permanent error with %q", tc.cfg, err, tc.want)
		}
	}
	s, err := New(Config{Dest: "[::1]:5004"})
	if err != nil || s.dest.String() != "[::1]:5004" || s.cfg.MTU != DefaultMTU || s.cfg.MaxDelay != DefaultMaxDelay || s.cfg.TTL != 1 {
		t.Errorf("New [::1]:5004: %v %+v", err, s)
	}
}

// TestNothingToSend: a broadcast whose only track cannot be sent is a
// permanent error, and the track is named in the log.
func TestNothingToSend(t *testing.T) {
	origin := moq.NewOrigin()
	defer origin.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	published := make(chan error, 1)
	go func() {
		published <- sdk.Publish(ctx, origin, "live/x", sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
			if _, err := w.AddTrack(sdk.Track{Name: "adts", Kind: sdk.KindAudio, Codec: "mp4a.40.2", SampleRate: 48000, Channels: 2}); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		}), sdk.PublishOptions{})
	}()
	lb := &testkit.LogBuffer{}
	sink := newSink(t, lb, Config{Dest: "127.0.0.1:5004"})
	err := sdk.Consume(ctx, origin, "live/x", sink, sdk.ConsumeOptions{Wait: 5 * time.Second})
	if err == nil || !sdk.IsPermanent(err) || !strings.Contains(err.Error(), "rtp: no track can be sent (codecs: mp4a.40.2;") {
		t.Errorf("Run: %v", err)
	}
	if !strings.Contains(lb.String(), "ADTS") {
		t.Errorf("log:\n%s", lb.String())
	}
	cancel()
	<-published
}

// TestSDPFile: the SDP file is written atomically when Run has its tracks,
// with the IPv6 destination the packets go to, and a second Run with the
// same tracks does not write it again.
func TestSDPFile(t *testing.T) {
	origin := publishSynth(t, synthStream{gop: 30, keySize: 3000, frameSz: 300})
	port := testkit.FreeUDPPorts(t, 4)
	conn, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback, Port: port})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	video := listenUDP(t, conn)
	file := filepath.Join(t.TempDir(), "out.sdp")
	writes := 0
	lb := &testkit.LogBuffer{}
	sink := newSink(t, lb, Config{Dest: fmt.Sprintf("[::1]:%d", port), SDPFile: file, OnSDP: func([]byte) { writes++ }})
	for run := range 2 {
		stop := testclip.RunSink(t, origin, "live/synth", sink)
		ctx := testkit.Context(t, 10*time.Second)
		want := uint64(5 * (run + 1))
		waitFor(t, ctx, "frames", func() bool { return sink.Stats().Frames > want })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	if writes != 1 {
		t.Errorf("the SDP was written %d times for two Runs with the same tracks", writes)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"c=IN IP6 ::1\r\n", fmt.Sprintf("m=video %d RTP/AVP 96\r\n", port), "a=rtpmap:96 H264/90000\r\n",
		"packetization-mode=1", "sprop-parameter-sets=Z0LADdkBQfsBEAAAAwAQAAADA8DxQqSA,aMuDyyA=",
		fmt.Sprintf("m=audio %d RTP/AVP 97\r\n", port+2), "a=rtpmap:97 opus/48000/2\r\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("SDP lacks %q:\n%s", want, b)
		}
	}
	if matches, _ := filepath.Glob(file + ".tmp*"); len(matches) > 0 {
		t.Errorf("temporary files left: %v", matches)
	}
	ssrcs := map[uint32]bool{}
	for _, p := range video.packets(t) {
		ssrcs[p.SSRC] = true
	}
	if len(ssrcs) != 2 {
		t.Errorf("video packets of %d SSRCs over IPv6, want one stream for each of the two Runs", len(ssrcs))
	}
}

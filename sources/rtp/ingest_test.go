package rtp

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpsimpleaudio"
	"github.com/pion/rtcp"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// The session description of the test sender: ffmpeg's, H.264 with its
// parameter sets in band and stereo Opus.
const testSDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n" +
	"m=video 5004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n" +
	"m=audio 5006 RTP/AVP 111\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 sprop-stereo=1\r\n"

const (
	testGOP        = 30 // frames
	videoTicks     = 3000
	audioTicks     = 960
	videoFrameTime = time.Second / 30
	audioFrameTime = 20 * time.Millisecond
)

var (
	testSPS, _ = hex.DecodeString("6742c00dd90141fb0110000003001000000303c0f142a480")
	testPPS, _ = hex.DecodeString("68cb83cb20")
)

// media of the test sender: every access unit it sends, and its expected
// frame payload.
type sentAU struct {
	index   int
	nalus   [][]byte // video
	payload []byte   // the frame the source must write
	key     bool
}

// noZeros fills b with random bytes that are never 0, so that no start
// code appears inside a NAL unit.
func noZeros(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(1 + r.IntN(255))
	}
}

func makeVideo(r *rand.Rand, n int) []sentAU {
	out := make([]sentAU, n)
	for i := range out {
		key := i%testGOP == 0
		size, typ := 300+r.IntN(1200), byte(0x41)
		if key {
			size, typ = 4000+r.IntN(5000), 0x65
		}
		slice := make([]byte, size)
		noZeros(r, slice)
		slice[0], slice[1] = typ, 0x88 // first_mb_in_slice 0
		au := [][]byte{slice}
		if key {
			au = [][]byte{testSPS, testPPS, slice}
		}
		payload := binary.BigEndian.AppendUint32(nil, uint32(len(slice)))
		out[i] = sentAU{index: i, nalus: au, payload: append(payload, slice...), key: key}
	}
	return out
}

func makeAudio(r *rand.Rand, n int) []sentAU {
	out := make([]sentAU, n)
	for i := range out {
		p := make([]byte, 60+r.IntN(140))
		noZeros(r, p)
		out[i] = sentAU{index: i, payload: p, key: true}
	}
	return out
}

// impairment is a seeded, deterministic stage between the sender and the
// source's sockets.
type impairment struct {
	name      string
	loss      float64 // probability of dropping a packet
	burst     [2]int  // video packets [from, to) dropped
	dup       float64 // probability of sending a packet twice
	reorder   float64 // probability of holding a packet back behind 1–3 later ones
	wrap      bool    // timestamp bases just before 2^32
	ssrcAt    int     // video frame at which the video sender changes SSRC (0: never)
	restartAt int     // video frame at which it restarts its sequence and timestamps, same SSRC
	seed      uint64
	wantClean bool // nothing may be dropped
}

// datagram to send: to which socket, and whether it is video.
type outPacket struct {
	conn  *net.UDPConn
	data  []byte
	video bool
}

// impairer applies an impairment to a packet sequence.
type impairer struct {
	imp      impairment
	r        *rand.Rand
	held     []heldOut
	videoSeq int
	dropped  [2]int // video, audio
	sent     [2]int
}

type heldOut struct {
	p     outPacket
	after int // released after this many more packets
}

func (im *impairer) send(t *testing.T, p outPacket) {
	k := 1
	if p.video {
		k = 0
	}
	drop := im.r.Float64() < im.imp.loss
	if p.video {
		if im.videoSeq >= im.imp.burst[0] && im.videoSeq < im.imp.burst[1] {
			drop = true
		}
		im.videoSeq++
	}
	if drop {
		im.dropped[k]++
		return
	}
	var out []outPacket
	if im.r.Float64() < im.imp.reorder {
		im.held = append(im.held, heldOut{p: p, after: 1 + im.r.IntN(3)})
	} else {
		out = append(out, p)
		if im.r.Float64() < im.imp.dup {
			out = append(out, p)
		}
	}
	kept := im.held[:0]
	for _, h := range im.held {
		if h.after--; h.after < 0 {
			out = append(out, h.p)
		} else {
			kept = append(kept, h)
		}
	}
	im.held = kept
	for _, o := range out {
		if _, err := o.conn.Write(o.data); err != nil {
			t.Errorf("sending: %v", err)
		}
		if o.video {
			im.sent[0]++
		} else {
			im.sent[1]++
		}
	}
}

func (im *impairer) flush(t *testing.T) {
	for _, h := range im.held {
		if _, err := h.p.conn.Write(h.p.data); err != nil {
			t.Errorf("sending: %v", err)
		}
	}
	im.held = nil
}

func dial(t *testing.T, a interface{ String() string }) *net.UDPConn {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ntpOf is the sender's NTP time of a media time: an arbitrary wall clock.
func ntpOf(d time.Duration) uint64 {
	base := uint64(3_970_000_000) << 32
	return base + uint64(d/time.Second)<<32 + uint64(d%time.Second)<<32/uint64(time.Second)
}

// ingestResult is what came out of the source.
type ingestResult struct {
	stats   []MediaStats
	video   []sdk.Frame
	audio   []sdk.Frame
	groups  int // video groups read
	log     string
	dropped [2]int // video and audio packets the impairment dropped
}

// runIngest sends video and audio through the impairment into a Source and
// reads the frames back from the broadcast.
func runIngest(t *testing.T, imp impairment, seconds int) (ingestResult, []sentAU, []sentAU) {
	t.Helper()
	ctx := testkit.Context(t, 60*time.Second)
	r := rand.New(rand.NewPCG(imp.seed, 7))
	video := makeVideo(r, seconds*30)
	audio := makeAudio(r, seconds*50)

	lb := &testkit.LogBuffer{}
	src, err := New(Config{SDP: testSDP, Listen: []string{"127.0.0.1:0", "127.0.0.1:0"}, Logger: lb.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Listen(); err != nil {
		t.Fatal(err)
	}
	addrs := src.Addrs()
	pb := moq.NewBroadcast()
	w, err := sdk.NewBroadcastWriter(pb, sdk.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	frames := collectFrames(t, ctx, pb)
	var res ingestResult
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(runCtx, w) }()

	vConn, vRTCP := dial(t, addrs[0].RTP), dial(t, addrs[0].RTCP)
	aConn, aRTCP := dial(t, addrs[1].RTP), dial(t, addrs[1].RTCP)
	vSSRC, aSSRC := uint32(1111), uint32(2222)
	vSeq, aSeq := uint16(r.Uint32()), uint16(r.Uint32())
	vBase, aBase := r.Uint32(), r.Uint32()
	if imp.wrap {
		vBase, aBase = 0xffffffff-2*90000, 0xffffffff-48000
	}
	venc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, SSRC: &vSSRC, InitialSequenceNumber: &vSeq, PayloadMaxSize: 1200}
	aenc := &rtpsimpleaudio.Encoder{PayloadType: 111, SSRC: &aSSRC, InitialSequenceNumber: &aSeq}
	if err := venc.Init(); err != nil {
		t.Fatal(err)
	}
	if err := aenc.Init(); err != nil {
		t.Fatal(err)
	}
	// sr sends a sender report: the RTP time ticks after base is the
	// media time ticks/rate.
	reports := [2]uint64{}
	// waitReport waits for the source to have taken the reports sent to
	// a media, as a real sender's come ahead of its packets.
	waitReport := func(media int) {
		for src.Stats()[media].SenderReports < reports[media] {
			select {
			case <-ctx.Done():
				t.Fatal("the source did not take the sender report")
			case <-time.After(time.Millisecond):
			}
		}
	}
	sr := func(c *net.UDPConn, ssrc, base uint32, ticks, rate int64) {
		if rate == 90000 {
			reports[0]++
		} else {
			reports[1]++
		}
		mediaTime := time.Duration(ticks * int64(time.Second) / rate)
		b, _ := (&rtcp.SenderReport{SSRC: ssrc, NTPTime: ntpOf(mediaTime), RTPTime: base + uint32(ticks)}).Marshal()
		if _, err := c.Write(b); err != nil {
			t.Errorf("sending a report: %v", err)
		}
	}
	im := &impairer{imp: imp, r: rand.New(rand.NewPCG(imp.seed, 11))}
	sr(vRTCP, vSSRC, vBase, 0, 90000)
	sr(aRTCP, aSSRC, aBase, 0, 48000)
	waitReport(0)
	waitReport(1)
	vi, ai := 0, 0
	for vi < len(video) || ai < len(audio) {
		vt, at := time.Duration(vi)*videoFrameTime, time.Duration(ai)*audioFrameTime
		if vi < len(video) && (ai >= len(audio) || vt <= at) {
			if (imp.ssrcAt > 0 && vi == imp.ssrcAt) || (imp.restartAt > 0 && vi == imp.restartAt) {
				// The new sender (a new SSRC, or the same one restarted)
				// numbers its packets and timestamps from elsewhere; its
				// report ties them to the same NTP clock.
				if imp.ssrcAt > 0 {
					vSSRC = 3333
				}
				vSeq += 20000 + uint16(r.IntN(20000))
				vBase = r.Uint32() - uint32(vi*videoTicks)
				venc = &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, SSRC: &vSSRC, InitialSequenceNumber: &vSeq, PayloadMaxSize: 1200}
				if err := venc.Init(); err != nil {
					t.Fatal(err)
				}
				sr(vRTCP, vSSRC, vBase, int64(vi*videoTicks), 90000)
				waitReport(0)
			}
			pkts, err := venc.Encode(video[vi].nalus)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pkts {
				p.Timestamp = vBase + uint32(vi*videoTicks)
				b, _ := p.Marshal()
				im.send(t, outPacket{conn: vConn, data: b, video: true})
			}
			if vi%30 == 29 {
				sr(vRTCP, vSSRC, vBase, int64(vi*videoTicks), 90000)
			}
			vi++
		} else {
			p, err := aenc.Encode(audio[ai].payload)
			if err != nil {
				t.Fatal(err)
			}
			p.Timestamp = aBase + uint32(ai*audioTicks)
			b, _ := p.Marshal()
			im.send(t, outPacket{conn: aConn, data: b})
			ai++
		}
		if (vi+ai)%4 == 0 {
			time.Sleep(time.Millisecond) // paced, so that no socket buffer overflows
		}
	}
	im.flush(t)

	// Wait for the source to have taken every packet sent, then for its
	// reorder window to pass.
	for {
		st := src.Stats()
		if st[0].Packets+st[0].Invalid >= uint64(im.sent[0]) && st[1].Packets+st[1].Invalid >= uint64(im.sent[1]) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the source took %+v of %v packets", st, im.sent)
		case <-time.After(5 * time.Millisecond):
		}
	}
	time.Sleep(3 * DefaultReorderWindow)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	_ = w.Close()

	got := frames()
	res.video, res.audio, res.groups = got.video, got.audio, got.videoGroups
	res.stats, res.log, res.dropped = src.Stats(), lb.String(), im.dropped
	t.Logf("%s: sent video %d packets (dropped %d), audio %d (dropped %d); video %+v; audio %+v; frames out: video %d of %d, audio %d of %d, video groups %d",
		imp.name, im.sent[0], im.dropped[0], im.sent[1], im.dropped[1], res.stats[0], res.stats[1], len(res.video), len(video), len(res.audio), len(audio), res.groups)
	return res, video, audio
}

// checkFrames checks that every frame is an access unit sent, byte for
// byte, at its time; that video frames only follow their reference or are
// keyframes; and that video and audio share one timeline.
func checkFrames(t *testing.T, res ingestResult, video, audio []sentAU) {
	t.Helper()
	index := func(sent []sentAU) map[string]int {
		m := make(map[string]int, len(sent))
		for _, s := range sent {
			m[string(s.payload)] = s.index
		}
		return m
	}
	vIdx, aIdx := index(video), index(audio)
	type frameStep struct{ ticks, rate int64 }
	check := func(kind string, frames []sdk.Frame, idx map[string]int, sent []sentAU, step frameStep) (first int, firstPTS time.Duration) {
		prev := -1
		for j, f := range frames {
			i, ok := idx[string(f.Payload)]
			if !ok {
				t.Fatalf("%s frame %d (%d bytes) is not an access unit sent: damaged", kind, j, len(f.Payload))
			}
			if j == 0 {
				first, firstPTS = i, f.PTS
			}
			if want := firstPTS + time.Duration(int64(i-first)*int64(step.ticks)*int64(time.Second)/step.rate); absDur(f.PTS-want) > time.Microsecond {
				t.Errorf("%s frame %d (sent %d) at %v, want %v", kind, j, i, f.PTS, want)
			}
			if f.Keyframe != sent[i].key {
				t.Errorf("%s frame %d (sent %d): keyframe %v, want %v", kind, j, i, f.Keyframe, sent[i].key)
			}
			if kind == "video" && i != prev+1 && !f.Keyframe {
				t.Fatalf("video frame %d (sent %d) follows sent %d and is no keyframe: its reference is missing", j, i, prev)
			}
			if i <= prev {
				t.Fatalf("%s frame %d (sent %d) after sent %d", kind, j, i, prev)
			}
			prev = i
		}
		return first, firstPTS
	}
	if len(res.video) == 0 || len(res.audio) == 0 {
		t.Fatalf("%d video and %d audio frames out", len(res.video), len(res.audio))
	}
	if !res.video[0].Keyframe {
		t.Error("the first video frame is no keyframe")
	}
	vFirst, vPTS := check("video", res.video, vIdx, video, frameStep{videoTicks, 90000})
	aFirst, aPTS := check("audio", res.audio, aIdx, audio, frameStep{audioTicks, 48000})
	// One timeline: the sender reports place both at their media time.
	want := time.Duration(vFirst)*videoFrameTime - time.Duration(aFirst)*audioFrameTime
	if d := vPTS - aPTS; absDur(d-want) > time.Millisecond {
		t.Errorf("video starts %v after audio, want %v", d, want)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestIngestClean(t *testing.T) {
	res, video, audio := runIngest(t, impairment{name: "clean", seed: 1}, 3)
	checkFrames(t, res, video, audio)
	if len(res.video) != len(video) || len(res.audio) != len(audio) {
		t.Errorf("%d of %d video and %d of %d audio frames out", len(res.video), len(video), len(res.audio), len(audio))
	}
	for i, st := range res.stats {
		if st.Lost+st.Damaged+st.Skipped+st.Late+st.Duplicates+st.Invalid != 0 {
			t.Errorf("media %d: %+v on a clean network", i, st)
		}
	}
	if res.groups != len(video)/testGOP {
		t.Errorf("%d video groups, want %d", res.groups, len(video)/testGOP)
	}
}

func TestIngestImpaired(t *testing.T) {
	for _, imp := range []impairment{
		{name: "reorder+duplicate", reorder: 0.1, dup: 0.05, seed: 2, wantClean: true},
		{name: "loss 1%", loss: 0.01, seed: 3},
		{name: "loss 10%", loss: 0.10, reorder: 0.05, dup: 0.02, seed: 4},
		{name: "burst", burst: [2]int{60, 100}, seed: 5},
		{name: "timestamp wrap", wrap: true, seed: 6, wantClean: true},
		{name: "SSRC change", ssrcAt: 60, seed: 7, wantClean: true},
		{name: "sequence restart", restartAt: 90, seed: 8, wantClean: true},
	} {
		t.Run(strings.ReplaceAll(imp.name, " ", "_"), func(t *testing.T) {
			res, video, audio := runIngest(t, imp, 6)
			checkFrames(t, res, video, audio)
			v, a := res.stats[0], res.stats[1]
			if imp.wantClean {
				if len(res.video) != len(video) || len(res.audio) != len(audio) {
					t.Errorf("%d of %d video and %d of %d audio frames out", len(res.video), len(video), len(res.audio), len(audio))
				}
				if v.Lost+a.Lost != 0 {
					t.Errorf("lost %d video and %d audio packets", v.Lost, a.Lost)
				}
			}
			if imp.dup > 0 && v.Duplicates+a.Duplicates == 0 {
				t.Error("no duplicates counted")
			}
			if res.dropped[0] > 0 && (v.Lost == 0 || v.Damaged+v.Skipped == 0) {
				t.Errorf("video losses not counted: %+v", v)
			}
			if res.dropped[1] > 0 && a.Lost == 0 {
				t.Errorf("audio losses not counted: %+v", a)
			}
			if res.dropped[0]+res.dropped[1] > 0 && imp.ssrcAt == 0 {
				if v.Lost+a.Lost > uint64(res.dropped[0]+res.dropped[1]) {
					t.Errorf("%d packets counted lost, %d dropped", v.Lost+a.Lost, res.dropped[0]+res.dropped[1])
				}
			}
			if (imp.ssrcAt > 0 || imp.restartAt > 0) && v.Restarts != 1 {
				t.Errorf("%d restarts counted, want 1", v.Restarts)
			}
		})
	}
}

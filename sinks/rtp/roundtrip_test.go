package rtp

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testclip"
	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
	rtpsrc "github.com/moqbridge/moqbridge/sources/rtp"
)

// receiver is sources/rtp receiving what the sink sends: it is started
// from the sink's OnSDP, so that its sockets are bound before the first
// packet, and publishes into its own Origin.
type receiver struct {
	t      testing.TB
	origin *moq.Origin
	lb     testkit.LogBuffer

	mu   sync.Mutex
	sdp  []byte
	src  *rtpsrc.Source
	stop context.CancelFunc
	done chan error
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t, origin: moq.NewOrigin(), done: make(chan error, 1)}
	t.Cleanup(func() {
		r.mu.Lock()
		stop := r.stop
		r.mu.Unlock()
		if stop != nil {
			stop()
			<-r.done
		}
		r.origin.Close()
		if t.Failed() {
			t.Logf("receiver log:\n%s", r.lb.String())
		}
	})
	return r
}

// onSDP starts the source on the session description (once).
func (r *receiver) onSDP(sdp []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.src != nil {
		return
	}
	r.sdp = append([]byte(nil), sdp...)
	src, err := rtpsrc.New(rtpsrc.Config{SDP: string(sdp), Timeout: 2 * time.Second, Logger: r.lb.Logger()})
	if err != nil {
		r.t.Errorf("sources/rtp does not take the SDP: %v\n%s", err, sdp)
		return
	}
	if err := src.Listen(); err != nil {
		r.t.Errorf("sources/rtp listen: %v", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.src, r.stop = src, cancel
	go func() { r.done <- sdk.Publish(ctx, r.origin, "live/out", src, sdk.PublishOptions{}) }()
}

// TestRoundTrip sends clips through the sink into sources/rtp, which reads
// the SDP the sink wrote: the access units come out byte for byte, with
// their keyframe flags, their timestamps shifted by one constant per
// track, and the audio and video offsets within one video frame of each
// other (the sender reports carry one clock for both).
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		clip         string
		video, audio string
	}{
		{"h264_opus.mp4", "H264/90000", "opus/48000/2"},
		{"h264_aac_bframes.mp4", "H264/90000", "mpeg4-generic/48000/1"},
		{"hevc.mp4", "H265/90000", ""},
		{"av1.mp4", "AV1/90000", ""},
		{"vp9.mp4", "VP9/90000", ""},
	} {
		t.Run(strings.TrimSuffix(tc.clip, ".mp4"), func(t *testing.T) {
			roundTrip(t, testclip.Publish(t, testclip.Path(tc.clip), "live/in"), "live/in", tc.video, tc.audio)
		})
	}
}

// TestRoundTripVP8G711: made-up VP8 frames (keyframes with the header
// their size is read from) and G.711 µ-law audio at 8 kHz, which takes
// its static payload type, go through the sink into sources/rtp as the
// clips do.
func TestRoundTripVP8G711(t *testing.T) {
	vp8 := sdk.Track{Name: "video", Kind: sdk.KindVideo, Codec: "vp8", Width: 320, Height: 240}
	ulaw := sdk.Track{Name: "audio", Kind: sdk.KindAudio, Codec: "ulaw", SampleRate: 8000, Channels: 1}
	origin := publishSynth(t, synthStream{gop: 15, keySize: 4000, frameSz: 800, video: &vp8, audio: &ulaw,
		videoFrame: synthVP8, audioSize: 160})
	roundTrip(t, origin, "live/synth", "VP8/90000", "PCMU/8000")
}

// roundTrip runs the sink on the broadcast at path and sources/rtp on what
// it sends, and compares what comes out with what went in.
func roundTrip(t *testing.T, origin *moq.Origin, path, wantVideo, wantAudio string) {
	ctx := testkit.Context(t, 30*time.Second)
	orig := newCollector()
	stopOrig := testclip.RunSink(t, origin, path, orig)

	rcv := newReceiver(t)
	port := testkit.FreeUDPPorts(t, 4)
	lb := &testkit.LogBuffer{}
	dir := t.TempDir()
	sink := newSink(t, lb, Config{Dest: fmt.Sprintf("127.0.0.1:%d", port), SDPFile: dir + "/out.sdp", OnSDP: rcv.onSDP})
	stopSink := testclip.RunSink(t, origin, path, sink)
	got := newCollector()
	stopGot := testclip.RunSink(t, rcv.origin, "live/out", got)

	audioFrames := 40
	if wantAudio == "" {
		audioFrames = 0
	}
	if !got.waitFrames(ctx, 45, audioFrames) {
		_, v := got.kind(sdk.KindVideo)
		_, a := got.kind(sdk.KindAudio)
		t.Fatalf("received %d video and %d audio frames; sink %+v; source %+v", len(v), len(a), sink.Stats(), rcv.src.Stats())
	}
	if err := stopSink(); err != nil {
		t.Errorf("sink Run: %v", err)
	}
	_ = stopGot()
	_ = stopOrig()

	rcv.mu.Lock()
	sdp := string(rcv.sdp)
	rcv.mu.Unlock()
	for _, want := range []string{"m=video " + fmt.Sprint(port) + " RTP/AVP 96", "c=IN IP4 127.0.0.1", wantVideo} {
		if !strings.Contains(sdp, want) {
			t.Errorf("SDP lacks %q:\n%s", want, sdp)
		}
	}
	audioPT := "97"
	if strings.HasPrefix(wantAudio, "PCMU/8000") {
		audioPT = "0"
	}
	if wantAudio != "" && !strings.Contains(sdp, "m=audio "+fmt.Sprint(port+2)+" RTP/AVP "+audioPT) || !strings.Contains(sdp, wantAudio) {
		t.Errorf("SDP lacks the audio media %q:\n%s", wantAudio, sdp)
	}

	st := sink.Stats()
	if st.SenderReports < 2 || st.Packets == 0 || st.SendErrors != 0 {
		t.Errorf("sink stats %+v", st)
	}
	for i, ms := range rcv.src.Stats() {
		if ms.Lost+ms.Damaged+ms.Invalid != 0 || ms.SenderReports == 0 {
			t.Errorf("source media %d: %+v", i, ms)
		}
	}
	offV := compareFrames(t, orig, got, sdk.KindVideo)
	if wantAudio == "" {
		return
	}
	offA := compareFrames(t, orig, got, sdk.KindAudio)
	if d := (offV - offA).Abs(); d > time.Second/30 {
		t.Errorf("audio and video offsets differ by %s (video %s, audio %s), more than a frame", d, offV, offA)
	}
}

// compareFrames checks that every frame received of a kind is a frame
// sent, byte for byte, with the same keyframe flag and the presentation
// time shifted by one offset (within a millisecond), which it returns.
func compareFrames(t *testing.T, orig, got *collector, kind sdk.Kind) time.Duration {
	t.Helper()
	ot, sent := orig.kind(kind)
	gt, recv := got.kind(kind)
	if len(recv) < 3 {
		t.Fatalf("%s: %d frames received", kind, len(recv))
	}
	if gt.Codec != ot.Codec {
		t.Errorf("%s codec %q received, %q sent", kind, gt.Codec, ot.Codec)
	}
	// The offset, from the second frame received whose payload is unique
	// among those sent (a clip looped repeats its payloads).
	byPTS := map[time.Duration]sdk.Frame{}
	for _, f := range sent {
		byPTS[f.PTS.Round(time.Millisecond)] = f
	}
	var offset time.Duration
	found := false
	for _, r := range recv[1:] {
		n := 0
		for _, f := range sent {
			if bytes.Equal(f.Payload, r.Payload) {
				offset, n = r.PTS-f.PTS, n+1
			}
		}
		if n == 1 {
			found = true
			break
		}
	}
	if !found {
		t.Fatalf("%s: no frame received matches one sent", kind)
	}
	bad := 0
	for i, r := range recv {
		want := r.PTS - offset
		f, ok := byPTS[want.Round(time.Millisecond)]
		if !ok {
			for d := -time.Millisecond; d <= time.Millisecond && !ok; d += time.Millisecond {
				f, ok = byPTS[(want + d).Round(time.Millisecond)]
			}
		}
		switch {
		case !ok:
			t.Errorf("%s frame %d received at %s: none sent at %s", kind, i, r.PTS, want)
		case !bytes.Equal(f.Payload, r.Payload):
			t.Errorf("%s frame %d at %s: %d bytes received differ from the %d sent", kind, i, r.PTS, len(r.Payload), len(f.Payload))
		case (f.PTS - want).Abs() > time.Millisecond:
			t.Errorf("%s frame %d: at %s, sent at %s (offset %s)", kind, i, r.PTS, f.PTS, offset)
		case kind == sdk.KindVideo && f.Keyframe != r.Keyframe:
			t.Errorf("%s frame %d: keyframe %v received, %v sent", kind, i, r.Keyframe, f.Keyframe)
		default:
			continue
		}
		if bad++; bad > 5 {
			t.FailNow()
		}
	}
	return offset
}

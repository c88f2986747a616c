package rtp

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// baselineAVCC is an avcC of ffmpeg's: H.264 constrained baseline,
// 320x240 (sdk's test cases).
const baselineAVCC = "0142c00dffe100186742c00dd90141fb0110000003001000000303c0f142a48001000568cb83cb20"

// synthTracks are an H.264 track and an Opus track whose frames are made
// up: the sink does not decode them.
func synthTracks(t testing.TB) (video, audio sdk.Track) {
	avcC, _ := hex.DecodeString(baselineAVCC)
	video, err := sdk.H264FromConfig(avcC)
	if err != nil {
		t.Fatal(err)
	}
	audio, err = sdk.OpusFromChannels(2)
	if err != nil {
		t.Fatal(err)
	}
	video.Name, audio.Name = "video", "audio"
	return video, audio
}

// synthVideo is a length-prefixed H.264 access unit of one NAL unit of
// size bytes: an IDR slice or a non-IDR one.
func synthVideo(key bool, size int, n int) []byte {
	b := make([]byte, 4+size)
	binary.BigEndian.PutUint32(b, uint32(size))
	b[4] = 0x41
	if key {
		b[4] = 0x65
	}
	for i := 5; i < len(b); i++ {
		b[i] = byte(n + i)
	}
	return b
}

// synthVP8 is a VP8 frame of size bytes: a keyframe's frame tag, start
// code and 320x240 size (RFC 6386 9.1), then made-up bytes.
func synthVP8(key bool, size int, n int) []byte {
	b := make([]byte, max(size, 10))
	for i := range b {
		b[i] = byte(n + i)
	}
	b[0] |= 1 // an interframe
	if key {
		b[0] &^= 1
		copy(b[3:], []byte{0x9d, 0x01, 0x2a})
		binary.LittleEndian.PutUint16(b[6:], 320)
		binary.LittleEndian.PutUint16(b[8:], 240)
	}
	return b
}

// synthAudio is an audio frame of size made-up bytes, different for
// every n.
func synthAudio(size, n int) []byte {
	b := make([]byte, max(size, 4))
	for i := range b {
		b[i] = byte(n*7 + i)
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	return b
}

// synthStream describes what synthSource writes: 30 video frames a
// second, a keyframe every gop frames, and 20 ms Opus packets.
type synthStream struct {
	gop              int
	keySize, frameSz int
	// backlog is written at once before the rest, which is written in
	// real time; backlogDone is closed after it.
	backlog     time.Duration
	backlogDone chan struct{}
	// video and audio replace the H.264 and Opus tracks, videoFrame
	// synthVideo and audioSize the 120 bytes of every 20 ms audio frame.
	video, audio *sdk.Track
	videoFrame   func(key bool, size, n int) []byte
	audioSize    int
}

const videoInterval = time.Second / 30

// publishSynth publishes the stream at path in a new Origin until the
// test ends.
func publishSynth(t testing.TB, s synthStream) *moq.Origin {
	t.Helper()
	video, audio := synthTracks(t)
	if s.video != nil {
		video = *s.video
	}
	if s.audio != nil {
		audio = *s.audio
	}
	if s.videoFrame == nil {
		s.videoFrame = synthVideo
	}
	if s.audioSize == 0 {
		s.audioSize = 120
	}
	origin := moq.NewOrigin()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	src := sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
		tws, err := w.AddTracks(video, audio)
		if err != nil {
			return err
		}
		start := time.Now()
		frames := 0
		var at time.Duration // media time of the next audio packet
		backlogDone := false
		for v := time.Duration(0); ; v += videoInterval {
			if !backlogDone && v >= s.backlog {
				backlogDone = true
				start = time.Now().Add(-v)
				if s.backlogDone != nil {
					close(s.backlogDone)
				}
			}
			if backlogDone {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Until(start.Add(v))):
				}
			}
			key := frames%s.gop == 0
			size := s.frameSz
			if key {
				size = s.keySize
			}
			if err := tws[0].WriteFrame(sdk.Frame{PTS: v, Keyframe: key, Payload: s.videoFrame(key, size, frames)}); err != nil {
				return err
			}
			frames++
			for ; at < v+videoInterval; at += 20 * time.Millisecond {
				if err := tws[1].WriteFrame(sdk.Frame{PTS: at, Keyframe: true, Payload: synthAudio(s.audioSize, int(at/time.Millisecond))}); err != nil {
					return err
				}
			}
		}
	})
	go func() { done <- sdk.Publish(ctx, origin, "live/synth", src, sdk.PublishOptions{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("publish: %v", err)
		}
		origin.Close()
	})
	return origin
}

// datagram is a packet a udpReceiver received, and when.
type datagram struct {
	at time.Time
	b  []byte
}

// udpReceiver keeps what arrives on a UDP socket until the test ends.
type udpReceiver struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  []datagram
	done chan struct{}
}

func listenUDP(t testing.TB, conn *net.UDPConn) *udpReceiver {
	r := &udpReceiver{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			at := time.Now()
			r.mu.Lock()
			r.got = append(r.got, datagram{at: at, b: append([]byte(nil), buf[:n]...)})
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-r.done
	})
	return r
}

// receiveUDP binds a loopback UDP port and keeps what arrives.
func receiveUDP(t testing.TB, port int) *udpReceiver {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(8 << 20)
	return listenUDP(t, conn)
}

// datagrams returns what arrived so far.
func (r *udpReceiver) datagrams() []datagram {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]datagram(nil), r.got...)
}

// packets parses what arrived as RTP packets.
func (r *udpReceiver) packets(t testing.TB) []*rtp.Packet {
	t.Helper()
	var out []*rtp.Packet
	for _, d := range r.datagrams() {
		var p rtp.Packet
		if err := p.Unmarshal(d.b); err != nil {
			t.Fatalf("not an RTP packet: %v", err)
		}
		out = append(out, &p)
	}
	return out
}

package rtmp

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/abema/go-mp4"
	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// scriptConn is a gortmplib.Conn that reads a fixed list of messages, then
// io.EOF: what a publisher sent so far.
type scriptConn struct {
	msgs []message.Message
	read int
}

func (c *scriptConn) BytesReceived() uint64       { return 0 }
func (c *scriptConn) BytesSent() uint64           { return 0 }
func (c *scriptConn) Write(message.Message) error { return nil }
func (c *scriptConn) Read() (message.Message, error) {
	if c.read == len(c.msgs) {
		return nil, io.EOF
	}
	c.read++
	return c.msgs[c.read-1], nil
}

func metadata(entries ...amf0.ObjectEntry) message.Message {
	return &message.DataAMF0{Payload: amf0.Data{"@setDataFrame", "onMetaData", amf0.ECMAArray(entries)}}
}

var (
	testSPS = []byte{0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0xa4, 0x80}
	testPPS = []byte{0x68, 0xcb, 0x83, 0xcb, 0x20}
)

func videoConfig() message.Message {
	return &message.Video{Codec: message.CodecH264, IsKeyFrame: true, Type: message.VideoTypeConfig,
		AVCConfig: &mp4.AVCDecoderConfiguration{
			SequenceParameterSets: []mp4.AVCParameterSet{{NALUnit: testSPS}},
			PictureParameterSets:  []mp4.AVCParameterSet{{NALUnit: testPPS}},
		}}
}

func audioConfig() message.Message {
	return &message.Audio{Codec: message.CodecMPEG4Audio, Rate: message.AudioRate44100, Depth: message.AudioDepth16, IsStereo: true,
		AACType: message.AudioAACTypeConfig, AACConfig: &mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 2}}
}

func videoFrame(ms int) message.Message {
	return &message.Video{Codec: message.CodecH264, IsKeyFrame: true, Type: message.VideoTypeAU,
		DTS: time.Duration(ms) * time.Millisecond, AU: []byte{0, 0, 0, 2, 0x65, 0x88}}
}

func audioFrame(ms int) message.Message {
	return &message.Audio{Codec: message.CodecMPEG4Audio, Rate: message.AudioRate44100, Depth: message.AudioDepth16, IsStereo: true,
		AACType: message.AudioAACTypeAU, DTS: time.Duration(ms) * time.Millisecond, AU: []byte{0x21, 0x10}}
}

// TestAnalysisCutShort: with onMetaData announcing video and audio, the
// Reader reports both tracks as soon as their sequence headers and a
// media message came, long before 2 s of media; what it then replays is
// exactly what the publisher sent. Without the metadata, or with audio
// announced but not configured yet, it reads on (here: to the end of what
// was sent, failing without 2 s of media).
func TestAnalysisCutShort(t *testing.T) {
	full := []message.Message{
		metadata(amf0.ObjectEntry{Key: "videocodecid", Value: float64(7)}, amf0.ObjectEntry{Key: "audiocodecid", Value: float64(10)}),
		videoConfig(), audioConfig(), videoFrame(0), audioFrame(0), videoFrame(33), audioFrame(21),
	}
	cases := []struct {
		name  string
		msgs  []message.Message
		short bool // the analysis ends before the script does
	}{
		{"metadata, both configured", full, true},
		{"no metadata", full[1:], false},
		{"audio announced, not configured", []message.Message{full[0], full[1], full[3], full[5]}, false},
		{"video only", []message.Message{metadata(amf0.ObjectEntry{Key: "videocodecid", Value: float64(7)}), full[1], full[3], full[5]}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc := &scriptConn{msgs: c.msgs}
			ac := newAnalysisConn(sc)
			r := &gortmplib.Reader{Conn: ac}
			err := r.Initialize()
			if !c.short {
				if err == nil || ac.injected != nil {
					t.Fatalf("the analysis ended early (err %v)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ac.injected == nil {
				t.Fatal("the analysis was not cut short")
			}
			if sc.read == len(c.msgs) && c.name != "video only" {
				t.Errorf("the analysis read all %d messages", sc.read)
			}
			var videos, audios int
			for _, tr := range r.Tracks() {
				switch tr.Codec.(type) {
				case *codecs.H264:
					videos++
				case *codecs.MPEG4Audio:
					audios++
				}
			}
			wantAudio := 1
			if c.name == "video only" {
				wantAudio = 0
			}
			if videos != 1 || audios != wantAudio {
				t.Errorf("%d video and %d audio tracks", videos, audios)
			}
			conn := &skipInjected{Conn: r.Conn, injected: ac.injected}
			var replay []message.Message
			for {
				m, err := conn.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				replay = append(replay, m)
			}
			if len(replay) != len(c.msgs) {
				t.Fatalf("replayed %d messages, want the %d sent", len(replay), len(c.msgs))
			}
			for i := range replay {
				if replay[i] != c.msgs[i] {
					t.Errorf("message %d replayed is %T, want %T", i, replay[i], c.msgs[i])
				}
			}
		})
	}
}

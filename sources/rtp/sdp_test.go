package rtp

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/moqbridge/moqbridge/sdk"
)

// sdpSeeds are session descriptions as senders write them: ffmpeg's (as in
// hang-format.md §6.2), a camera's with sprop parameters, multicast ones
// with a source filter, IPv6, AAC in both payload formats, and G.711.
var sdpSeeds = []string{
	"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\na=tool:libavformat 61.7.100\r\n" +
		"m=video 5004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\nb=AS:2000\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n" +
		"m=audio 5006 RTP/AVP 111\r\nc=IN IP4 127.0.0.1\r\nb=AS:96\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 sprop-stereo=1\r\n",
	"v=0\no=- 1 1 IN IP4 192.168.1.20\ns=camera\nc=IN IP4 0.0.0.0\nt=0 0\n" +
		"m=video 6000 RTP/AVP 96\na=rtpmap:96 H264/90000\n" +
		"a=fmtp:96 packetization-mode=1;profile-level-id=42c00d;sprop-parameter-sets=Z0LADdkBQfsBEAAAAwAQAAADA8DxQqSA,aMuDyyA=\n",
	"v=0\no=- 0 0 IN IP4 10.0.0.1\ns=mcast\nc=IN IP4 239.1.2.3/32\nt=0 0\n" +
		"a=source-filter: incl IN IP4 239.1.2.3 10.0.0.1\n" +
		"m=video 5004 RTP/AVP 97\na=rtpmap:97 H265/90000\n" +
		"m=audio 5006 RTP/AVP 98\na=rtcp:5010\na=rtpmap:98 mpeg4-generic/48000/2\n" +
		"a=fmtp:98 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\n",
	"v=0\no=- 0 0 IN IP6 ::1\ns=v6\nc=IN IP6 ::1\nt=0 0\n" +
		"m=video 5004 RTP/AVP 96\na=rtpmap:96 AV1/90000\n" +
		"m=video 5008 RTP/AVP 100\na=rtpmap:100 VP9/90000\n" +
		"m=video 5012 RTP/AVP 101\na=rtpmap:101 VP8/90000\n" +
		"m=audio 5016 RTP/AVP 0\n" +
		"m=audio 5018 RTP/AVP 8\n",
	"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=latm\nc=IN IP4 127.0.0.1\nt=0 0\n" +
		"m=audio 5020 RTP/AVP 96\na=rtpmap:96 MP4A-LATM/44100/2\n" +
		"a=fmtp:96 profile-level-id=15;object=2;cpresent=0;config=400024203fc0\n",
}

func TestParseSDPFFmpeg(t *testing.T) {
	b, err := os.ReadFile("testdata/ffmpeg-h264-opus.sdp")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSDP(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Medias) != 2 {
		t.Fatalf("%d medias, want 2", len(s.Medias))
	}
	v, a := s.Medias[0], s.Medias[1]
	if v.Addr != netip.MustParseAddrPort("127.0.0.1:5004") || v.RTCPPort != 5005 {
		t.Errorf("video at %v, RTCP %d", v.Addr, v.RTCPPort)
	}
	if f, ok := v.Format.(*format.H264); !ok || f.PacketizationMode != 1 || f.PayloadType() != 96 {
		t.Errorf("video format %#v", v.Format)
	}
	if a.Addr != netip.MustParseAddrPort("127.0.0.1:5006") || a.RTCPPort != 5007 {
		t.Errorf("audio at %v, RTCP %d", a.Addr, a.RTCPPort)
	}
	if f, ok := a.Format.(*format.Opus); !ok || f.ChannelCount != 2 {
		t.Errorf("audio format %#v", a.Format)
	}
}

func TestParseSDPSeeds(t *testing.T) {
	for i, text := range sdpSeeds {
		s, err := ParseSDP([]byte(text))
		if err != nil {
			t.Errorf("seed %d: %v", i, err)
			continue
		}
		for _, m := range s.Medias {
			d, err := newDepacketizer(m.Format, nil)
			if err != nil {
				t.Errorf("seed %d %s: %v", i, m.Describe(), err)
				continue
			}
			if tr, ok, err := d.track(); ok && err == nil {
				if tr.Codec == "" {
					t.Errorf("seed %d %s: track without a codec", i, m.Describe())
				}
			}
		}
	}
	s, _ := ParseSDP([]byte(sdpSeeds[2]))
	if m := s.Medias[1]; m.RTCPPort != 5010 || len(m.Sources) != 1 || !m.Addr.Addr().IsMulticast() {
		t.Errorf("multicast audio: %+v", m)
	}
	s, _ = ParseSDP([]byte(sdpSeeds[1]))
	d, _ := newDepacketizer(s.Medias[0].Format, nil)
	if tr, ok, _ := d.track(); !ok || !strings.HasPrefix(tr.Codec, "avc1.42") || tr.DecoderConfig == nil {
		t.Errorf("sprop-parameter-sets give track %+v", tr)
	}
}

func TestParseSDPRefused(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 97\na=rtpmap:97 speex/16000\n",
			"media 1 (audio): payload format speex/16000, payload type 97 is not supported"},
		{"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/SAVP 96\na=rtpmap:96 H264/90000\n",
			"not RTP over UDP"},
		{"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nt=0 0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n",
			"no connection address"},
		{"garbage", "session description"},
	} {
		_, err := ParseSDP([]byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one containing %q", err, c.want)
		}
		if err != nil && !sdk.IsPermanent(err) {
			t.Errorf("error %v is not permanent", err)
		}
	}
}

func FuzzParseSDP(f *testing.F) {
	for _, s := range sdpSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSDP(b)
		if err != nil {
			if !sdk.IsPermanent(err) {
				t.Fatalf("error %v is not permanent", err)
			}
			return
		}
		for _, m := range s.Medias {
			if d, err := newDepacketizer(m.Format, nil); err == nil {
				_, _, _ = d.track()
			}
		}
	})
}

// TestBadSprop: parameter sets in the SDP that do not parse are ignored,
// and the track waits for the ones in band.
func TestBadSprop(t *testing.T) {
	s, err := ParseSDP([]byte("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n" +
		"m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0IAAA==,aM4=\n"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDepacketizer(s.Medias[0].Format, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.track(); ok {
		t.Error("a track from parameter sets that do not parse")
	}
}

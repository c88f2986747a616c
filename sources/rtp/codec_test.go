package rtp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Parameter sets, sequence headers and keyframe headers made by ffmpeg
// 5.1 (as in sdk's codec tests), or by hand for VP8 and VP9.
var (
	// The VPS, SPS and PPS of libx265's 322x242 Main (sdk's hvcC case).
	hevcVPS = mustHex("40010c01ffff01600000030090000003000003003c959809")
	hevcSPS = mustHex("42010101600000030090000003000003003ca00a480f9c9265959a4932bc05a02000000300200000030321a2")
	hevcPPS = mustHex("4401c172b46240")
	// libaom's 8-bit 4:2:0 sequence header, without its size field.
	av1SeqHeader = mustHex("08000000043d07c4daf90040")
	// A VP9 profile 0 keyframe header: 320x240.
	vp9KeyHeader = mustHex("8249834220" + "13f00ef0")
)

func TestCodecs(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	random := func(n int) []byte {
		b := make([]byte, n)
		noZeros(r, b)
		return b
	}
	// Access units are made once per case and index, then encoded and
	// expected from the same bytes.
	type au struct {
		parts   [][]byte
		payload []byte
		key     bool
	}
	aus := map[string][]au{}
	get := func(name string, i int, make func(i int) au) au {
		for len(aus[name]) <= i {
			aus[name] = append(aus[name], make(len(aus[name])))
		}
		return aus[name][i]
	}
	h265AU := func(i int) au {
		slice := random(200 + r.IntN(3000))
		if i%10 == 0 {
			slice[0], slice[1], slice[2] = 19<<1, 1, 0x80|slice[2] // IDR_W_RADL
		} else {
			slice[0], slice[1], slice[2] = 1<<1, 1, 0x80|slice[2] // TRAIL_R
		}
		parts := [][]byte{slice}
		if i%10 == 0 {
			parts = [][]byte{hevcVPS, hevcSPS, hevcPPS, slice}
		}
		return au{parts: parts, payload: append(binary.BigEndian.AppendUint32(nil, uint32(len(slice))), slice...), key: i%10 == 0}
	}
	av1AU := func(i int) au {
		frame := append([]byte{6 << 3}, random(100+r.IntN(3000))...) // OBU_FRAME without size
		obus := [][]byte{frame}
		if i%10 == 0 {
			obus = [][]byte{av1SeqHeader, frame}
		}
		payload, err := av1.Bitstream(obus).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return au{parts: obus, payload: payload, key: i%10 == 0}
	}
	vp8AU := func(i int) au {
		f := random(100 + r.IntN(3000))
		if i%10 == 0 {
			f[0] &^= 1
			copy(f[3:], []byte{0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00}) // 320x240
		} else {
			f[0] |= 1
		}
		return au{payload: f, key: i%10 == 0}
	}
	vp9AU := func(i int) au {
		f := random(100 + r.IntN(3000))
		if i%10 == 0 {
			copy(f, vp9KeyHeader)
		} else {
			f[0] = 0x86 // profile 0, inter frame, shown
		}
		return au{payload: f, key: i%10 == 0}
	}
	audioAU := func(n int) func(int) au {
		return func(int) au { p := random(n); return au{payload: p, key: true} }
	}

	smc := &mpeg4audio.StreamMuxConfig{Programs: []*mpeg4audio.StreamMuxConfigProgram{{Layers: []*mpeg4audio.StreamMuxConfigLayer{{
		AudioSpecificConfig: &mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 44100, ChannelConfig: 2, ChannelCount: 2},
		LatmBufferFullness:  255,
	}}}}}
	smcBytes, err := smc.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, media, codec string
		ticks              int64
		make               func(int) au
		encode             func(f format.Format, a au) ([]*rtp.Packet, error)
	}{
		{"H.265", "m=video 5004 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\n", "hvc1.1.6.L60", 3000, h265AU,
			func(f format.Format, a au) ([]*rtp.Packet, error) {
				e, err := f.(*format.H265).CreateEncoder()
				if err != nil {
					return nil, err
				}
				return e.Encode(a.parts)
			}},
		{"AV1", "m=video 5004 RTP/AVP 98\r\na=rtpmap:98 AV1/90000\r\n", "av01.0.00M.08", 3000, av1AU,
			func(f format.Format, a au) ([]*rtp.Packet, error) {
				e, err := f.(*format.AV1).CreateEncoder()
				if err != nil {
					return nil, err
				}
				return e.Encode(a.parts)
			}},
		{"VP8", "m=video 5004 RTP/AVP 99\r\na=rtpmap:99 VP8/90000\r\n", "vp8", 3000, vp8AU,
			func(f format.Format, a au) ([]*rtp.Packet, error) {
				e, err := f.(*format.VP8).CreateEncoder()
				if err != nil {
					return nil, err
				}
				return e.Encode(a.payload)
			}},
		{"VP9", "m=video 5004 RTP/AVP 100\r\na=rtpmap:100 VP9/90000\r\n", "vp09.00", 3000, vp9AU,
			func(f format.Format, a au) ([]*rtp.Packet, error) {
				e, err := f.(*format.VP9).CreateEncoder()
				if err != nil {
					return nil, err
				}
				return e.Encode(a.payload)
			}},
		{"AAC", "m=audio 5004 RTP/AVP 101\r\na=rtpmap:101 mpeg4-generic/48000/2\r\n" +
			"a=fmtp:101 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n",
			"mp4a.40.2", 1024, audioAU(300),
			func(f format.Format, a au) ([]*rtp.Packet, error) {
				e, err := f.(*format.MPEG4Audio).CreateEncoder()
				if err != nil {
					return nil, err
				}
				return e.Encode([][]byte{a.payload})
			}},
		{"AAC LATM", "m=audio 5004 RTP/AVP 102\r\na=rtpmap:102 MP4A-LATM/44100/2\r\n" +
			"a=fmtp:102 profile-level-id=15;object=2;cpresent=0;config=" + hex.EncodeToString(smcBytes) + "\r\n",
			"mp4a.40.2", 1024, audioAU(300),
			func(f format.Format, a au) ([]*rtp.Packet, error) {
				e, err := f.(*format.MPEG4AudioLATM).CreateEncoder()
				if err != nil {
					return nil, err
				}
				el, err := (mpeg4audio.AudioMuxElement{StreamMuxConfig: smc, Payloads: [][][][]byte{{{a.payload}}}}).Marshal()
				if err != nil {
					return nil, err
				}
				return e.Encode(el)
			}},
		{"G.711 µ-law", "m=audio 5004 RTP/AVP 0\r\n", "ulaw", 160, audioAU(160),
			func(f format.Format, a au) ([]*rtp.Packet, error) {
				e, err := f.(*format.G711).CreateEncoder()
				if err != nil {
					return nil, err
				}
				return e.Encode(a.payload)
			}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			s, err := ParseSDP([]byte("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" + tc.media))
			if err != nil {
				t.Fatal(err)
			}
			m := s.Medias[0]
			pb := moq.NewBroadcast()
			defer pb.Close()
			w, err := sdk.NewBroadcastWriter(pb, sdk.WriterConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			md, err := newMedia(m, w, &timeline{}, DefaultReorderWindow, &mediaCounters{}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			// The encode funcs make an encoder per access unit: the
			// packets are numbered here.
			now := time.Unix(1e9, 0)
			seq := uint16(100)
			const n = 30
			for i := range n {
				pkts, err := tc.encode(m.Format, get(tc.name, i, tc.make))
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range pkts {
					p.SequenceNumber, p.SSRC, p.Timestamp = seq, 9, uint32(int64(i)*tc.ticks)
					seq++
					b, err := p.Marshal()
					if err != nil {
						t.Fatal(err)
					}
					if err := md.packet(b, now); err != nil {
						t.Fatal(err)
					}
				}
				if i == 0 {
					if err := md.expire(now.Add(time.Second)); err != nil {
						t.Fatal(err)
					}
				}
			}
			// The last access unit ends at the next timestamp, or here.
			if md.auOpen {
				if err := md.finish(); err != nil {
					t.Fatal(err)
				}
			}
			if md.tw == nil {
				t.Fatalf("no track: %+v", md.c.snapshot())
			}
			if tr := md.tw.Track(); !strings.HasPrefix(tr.Codec, tc.codec) {
				t.Errorf("codec %q, want %q…", tr.Codec, tc.codec)
			}
			br, err := sdk.NewBroadcastReaderFrom(pb.Reader(), moq.FromOldest)
			if err != nil {
				t.Fatal(err)
			}
			defer br.Close()
			ctx := testkit.Context(t, 10*time.Second)
			if err := br.WaitCatalog(ctx); err != nil {
				t.Fatal(err)
			}
			sub, err := br.Subscribe(md.tw.Track().Name)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			_ = w.Close()
			var got []sdk.Frame
			for {
				f, err := sub.ReadFrame(ctx)
				if err != nil {
					break
				}
				got = append(got, f)
			}
			if len(got) != n {
				t.Fatalf("%d frames, want %d (%+v)", len(got), n, md.c.snapshot())
			}
			for i, f := range got {
				a := aus[tc.name][i]
				if !bytes.Equal(f.Payload, a.payload) {
					t.Errorf("frame %d: %d bytes differ from the %d sent", i, len(f.Payload), len(a.payload))
				}
				if f.Keyframe != a.key {
					t.Errorf("frame %d: keyframe %v", i, f.Keyframe)
				}
				want := got[0].PTS + time.Duration(int64(i)*tc.ticks*int64(time.Second)/int64(m.Format.ClockRate()))
				if absDur(f.PTS-want) > time.Microsecond {
					t.Errorf("frame %d at %v, want %v", i, f.PTS, want)
				}
			}
		})
	}
}

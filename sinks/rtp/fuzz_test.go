package rtp

import (
	"testing"

	"github.com/moqbridge/moqbridge/sdk"
)

// fuzzTracks are a track of every codec the sink sends, with the MTU the
// fuzz target packetizes for.
func fuzzTracks(t testing.TB) []sdk.Track {
	video, opus := synthTracks(t)
	annexB := sdk.Track{Name: "annexb", Kind: sdk.KindVideo, Codec: "avc1.42c00d"}
	aac, err := sdk.AACFromConfig([]byte{0x11, 0x90})
	if err != nil {
		t.Fatal(err)
	}
	return []sdk.Track{video, annexB, opus, aac,
		{Name: "hevc", Kind: sdk.KindVideo, Codec: "hvc1.1.6.L93.B0"},
		{Name: "av1", Kind: sdk.KindVideo, Codec: "av01.0.08M.08"},
		{Name: "vp8", Kind: sdk.KindVideo, Codec: "vp8"},
		{Name: "vp9", Kind: sdk.KindVideo, Codec: "vp09.00.10.08"},
		{Name: "ulaw", Kind: sdk.KindAudio, Codec: "ulaw", SampleRate: 8000, Channels: 1},
	}
}

// FuzzPacketize feeds arbitrary frames, as a relay may hand over, to the
// encoder of every codec: each either refuses the frame with an error or
// returns packets whose payloads fit the MTU; none panics.
func FuzzPacketize(f *testing.F) {
	f.Add(synthVideo(true, 300, 1), true)
	f.Add(synthVideo(false, 10, 2), false)
	f.Add([]byte{0, 0, 0, 1, 0x65, 1, 2, 3, 0, 0, 1, 0x41, 9}, true)       // Annex B
	f.Add([]byte{0x12, 0x00, 0x0a, 0x0b, 0, 0, 0, 0x4a, 0xab, 0xbf}, true) // AV1 OBUs
	f.Add([]byte{0x10, 0x02, 0x9d, 0x01, 0x2a, 1, 2, 3, 4}, true)          // VP8-ish
	f.Add([]byte{0xff}, false)
	f.Add([]byte{0, 0, 0, 0}, true)
	const mtu = MinMTU
	tracks := fuzzTracks(f)
	f.Fuzz(func(t *testing.T, payload []byte, key bool) {
		for _, tr := range tracks {
			o, err := newOutTrack(tr, firstDynamicPayloadType)
			if err != nil {
				t.Fatalf("%s: %v", tr.Codec, err)
			}
			pack, ssrc, err := o.newPacketizer(mtu - rtpHeaderSize)
			if err != nil {
				t.Fatal(err)
			}
			st := &stream{o: o, pack: pack, ssrc: ssrc}
			pkts, err := packetize(st, payload, key)
			if err != nil {
				continue
			}
			for _, p := range pkts {
				if p.MarshalSize() > mtu {
					t.Fatalf("%s: a packet of %d bytes, MTU %d", tr.Codec, p.MarshalSize(), mtu)
				}
			}
		}
	})
}

package rtp

import (
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/pion/rtcp"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// fuzzMedias are the media the packet fuzz target feeds, picked by the
// input's first byte: every payload format of the SDP seeds.
func fuzzMedias(t testing.TB) []Media {
	var out []Media
	for _, text := range sdpSeeds {
		s, err := ParseSDP([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s.Medias...)
	}
	return out
}

// appendDatagram appends a datagram to a fuzz input: a flag byte (bit 0:
// RTCP; the rest: milliseconds since the previous one), a 2-byte length,
// the bytes.
func appendDatagram(in []byte, rtcpPacket bool, gap byte, b []byte) []byte {
	flag := gap << 1
	if rtcpPacket {
		flag |= 1
	}
	in = append(in, flag)
	in = binary.BigEndian.AppendUint16(in, uint16(len(b)))
	return append(in, b...)
}

// fuzzSeed is a valid H.264 stream with a sender report, reordered a
// little, for the first media.
func fuzzSeed(t testing.TB) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	ssrc, seq := uint32(1), uint16(65530)
	enc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, SSRC: &ssrc, InitialSequenceNumber: &seq, PayloadMaxSize: 300}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	in := []byte{0}
	b, _ := (&rtcp.SenderReport{SSRC: 1, NTPTime: 1 << 40, RTPTime: 4294960000}).Marshal()
	in = appendDatagram(in, true, 0, b)
	for i, au := range makeVideo(r, 4) {
		pkts, err := enc.Encode(au.nalus)
		if err != nil {
			t.Fatal(err)
		}
		for j, p := range pkts {
			p.Timestamp = 4294960000 + uint32(i*videoTicks)
			b, _ := p.Marshal()
			if j == 1 && len(pkts) > 2 { // the second packet after the third
				b2, _ := pkts[2].Marshal()
				in = appendDatagram(in, false, 1, b2)
			}
			in = appendDatagram(in, false, 1, b)
		}
	}
	return in
}

// FuzzPackets feeds arbitrary datagrams, RTP and RTCP, into the ingest of
// one media: it must never panic, hold more than its bounds, or write a
// frame the writer refuses.
func FuzzPackets(f *testing.F) {
	medias := fuzzMedias(f)
	f.Add(fuzzSeed(f))
	for i := range medias {
		f.Add([]byte{byte(i), 0, 0, 12, 0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1})
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		m := medias[int(in[0])%len(medias)]
		in = in[1:]
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
		now := time.Unix(1e9, 0)
		for len(in) >= 3 {
			flag, n := in[0], int(binary.BigEndian.Uint16(in[1:]))
			in = in[3:]
			n = min(n, len(in))
			data := append([]byte(nil), in[:n]...)
			in = in[n:]
			now = now.Add(time.Duration(flag>>1) * time.Millisecond)
			if err := md.expire(now); err != nil {
				t.Fatalf("expire: %v", err)
			}
			if flag&1 != 0 {
				md.rtcp(data, now)
				continue
			}
			if err := md.packet(data, now); err != nil {
				t.Fatalf("packet: %v", err)
			}
			if md.rb.held > reorderSlots || len(md.au) > maxAUPackets || md.auBytes > maxAUBytes+maxDatagram {
				t.Fatalf("unbounded: %d held, %d packets and %d bytes in the access unit", md.rb.held, len(md.au), md.auBytes)
			}
		}
		if err := md.expire(now.Add(time.Hour)); err != nil {
			t.Fatalf("expire: %v", err)
		}
		if md.rb.held != 0 {
			t.Fatalf("%d packets still held after the window", md.rb.held)
		}
	})
}

package rtp

import (
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// BenchmarkIngest measures the ingest path without the sockets: RTP
// datagrams of H.264 (1200-byte packets) through the reorder buffer, the
// depacketizer, the clock and the broadcast writer. It reports packets
// per second on one core (the copy of each datagram, as the socket reader
// makes, included).
func BenchmarkIngest(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	video := makeVideo(r, 60)
	ssrc, seq := uint32(5), uint16(0)
	enc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, SSRC: &ssrc, InitialSequenceNumber: &seq, PayloadMaxSize: 1200}
	if err := enc.Init(); err != nil {
		b.Fatal(err)
	}
	s, err := ParseSDP([]byte(testSDP))
	if err != nil {
		b.Fatal(err)
	}
	pb := moq.NewBroadcastWithCache(moq.CacheConfig{MaxBytes: 1 << 20})
	defer pb.Close()
	w, err := sdk.NewBroadcastWriter(pb, sdk.WriterConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	md, err := newMedia(s.Medias[0], w, &timeline{}, DefaultReorderWindow, &mediaCounters{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	// The datagrams of one cycle of frames; each round copies them (as
	// the socket reader does) with the sequence and time going on.
	var cycle [][][]byte
	for _, au := range video {
		pkts, err := enc.Encode(au.nalus)
		if err != nil {
			b.Fatal(err)
		}
		var frame [][]byte
		for _, p := range pkts {
			data, _ := p.Marshal()
			frame = append(frame, data)
		}
		cycle = append(cycle, frame)
	}
	now := time.Unix(1e9, 0)
	packets := 0
	for i := 0; b.Loop(); i++ {
		for _, d := range cycle[i%len(cycle)] {
			data := append([]byte(nil), d...)
			binary.BigEndian.PutUint16(data[2:], uint16(packets))
			binary.BigEndian.PutUint32(data[4:], uint32(i*videoTicks))
			if err := md.packet(data, now); err != nil {
				b.Fatal(err)
			}
			packets++
		}
		if i == 0 {
			_ = md.expire(now.Add(time.Second)) // the settling window
		}
		now = now.Add(time.Millisecond)
	}
	b.ReportMetric(float64(packets)/b.Elapsed().Seconds(), "packets/s")
}

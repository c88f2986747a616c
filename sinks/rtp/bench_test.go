package rtp

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// BenchmarkSend measures the cost of sending: H.264 frames of 12 kB (ten
// packets at the default MTU) packetized, marshalled and written to a
// loopback socket whose reader discards them, without the pacing (which
// only waits). It reports packets per second on one core.
func BenchmarkSend(b *testing.B) {
	port := testkit.FreeUDPPorts(b, 2)
	rcv := receiveUDPDiscard(b, port)
	defer rcv()
	video, _ := synthTracks(b)
	lb := &testkit.LogBuffer{}
	sink := newSink(b, lb, Config{Dest: fmt.Sprintf("127.0.0.1:%d", port)})
	sink.unpaced = true
	o, err := newOutTrack(video, firstDynamicPayloadType)
	if err != nil {
		b.Fatal(err)
	}
	streams, err := sink.openStreams([]*outTrack{o})
	if err != nil {
		b.Fatal(err)
	}
	defer closeStreams(streams)
	w := &writer{s: sink, log: lb.Logger(), q: newQueue(maxQueueBytes, time.Minute, time.Minute), streams: streams,
		timer: time.NewTimer(time.Hour), buf: make([]byte, sink.cfg.MTU)}
	defer w.timer.Stop()
	frames := [][]byte{synthVideo(true, 12_000, 0), synthVideo(false, 12_000, 1)}
	ctx := context.Background()
	b.SetBytes(12_000)
	b.ResetTimer()
	began := time.Now()
	for i := range b.N {
		it := item{track: 0, t: time.Duration(i) * videoInterval, key: i%30 == 0}
		it.f.PTS, it.f.Keyframe, it.f.Payload = it.t, it.key, frames[min(i%30, 1)]
		w.send(ctx, it)
	}
	elapsed := time.Since(began)
	b.StopTimer()
	st := sink.Stats()
	b.ReportMetric(float64(st.Packets)/elapsed.Seconds(), "packets/s")
	if st.Frames != uint64(b.N) || st.Unsent != 0 {
		b.Fatalf("stats %+v after %d frames", st, b.N)
	}
}

// receiveUDPDiscard binds a loopback UDP port and reads and discards what
// arrives, until the returned function is called.
func receiveUDPDiscard(b *testing.B, port int) func() {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	return func() {
		_ = conn.Close()
		<-done
	}
}

//go:build linux

package rtp

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/moqbridge/moqbridge/bench"
	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// socketWindow is how many packets the sender of BenchmarkIngestSocket
// lets be ahead of what the source has taken: far below what the
// source's 4 MiB socket buffer holds, so that none is dropped by the
// kernel, and enough that the source never waits for the sender.
const socketWindow = 512

// BenchmarkIngestSocket measures the source over real loopback sockets:
// a sender in this process writes the RTP packets of a real H.264 stream
// (2 s of ffmpeg's testsrc2 at 720p30, 3 Mbit/s, x264 veryfast, 1200-byte
// packets, sequence numbers and timestamps going on across the loops)
// to the video socket of a running Source as fast as the source keeps
// up: at most socketWindow packets ahead of what it has received, so
// that none is lost. It reports packets per second, packets per
// CPU-second of the whole process (sender, socket reads, reorder buffer,
// depacketizer, broadcast writer) and per CPU-second without the sender's
// thread, and fails if a packet was lost. It needs ffmpeg to encode the
// stream.
func BenchmarkIngestSocket(b *testing.B) {
	testkit.NeedFFmpeg(b)
	cycle := realVideoPackets(b)
	src, err := New(Config{SDP: testSDP, Listen: []string{"127.0.0.1:0", "127.0.0.1:0"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	if err := src.Listen(); err != nil {
		b.Fatal(err)
	}
	pb := moq.NewBroadcastWithCache(moq.CacheConfig{MaxBytes: 1 << 20})
	defer pb.Close()
	w, err := sdk.NewBroadcastWriter(pb, sdk.WriterConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(src.Addrs()[0].RTP))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, w) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	received := func() uint64 { return src.Stats()[0].Packets }

	// The sender's thread is this goroutine's alone while it sends, so
	// its CPU time can be told from the rest of the process's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 0, 1500)
	var sent uint64
	var frame int
	send := func(p []byte) {
		buf = append(buf[:0], p...)
		binary.BigEndian.PutUint16(buf[2:], uint16(sent))
		binary.BigEndian.PutUint32(buf[4:], uint32(frame*videoTicks))
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
		sent++
		// Every 64 packets, wait while the source is more than the
		// window behind.
		for sent%64 == 0 && sent-received() > socketWindow {
			time.Sleep(20 * time.Microsecond)
		}
	}
	// A first loop settles the stream (the reorder buffer's first window,
	// the tracks) before the measurement.
	for _, f := range cycle {
		for _, p := range f {
			send(p)
		}
		frame++
	}
	for sent != received() {
		time.Sleep(time.Millisecond)
	}
	start, self0, thread0 := time.Now(), bench.SelfCPU(), threadCPU()
	first := sent
	next := 0 // the next packet of the frame
	for b.Loop() {
		// One packet per iteration; a frame's packets go out together.
		f := cycle[frame%len(cycle)]
		send(f[next])
		if next++; next == len(f) {
			next = 0
			frame++
		}
	}
	for deadline := time.Now().Add(10 * time.Second); sent != received(); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			b.Fatalf("the source took %d of %d packets", received(), sent)
		}
	}
	elapsed, cpu, sender := time.Since(start), bench.SelfCPU()-self0, threadCPU()-thread0
	st := src.Stats()[0]
	if st.Lost+st.Damaged+st.Skipped+st.Invalid != 0 {
		b.Errorf("%+v: packets lost", st)
	}
	n := float64(sent - first)
	b.ReportMetric(n/elapsed.Seconds(), "packets/s")
	b.ReportMetric(n/cpu.Seconds(), "packets/cpu-s")
	b.ReportMetric(n/(cpu-sender).Seconds(), "packets/cpu-s-no-sender")
	b.ReportMetric(float64(cpu)/n, "cpu-ns/packet")
}

// realVideoPackets encodes 2 s of 720p30 H.264 with ffmpeg (3 Mbit/s,
// keyframe every second, no B-frames, parameter sets in band) and returns
// its RTP packets, frame by frame, as ffmpeg's and gortsplib's
// packetizers make them: 1200-byte payloads, FU-A fragments.
func realVideoPackets(b *testing.B) [][][]byte {
	b.Helper()
	file := filepath.Join(b.TempDir(), "video.h264")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "2",
		"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p", "-bf", "0",
		"-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "6000k", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
		"-f", "h264", file).CombinedOutput()
	if err != nil {
		b.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	stream, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	// The NAL units, between start codes (h264.AnnexB's Unmarshal takes
	// at most one access unit's worth).
	var nalus [][]byte
	for rest := stream; ; {
		i := bytes.Index(rest, []byte{0, 0, 1})
		if i < 0 {
			nalus = append(nalus, rest)
			break
		}
		if n := bytes.TrimRight(rest[:i], "\x00"); len(n) > 0 {
			nalus = append(nalus, n)
		}
		rest = rest[i+3:]
	}
	// Access units: a slice whose first_mb_in_slice is 0 (its first bit
	// after the header is 1), or a non-slice NAL unit after a slice,
	// starts the next one.
	var aus [][][]byte
	var au [][]byte
	hasSlice := false
	for _, n := range nalus {
		if len(n) < 2 {
			continue
		}
		typ := h264.NALUType(n[0] & 0x1f)
		slice := typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR
		if hasSlice && (!slice || n[1]&0x80 != 0) {
			aus, au, hasSlice = append(aus, au), nil, false
		}
		au = append(au, n)
		hasSlice = hasSlice || slice
	}
	if hasSlice {
		aus = append(aus, au)
	}
	if len(aus) != 60 {
		b.Fatalf("%d access units in 2 s of 30 fps", len(aus))
	}
	ssrc, seq := uint32(5), uint16(0)
	enc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, SSRC: &ssrc, InitialSequenceNumber: &seq, PayloadMaxSize: 1200}
	if err := enc.Init(); err != nil {
		b.Fatal(err)
	}
	var cycle [][][]byte
	packets := 0
	for _, au := range aus {
		pkts, err := enc.Encode(au)
		if err != nil {
			b.Fatal(err)
		}
		var frame [][]byte
		for _, p := range pkts {
			data, _ := p.Marshal()
			frame = append(frame, data)
		}
		cycle = append(cycle, frame)
		packets += len(frame)
	}
	b.Logf("%d bytes of H.264, %d access units, %d RTP packets a loop", len(stream), len(aus), packets)
	return cycle
}

// threadCPU is the calling thread's user + system CPU time.
func threadCPU() time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD (Linux), which package syscall does not name
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

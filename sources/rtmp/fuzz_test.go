package rtmp

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// recordingConn records what is written to it.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// publishBytes returns the bytes a gortmplib client sends to publish
// H.264 + AAC at rtmp://…/live/test: the handshake, the connect, publish
// and metadata commands, the sequence headers and 2.5 s of media, enough
// for the server's track analysis to end. The server it talks to is the
// package's, over a pipe.
func publishBytes(t testing.TB) []byte {
	t.Helper()
	sps, _ := hex.DecodeString("6742c00dd90141fb0110000003001000000303c0f142a480")
	pps, _ := hex.DecodeString("68cb83cb20")
	ctx := testkit.Context(t, 10*time.Second)
	origin := moq.NewOrigin()
	defer origin.Close()
	p := sdk.NewPublisher(origin, sdk.PublisherOptions{})
	defer p.Close()
	s := NewServer(Config{Logger: slog.New(slog.DiscardHandler)})
	var rec *recordingConn
	served := make(chan struct{})
	u, _ := url.Parse("rtmp://127.0.0.1/live#test")
	c := &gortmplib.Client{URL: u, Publish: true, DialContext: func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() { s.serveConn(ctx, server, p); close(served) }()
		rec = &recordingConn{Conn: client}
		return rec, nil
	}}
	if err := c.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, c.NetConn()) }()
	video := &gortmplib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}}
	audio := &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: &mpeg4audio.AudioSpecificConfig{
		Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 2}}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{video, audio}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		ts := time.Duration(i) * 100 * time.Millisecond
		nalType := byte(0x41) // non-IDR slice
		if i%10 == 0 {
			nalType = 0x65 // IDR
		}
		if err := w.WriteH264(video, ts, ts, [][]byte{{nalType, 0x88, 0x84, byte(i)}}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteMPEG4Audio(audio, ts, []byte{0x21, 0x10, byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	<-served
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return bytes.Clone(rec.buf.Bytes())
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return client.(*net.TCPConn), server
}

// serveBytes feeds data to a server connection as a client would, then
// hangs up; it fails the test if the server panics, does not close the
// connection within a few seconds, leaves a goroutine behind or allocates
// far more than the client sent.
func serveBytes(t *testing.T, data []byte, log *slog.Logger) {
	ignore := goleak.IgnoreCurrent()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := moq.NewOrigin()
	p := sdk.NewPublisher(origin, sdk.PublisherOptions{})
	s := NewServer(Config{Logger: log, SetupTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	s.panicked = func(v any) { t.Errorf("panic: %v", v) }
	client, server := tcpPair(t)
	served := make(chan struct{})
	go func() { s.serveConn(ctx, server, p); close(served) }()
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, client); close(drained) }()
	_ = client.SetWriteDeadline(time.Now().Add(3 * time.Second))
	_, _ = client.Write(data)
	_ = client.CloseWrite() // the server reads to the end, and may answer
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not close the connection within 5 s of the client hanging up")
	}
	<-drained
	_ = client.Close()
	p.Close()
	origin.Close()

	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20+64*uint64(len(data)) {
		t.Errorf("%d bytes from the client cost %d bytes of allocation", len(data), n)
	}
	if err := goleak.Find(ignore); err != nil {
		t.Error(err)
	}
}

// FuzzServerConn feeds random and mutated client bytes to the server: the
// handshake, chunk streams, commands and media of a real publish are the
// seeds.
func FuzzServerConn(f *testing.F) {
	seed := publishBytes(f)
	f.Add(seed)
	f.Add(seed[:1537])        // C0 + C1
	f.Add(seed[:1537+1536])   // the handshake
	f.Add(seed[:len(seed)/2]) // cut in the middle of the media
	f.Add([]byte{})
	f.Add([]byte{3})
	f.Add([]byte{6}) // an encrypted handshake
	f.Fuzz(func(t *testing.T, data []byte) {
		serveBytes(t, data, slog.New(slog.DiscardHandler))
	})
}

// TestPublishBytes: the seed is a real publish, which the server takes
// to the end (its tracks found, the broadcast ended on hang-up).
func TestPublishBytes(t *testing.T) {
	b := publishBytes(t)
	if len(b) < 3073 || b[0] != 3 {
		t.Fatalf("%d bytes starting with %x: not an RTMP client", len(b), b[:min(len(b), 1)])
	}
	lb := &testkit.LogBuffer{}
	serveBytes(t, b, slog.New(slog.NewTextHandler(lb, nil)))
	lb.WaitLog(t, time.Second, "rtmp: publishing", "path=live/test", "H.264, AAC")
	lb.WaitLog(t, time.Second, "rtmp: publisher disconnected", "path=live/test")
}

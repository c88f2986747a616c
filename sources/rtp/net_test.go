package rtp

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpsimpleaudio"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// opusSDP describes one Opus media at addr ("IP4 127.0.0.1").
func opusSDP(addr string) string {
	return "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 5006 RTP/AVP 111\r\nc=IN " + addr + "\r\na=rtpmap:111 opus/48000/2\r\n"
}

// sendOpus sends n Opus packets of 20 ms to addr.
func sendOpus(t *testing.T, c net.Conn, n int, ssrc uint32) {
	t.Helper()
	enc := &rtpsimpleaudio.Encoder{PayloadType: 111, SSRC: &ssrc}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p, err := enc.Encode([]byte{0xfc, byte(i), 1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		p.Timestamp = uint32(i * audioTicks)
		b, _ := p.Marshal()
		if _, err := c.Write(b); err != nil {
			t.Fatalf("sending: %v", err)
		}
	}
}

// receive runs src into a broadcast until it has written n frames, and
// returns Run's error after ctx ends or Run ends on its own.
func receive(t *testing.T, ctx context.Context, src *Source, n uint64, send func()) error {
	t.Helper()
	pb := moq.NewBroadcast()
	defer pb.Close()
	w, err := sdk.NewBroadcastWriter(pb, sdk.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := src.Listen(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- src.Run(runCtx, w) }()
	send()
	for src.Stats()[0].Frames < n {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			t.Fatalf("%+v after the test's time", src.Stats()[0])
		case <-time.After(5 * time.Millisecond):
		}
	}
	stop()
	return <-done
}

func TestIPv6(t *testing.T) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		testkit.Unavailable(t, "no IPv6 loopback: %v", err)
		return
	}
	c.Close()
	ctx := testkit.Context(t, 20*time.Second)
	src, err := New(Config{SDP: opusSDP("IP6 ::1"), Listen: []string{"[::1]:0"}, Logger: (&testkit.LogBuffer{}).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Listen(); err != nil {
		t.Fatal(err)
	}
	a := src.Addrs()[0]
	if !a.RTP.Addr().Is6() {
		t.Fatalf("listening on %v", a.RTP)
	}
	err = receive(t, ctx, src, 10, func() { sendOpus(t, dial(t, a.RTP), 10, 1) })
	if err != nil {
		t.Fatal(err)
	}
}

func TestMulticast(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	src, err := New(Config{SDP: opusSDP("IP4 239.255.42.99/16"), Listen: []string{":0"}, Logger: (&testkit.LogBuffer{}).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Listen(); err != nil {
		testkit.Unavailable(t, "cannot join a multicast group here: %v", err)
		return
	}
	a := src.Addrs()[0]
	if a.RTP.Addr().String() != "239.255.42.99" {
		t.Fatalf("receiving on %v", a.RTP)
	}
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP("239.255.42.99"), Port: int(a.RTP.Port())})
	if err != nil {
		src.Close()
		testkit.Unavailable(t, "cannot send to a multicast group here: %v", err)
		return
	}
	defer c.Close()
	got := make(chan error, 1)
	go func() {
		got <- receive(t, ctx, src, 10, func() {})
	}()
	// Send until the source has the frames: the group join may take a
	// moment.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			return
		case <-tick.C:
			if i == 100 {
				t.Logf("no multicast delivery after 2 s: %+v", src.Stats()[0])
			}
			if _, err := c.Write(nil); err != nil && strings.Contains(err.Error(), "unreachable") {
				testkit.Unavailable(t, "no multicast route: %v", err)
			}
			sendOpus(t, c, 1, 7)
		}
	}
}

// TestTimeoutAndReturn: silence ends Run with a transient error; the next
// Run receives the returning sender on the same ports.
func TestTimeoutAndReturn(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	src, err := New(Config{SDP: opusSDP("IP4 127.0.0.1"), Listen: []string{"127.0.0.1:0"}, Timeout: 200 * time.Millisecond,
		Logger: (&testkit.LogBuffer{}).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Listen(); err != nil {
		t.Fatal(err)
	}
	a := src.Addrs()[0]
	c := dial(t, a.RTP)
	err = receive(t, ctx, src, 1000, func() { sendOpus(t, c, 10, 1) })
	if err == nil || sdk.IsPermanent(err) || !errors.Is(err, sdk.ErrInputIdle) || !strings.Contains(err.Error(), "no packets for 200ms") {
		t.Fatalf("Run: %v, want the transient silence error", err)
	}
	// The sockets are closed between runs; the next Run opens the same
	// ports again.
	// (A new socket: the connected one took the ICMP "port unreachable"
	// of a packet sent between the runs.)
	err = receive(t, ctx, src, 20, func() { sendOpus(t, dial(t, a.RTP), 10, 1) })
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("second Run: %v", err)
	}
	if b := src.Addrs()[0]; b != a {
		t.Errorf("the second Run listens on %v, the first on %v", b, a)
	}
	if st := src.Stats()[0]; st.Frames != 20 || st.Restarts != 0 {
		t.Errorf("%+v, want 20 frames over the two runs", st)
	}
}

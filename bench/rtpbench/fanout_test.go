package rtpbench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestFanout runs the fan-out child with two receivers of two inputs
// each: every datagram sent to an input reaches that input's destination
// of both receivers unchanged, and the counts say so.
func TestFanout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const inputs, receivers, perInput = 2, 2, 50
	recv := make([][]*net.UDPConn, receivers)
	dests := make([][]netip.AddrPort, receivers)
	for r := range receivers {
		for range inputs {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			recv[r] = append(recv[r], c)
			dests[r] = append(dests[r], c.LocalAddr().(*net.UDPAddr).AddrPort())
		}
	}
	fan, err := startFanout(ctx, nil, dests)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = fan.stop()
		}
	}()
	if len(fan.inputs) != inputs {
		t.Fatalf("fan-out inputs %v, want %d", fan.inputs, inputs)
	}
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	payload := func(in, i int) []byte { return []byte(fmt.Sprintf("input %d datagram %d", in, i)) }
	for i := range perInput {
		for in := range inputs {
			if _, err := send.WriteToUDPAddrPort(payload(in, i), fan.inputs[in]); err != nil {
				t.Fatal(err)
			}
		}
		// Read as they come, so that no socket buffer overflows.
		for r := range receivers {
			for in := range inputs {
				buf := make([]byte, 100)
				_ = recv[r][in].SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := recv[r][in].Read(buf)
				if err != nil {
					t.Fatalf("receiver %d input %d datagram %d: %v", r, in, i, err)
				}
				if !bytes.Equal(buf[:n], payload(in, i)) {
					t.Fatalf("receiver %d input %d: %q, want %q", r, in, buf[:n], payload(in, i))
				}
			}
		}
	}
	counts, cpu := fan.stop()
	stopped = true
	t.Logf("counts %+v, CPU %v", counts, cpu)
	if counts.Forwarded != receivers*inputs*perInput || counts.SendErrors != 0 {
		t.Errorf("forwarded %d (%d errors), want %d", counts.Forwarded, counts.SendErrors, receivers*inputs*perInput)
	}
	for in := range inputs {
		if counts.Datagrams[in] != perInput {
			t.Errorf("input %d received %d datagrams, want %d", in, counts.Datagrams[in], perInput)
		}
	}
}

// TestSDPWithPorts: the port of each m= line is replaced, nothing else.
func TestSDPWithPorts(t *testing.T) {
	in := "v=0\r\nm=video 5004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 H264/90000\r\nm=audio 5006 RTP/AVP 111\r\na=x:5004\r\n"
	got, err := sdpWithPorts(in, []int{40000, 40002})
	if err != nil {
		t.Fatal(err)
	}
	want := "v=0\r\nm=video 40000 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 H264/90000\r\nm=audio 40002 RTP/AVP 111\r\na=x:5004\r\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := sdpWithPorts(in, []int{1}); err == nil {
		t.Error("two media, one port: no error")
	}
}

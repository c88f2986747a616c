package testkit

import (
	"net"
	"testing"
)

// FreeUDPPorts returns an even port P on IPv4 loopback with P … P+n-1
// all free for UDP at the time of the call: RTP goes to even ports, its
// RTCP to the next, and a sender of audio and video to P and P+2.
func FreeUDPPorts(t testing.TB, n int) int {
	t.Helper()
	loopback := net.IPv4(127, 0, 0, 1)
	for range 50 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopback})
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port &^ 1
		_ = c.Close()
		if port+n-1 > 65535 {
			continue
		}
		var held []*net.UDPConn
		for i := range n {
			h, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopback, Port: port + i})
			if err != nil {
				break
			}
			held = append(held, h)
		}
		for _, h := range held {
			_ = h.Close()
		}
		if len(held) == n {
			return port
		}
	}
	t.Fatalf("no %d consecutive free UDP ports on loopback", n)
	return 0
}

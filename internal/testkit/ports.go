package testkit

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
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

// WaitUDPBound waits until something has bound each UDP port on IPv4
// loopback (binding it fails), for a receiver started in another process;
// it fails when ctx ends first. It does not call t, so that a goroutine
// other than the test's may use it.
func WaitUDPBound(ctx context.Context, ports ...int) error {
	loopback := net.IPv4(127, 0, 0, 1)
	for _, p := range ports {
		for {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopback, Port: p})
			if err != nil {
				break
			}
			_ = c.Close()
			select {
			case <-ctx.Done():
				return fmt.Errorf("nothing bound UDP port %d", p)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

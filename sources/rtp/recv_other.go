//go:build !linux

package rtp

import "net"

// datagramReader returns what reads a socket's datagrams: the connection
// itself (see recv_linux.go for why Linux differs).
func datagramReader(c *net.UDPConn) udpReader {
	return c
}

package rtp

import (
	"net"
	"syscall"
)

// setMulticastTTL sets the TTL (IPv4) or hop limit (IPv6) of the multicast
// datagrams of conn (golang.org/x/net would do it portably; it is not a
// dependency of the module).
func setMulticastTTL(conn *net.UDPConn, ipv6 bool, ttl int) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if ipv6 {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_HOPS, ttl)
		} else {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MULTICAST_TTL, ttl)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

//go:build !linux

package rtp

import (
	"errors"
	"net"
)

// setMulticastTTL is not implemented on this system: multicast datagrams
// keep the system's default TTL (1 on most systems), which the caller
// logs.
func setMulticastTTL(conn *net.UDPConn, ipv6 bool, ttl int) error {
	if ttl == DefaultTTL {
		return nil // the default anyway
	}
	return errors.New("setting the multicast TTL is implemented on Linux only")
}

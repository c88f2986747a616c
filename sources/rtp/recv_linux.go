package rtp

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/moqbridge/moqbridge/internal/rawsock"
)

// datagramReader returns what reads a socket's datagrams: on Linux, a
// rawDatagramReader; the connection itself if its raw descriptor is not
// available.
func datagramReader(c *net.UDPConn) udpReader {
	rc, err := c.SyscallConn()
	if err != nil {
		return c
	}
	return &rawDatagramReader{rc: rc}
}

// rawDatagramReader reads a UDP socket with raw recvfrom system calls
// through the connection's poller (internal/rawsock says why: an RTP
// sender's datagrams arrive one at a time, hundreds a second), so Close
// interrupts a waiting read as for net.UDPConn.
type rawDatagramReader struct {
	rc syscall.RawConn
	sa syscall.RawSockaddrAny // the sender's address, per read
}

func (r *rawDatagramReader) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	if len(p) == 0 {
		return 0, netip.AddrPort{}, nil
	}
	n, err := rawsock.Call(r.rc, func(fd uintptr) (uintptr, syscall.Errno) {
		salen := uint32(syscall.SizeofSockaddrAny)
		r1, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd,
			uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0,
			uintptr(unsafe.Pointer(&r.sa)), uintptr(unsafe.Pointer(&salen)))
		return r1, e
	})
	if errno, ok := err.(syscall.Errno); ok {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: errno}
	}
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	return int(n), sockaddrAddrPort(&r.sa), nil
}

// sockaddrAddrPort converts a sender's address; another family than IPv4
// and IPv6 gives the zero AddrPort.
func sockaddrAddrPort(sa *syscall.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		a := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), ntohs(a.Port))
	case syscall.AF_INET6:
		a := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), ntohs(a.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port as the kernel stores it, in network byte order.
func ntohs(port uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&port))
	return uint16(b[0])<<8 | uint16(b[1])
}

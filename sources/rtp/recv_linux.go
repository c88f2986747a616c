package rtp

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"
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

// rawDatagramReader reads a UDP socket with raw recvfrom system calls,
// through the connection's poller (so Close interrupts a waiting read as
// for net.UDPConn).
//
// Why (as sources/rtmp's rawReader): a Go read enters the system call
// through the runtime's entersyscall, which wakes its monitor thread
// (sysmon) when the process was idle, and sysmon then polls every 20 µs
// until every processor is idle again. An RTP sender's datagrams arrive
// one at a time, hundreds a second, so each paid for that. The socket is
// non-blocking: the raw call never blocks.
type rawDatagramReader struct {
	rc syscall.RawConn
	sa syscall.RawSockaddrAny // the sender's address, per read
}

func (r *rawDatagramReader) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	if len(p) == 0 {
		return 0, netip.AddrPort{}, nil
	}
	var n int
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			salen := uint32(syscall.SizeofSockaddrAny)
			r1, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd,
				uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0,
				uintptr(unsafe.Pointer(&r.sa)), uintptr(unsafe.Pointer(&salen)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for the poller
			}
			n, errno = int(r1), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, netip.AddrPort{}, err
	case errno != 0:
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: errno}
	}
	return n, sockaddrAddrPort(&r.sa), nil
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

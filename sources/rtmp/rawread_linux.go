package rtmp

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// socketReader returns what reads a client's bytes: for a plain TCP
// connection on Linux, a rawReader; for anything else (TLS), nc itself.
func socketReader(nc net.Conn) io.Reader {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	return &rawReader{rc: rc}
}

// rawReader reads a TCP socket with raw read system calls, through the
// connection's poller (so deadlines and Close work as for net.Conn.Read).
//
// Why: a Go read goes through syscall.Read, whose entry into the system
// call wakes the runtime's monitor thread (sysmon) when the process was
// idle; sysmon then polls every 20 µs until it finds every processor idle
// again. An encoder's packets arrive a few times per frame at real time,
// so each one paid that wake-up and a few polls on top of the read: about
// a tenth of what ingesting a stream costs. The socket is non-blocking,
// so the raw call never blocks and needs none of what the runtime does
// around a system call that might.
type rawReader struct {
	rc syscall.RawConn
}

func (r *rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			r1, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
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
		return 0, err
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

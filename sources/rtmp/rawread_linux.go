package rtmp

import (
	"io"
	"net"
	"syscall"
	"unsafe"

	"github.com/moqbridge/moqbridge/internal/rawsock"
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

// rawReader reads a TCP socket with raw read system calls through the
// connection's poller (internal/rawsock says why), so deadlines and Close
// work as for net.Conn.Read.
type rawReader struct {
	rc syscall.RawConn
}

func (r *rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := rawsock.Call(r.rc, func(fd uintptr) (uintptr, syscall.Errno) {
		r1, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		return r1, e
	})
	if errno, ok := err.(syscall.Errno); ok {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: errno}
	}
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return int(n), nil
}

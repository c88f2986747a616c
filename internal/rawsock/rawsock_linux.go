package rawsock

import "syscall"

// Call runs call on the socket of rc (whose descriptor it is given) with
// the socket's read readiness: again at once when it was interrupted
// (EINTR), and after the poller finds the socket readable when it would
// have blocked (EAGAIN). It returns the call's result; the errno it
// failed with otherwise, as a syscall.Errno; or the poller's error (the
// socket closed, a deadline passed).
func Call(rc syscall.RawConn, call func(fd uintptr) (uintptr, syscall.Errno)) (uintptr, error) {
	var r uintptr
	var errno syscall.Errno
	err := rc.Read(func(fd uintptr) bool {
		for {
			r1, e := call(fd)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for the poller
			}
			r, errno = r1, e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, errno
	}
	return r, nil
}

package rtmp

import (
	"bytes"
	"context"
	"net"
)

// ffmpeg (5.1, in -listen mode) answers FCPublish with an AMF0 command
// that is only its name, "onFCPublish", without the transaction number
// and command object every command has; gortmplib's Client refuses it
// ("invalid command payload") and fails to publish. fcPublishConn patches
// the reply in the bytes the client reads while it connects: the 14-byte
// AMF0 body becomes one of the same length that gortmplib reads as a
// command "a" with transaction 0 and a null object, which the Client
// skips as it skips every other unsolicited command. Nothing else is
// touched: the chunk headers keep their lengths.

var (
	fcPublishBody = []byte("\x02\x00\x0bonFCPublish")
	fcPublishFix  = []byte("\x02\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05")
)

// fcPublishConn is a connection whose reads have ffmpeg's onFCPublish
// patched, until done is set (after the publish command was answered).
type fcPublishConn struct {
	net.Conn
	done  bool
	held  []byte // the end of what was read, which may begin the body
	ready []byte // read and patched, not yet returned
	err   error  // the error of the last read, returned after ready
}

// dialer wraps dial so that its connections get the onFCPublish patch.
func dialer(dial func(ctx context.Context, network, address string) (net.Conn, error)) func(ctx context.Context, network, address string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return &fcPublishConn{Conn: c}, nil
	}
}

func (c *fcPublishConn) Read(p []byte) (int, error) {
	for len(c.ready) == 0 && c.err == nil {
		if c.done {
			if len(c.held) == 0 {
				return c.Conn.Read(p)
			}
			c.ready, c.held = c.held, nil
			break
		}
		buf := make([]byte, max(len(p), 512))
		n, err := c.Conn.Read(buf)
		data := append(c.held, buf[:n]...)
		if i := bytes.Index(data, fcPublishBody); i >= 0 {
			copy(data[i:], fcPublishFix)
		}
		// Hold back an end that may be the beginning of the body.
		keep := 0
		for k := min(len(fcPublishBody)-1, len(data)); k > 0 && err == nil; k-- {
			if bytes.HasPrefix(fcPublishBody, data[len(data)-k:]) {
				keep = k
				break
			}
		}
		c.ready = data[:len(data)-keep]
		c.held = bytes.Clone(data[len(data)-keep:])
		c.err = err
	}
	n := copy(p, c.ready)
	c.ready = c.ready[n:]
	if len(c.ready) == 0 && c.err != nil {
		err := c.err
		c.err = nil
		return n, err
	}
	return n, nil
}

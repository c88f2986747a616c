//go:build !linux

package rtmp

import (
	"io"
	"net"
)

// socketReader returns what reads a client's bytes: the connection
// itself (see rawread_linux.go for why Linux differs).
func socketReader(nc net.Conn) io.Reader { return nc }

package transport

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

var fastLiveness = Liveness{KeepAlive: 100 * time.Millisecond, IdleTimeout: time.Second}

// TestWSKeepAliveEndsSilentPeer: a WebSocket peer that answers no pings
// (it never reads, like a stopped process or a vanished host) is
// disconnected after the idle timeout with a timeout error, in both
// dialects.
func TestWSKeepAliveEndsSilentPeer(t *testing.T) {
	for _, d := range []qmuxDialect{dialectQMux00, dialectLegacy} {
		t.Run(d.String(), func(t *testing.T) {
			ts := startWS(t, TCPHTTP, func(c *ListenConfig) { c.Liveness = fastLiveness })
			start := time.Now()
			_, sv := rawConnect(t, ts, d) // never reads again: no pongs
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			select {
			case <-sv.Context().Done():
			case <-ctx.Done():
				t.Fatal("silent peer still connected after 10 s")
			}
			err := context.Cause(sv.Context())
			var ne net.Error
			var idle *wsIdleError
			if !errors.As(err, &idle) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("session ended with %v, want an idle timeout", err)
			}
			if took := time.Since(start); took < fastLiveness.IdleTimeout {
				t.Errorf("ended after %v, before the idle timeout %v", took, fastLiveness.IdleTimeout)
			}
		})
	}
}

// TestWSKeepAliveKeepsIdleSession: two Go ends that exchange nothing stay
// connected over several idle timeouts, because each answers the other's
// pings.
func TestWSKeepAliveKeepsIdleSession(t *testing.T) {
	ts := startWS(t, TCPHTTP, func(c *ListenConfig) { c.Liveness = fastLiveness })
	ctx := testCtx(t)
	cl, err := DialWebSocket(ctx, ts.wsURL("/"), DialConfig{Protocols: moqProtocols, Liveness: fastLiveness})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.CloseWithError(0, "")
	sv, err := ts.l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sv.CloseWithError(0, "")
	timer := time.NewTimer(3 * fastLiveness.IdleTimeout)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-cl.Context().Done():
		t.Fatalf("client ended: %v", context.Cause(cl.Context()))
	case <-sv.Context().Done():
		t.Fatalf("server ended: %v", context.Cause(sv.Context()))
	}
}

// TestWSKeepAliveDialerEndsSilentServer: the dialing side notices a server
// that stopped answering too.
func TestWSKeepAliveDialerEndsSilentServer(t *testing.T) {
	// A TCP listener that completes the upgrade by hand and then never
	// reads: a hung relay.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	ctx := testCtx(t)
	type result struct {
		s   Session
		err error
	}
	dialed := make(chan result, 1)
	go func() {
		s, err := DialWebSocket(ctx, "ws://"+ln.Addr().String()+"/", DialConfig{Protocols: moqProtocols, Liveness: fastLiveness})
		dialed <- result{s, err}
	}()
	c, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer c.Close()
	if err := answerUpgrade(c, "webtransport"); err != nil {
		t.Fatal(err)
	}
	r := <-dialed
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.s.CloseWithError(0, "")
	select {
	case <-r.s.Context().Done():
	case <-ctx.Done():
		t.Fatal("silent server still connected")
	}
	var idle *wsIdleError
	if err := context.Cause(r.s.Context()); !errors.As(err, &idle) {
		t.Fatalf("session ended with %v, want an idle timeout", err)
	}
}

// answerUpgrade reads a WebSocket upgrade request from c and accepts it
// with subprotocol, as a server would, without any WebSocket library.
func answerUpgrade(c net.Conn, subprotocol string) error {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return err
	}
	h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	_, err = fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(h[:]), subprotocol)
	return err
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// The bare relay of the harness (bench/barerelay.go), copied whole onto
// quic-go v0.58.0, the version gomoqt v0.9.0 runs on: set against the
// harness' own bare relay (quic-go v0.64.1) under the same load, it tells
// what of a difference between gomoqt and the bare relay is quic-go's.
// Only what it needs differs from the original: the TLS and QUIC
// configuration come from proc.go, and the overload policy's two values,
// protocol.DefaultLimits' MaxInflightGroups and MaxGroupLag, are written
// out.

func runBareRelay() error {
	prof, err := startProfile("bare-relay-quic-go-v0.58")
	if err != nil {
		return err
	}
	defer prof.stop()
	r, err := startBareRelay()
	if err != nil {
		return err
	}
	defer r.close()
	return serveControl(r.addr(), r.fp, prof, r.groups)
}

// The harness' ALPNs for the bare publisher and subscribers.
const (
	alpnBarePublisher  = "moqbridge-bench-pub"
	alpnBareSubscriber = "moqbridge-bench-sub"
)

// The overload policy of the harness' bare relay: protocol.DefaultLimits'
// MaxInflightGroups and MaxGroupLag.
var (
	bareMaxInflight = 16
	bareGroupLag    = time.Second
)

// Stream reset codes of the bare relay (MOQ Lite's cancel and dropped).
const (
	bareCodeCancel  quic.StreamErrorCode = 0x0
	bareCodeDropped quic.StreamErrorCode = 24
)

// Buffers for incoming bytes come in 64 KiB slabs, reads of at least
// 4 KiB.
const (
	bareSlabSize = 64 << 10
	bareMinRead  = 4 << 10
)

// bareRelay accepts one publisher and any number of subscribers and, for
// every unidirectional stream the publisher opens, opens one to each
// subscriber and copies the bytes. It knows nothing of MOQ: no frames, no
// tracks, no cache, no announcements.
type bareRelay struct {
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener
	fp  [32]byte

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []*quic.Conn
	// subs is replaced, never modified in place, so a group can use the
	// slice it read under mu without copying it.
	subs []*bareSub

	groupsSent, groupsDropped atomic.Uint64
}

func startBareRelay() (*bareRelay, error) {
	cert, fp, err := selfSigned()
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpnBarePublisher, alpnBareSubscriber},
		MinVersion:   tls.VersionTLS13,
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(tlsConf, quicConfig())
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, err
	}
	r := &bareRelay{udp: udp, tr: tr, ln: ln, fp: fp}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Go(r.acceptLoop)
	return r, nil
}

func (r *bareRelay) addr() string { return r.udp.LocalAddr().String() }

func (r *bareRelay) groups() (sent, dropped uint64) {
	return r.groupsSent.Load(), r.groupsDropped.Load()
}

func (r *bareRelay) close() {
	r.cancel()
	_ = r.ln.Close()
	r.mu.Lock()
	conns := r.conns
	r.mu.Unlock()
	for _, c := range conns {
		_ = c.CloseWithError(0, "relay shutting down")
	}
	r.wg.Wait()
	_ = r.tr.Close()
	_ = r.udp.Close()
}

func (r *bareRelay) acceptLoop() {
	for {
		conn, err := r.ln.Accept(r.ctx)
		if err != nil {
			return
		}
		alpn := conn.ConnectionState().TLS.NegotiatedProtocol
		r.mu.Lock()
		r.conns = append(r.conns, conn)
		if alpn == alpnBareSubscriber {
			r.subs = append(slices.Clip(r.subs), &bareSub{conn: conn})
		}
		r.mu.Unlock()
		if alpn == alpnBarePublisher {
			r.wg.Go(func() { r.servePublisher(conn) })
		}
	}
}

// servePublisher relays every group stream of the publisher.
func (r *bareRelay) servePublisher(conn *quic.Conn) {
	for {
		str, err := conn.AcceptUniStream(r.ctx)
		if err != nil {
			return
		}
		r.wg.Go(func() { r.relayGroup(str) })
	}
}

// relayGroup starts one copy per subscriber, then reads the incoming
// stream at network speed into a tee the copies follow independently, so
// a slow subscriber never holds back the publisher or the others.
func (r *bareRelay) relayGroup(str *quic.ReceiveStream) {
	t := newTee()
	r.mu.Lock()
	subs := r.subs
	r.mu.Unlock()
	for _, s := range subs {
		s.start(r, t)
	}
	t.fill(str)
}

// tee is one incoming group stream, kept as the list of byte chunks read
// so far for the copies that follow it.
type tee struct {
	mu     sync.Mutex
	cond   sync.Cond // signalled when chunks grows, the stream ends or a copy is dropped
	chunks [][]byte
	done   bool
	err    error // with done: nil for a clean FIN
}

func newTee() *tee {
	t := &tee{}
	t.cond.L = &t.mu
	return t
}

// fill reads str to its end into slab-allocated chunks.
func (t *tee) fill(str *quic.ReceiveStream) {
	var slab []byte
	for {
		if len(slab) < bareMinRead {
			slab = make([]byte, bareSlabSize)
		}
		n, err := str.Read(slab)
		if n > 0 {
			t.mu.Lock()
			t.chunks = append(t.chunks, slab[:n:n])
			t.mu.Unlock()
			t.cond.Broadcast()
			slab = slab[n:]
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			t.mu.Lock()
			t.done, t.err = true, err
			t.mu.Unlock()
			t.cond.Broadcast()
			return
		}
	}
}

var errBareDropped = errors.New("group dropped")

// next returns chunk pos for c, waiting for it; io.EOF after a clean end.
func (t *tee) next(c *groupCopy, pos int) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		switch {
		case c.dropped:
			return nil, errBareDropped
		case pos < len(t.chunks):
			return t.chunks[pos], nil
		case t.done && t.err == nil:
			return nil, io.EOF
		case t.done:
			return nil, t.err
		}
		t.cond.Wait()
	}
}

// bareSub is one subscriber connection and its in-flight group copies.
type bareSub struct {
	conn *quic.Conn

	mu       sync.Mutex
	inflight []*groupCopy
}

// start begins copying t to the subscriber. Like the MOQ forwarder it keeps
// latency bounded under overload by resetting old groups instead of
// queueing them: the oldest beyond bareMaxInflight at once, any other
// bareGroupLag after a newer group started. Unlike it, it sets no stream
// priorities.
func (s *bareSub) start(r *bareRelay, t *tee) {
	c := &groupCopy{t: t}
	s.mu.Lock()
	s.prune()
	for len(s.inflight) >= bareMaxInflight {
		oldest := s.inflight[0]
		oldest.drop(r)
		if oldest.timer != nil {
			oldest.timer.Stop()
		}
		s.inflight = s.inflight[1:]
	}
	for _, old := range s.inflight {
		if old.timer == nil {
			old.timer = time.AfterFunc(bareGroupLag, func() { old.drop(r) })
		}
	}
	s.inflight = append(s.inflight, c)
	s.mu.Unlock()
	r.wg.Go(func() { c.run(r, s.conn) })
}

// prune forgets finished copies. The caller holds s.mu.
func (s *bareSub) prune() {
	kept := s.inflight[:0]
	for _, c := range s.inflight {
		if c.isFinished() {
			if c.timer != nil {
				c.timer.Stop()
			}
			continue
		}
		kept = append(kept, c)
	}
	clear(s.inflight[len(kept):])
	s.inflight = kept
}

// groupCopy copies one group to one subscriber on its own stream.
type groupCopy struct {
	t     *tee
	timer *time.Timer // lag timer, guarded by the subscriber's mu

	// Guarded by t.mu, so that next sees a drop while it waits.
	str      *quic.SendStream
	dropped  bool
	finished bool
}

func (c *groupCopy) run(r *bareRelay, conn *quic.Conn) {
	defer c.finish()
	str, err := conn.OpenUniStreamSync(r.ctx)
	if err != nil {
		return
	}
	c.t.mu.Lock()
	c.str = str
	dropped := c.dropped
	c.t.mu.Unlock()
	if dropped {
		str.CancelWrite(bareCodeDropped)
		return
	}
	for pos := 0; ; pos++ {
		chunk, err := c.t.next(c, pos)
		switch {
		case errors.Is(err, io.EOF):
			if str.Close() == nil {
				r.groupsSent.Add(1)
			}
			return
		case errors.Is(err, errBareDropped):
			return // drop already reset the stream
		case err != nil:
			str.CancelWrite(bareCodeCancel) // the publisher reset its stream
			return
		}
		if _, err := str.Write(chunk); err != nil {
			return
		}
	}
}

func (c *groupCopy) finish() {
	c.t.mu.Lock()
	c.finished = true
	c.t.mu.Unlock()
}

func (c *groupCopy) isFinished() bool {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return c.finished
}

// drop resets the copy's stream unless it already finished; the reset also
// unblocks a Write waiting for flow control.
func (c *groupCopy) drop(r *bareRelay) {
	c.t.mu.Lock()
	if c.finished || c.dropped {
		c.t.mu.Unlock()
		return
	}
	c.dropped = true
	str := c.str
	c.t.mu.Unlock()
	c.t.cond.Broadcast()
	if str != nil {
		str.CancelWrite(bareCodeDropped)
	}
	r.groupsDropped.Add(1)
}

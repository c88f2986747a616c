package rtmp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
)

// rxFrame is a frame an in-process RTMP server received.
type rxFrame struct {
	video    bool
	pts, dts time.Duration
	key      bool
	units    [][]byte // NAL units, OBUs, or the payload
	at       time.Time
}

// rxConn is one publish an in-process server received.
type rxConn struct {
	key string // the stream key (publish name)

	mu     sync.Mutex
	tracks []*gortmplib.Track
	frames []rxFrame
}

func (c *rxConn) add(f rxFrame) {
	f.at = time.Now()
	c.mu.Lock()
	c.frames = append(c.frames, f)
	c.mu.Unlock()
}

// snapshot returns the tracks and the frames so far.
func (c *rxConn) snapshot() ([]*gortmplib.Track, []rxFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tracks, append([]rxFrame(nil), c.frames...)
}

// rtmpServer is an in-process RTMP server on gortmplib (ServerConn and
// Reader), the receiving end for the codecs ffmpeg 5.1 cannot receive
// (Enhanced RTMP) and for a receiver that stops reading.
type rtmpServer struct {
	ln        net.Listener
	wg        sync.WaitGroup
	gate      *gate
	tls       bool
	tlsConfig *tls.Config

	reject int // publishes to refuse (RejectAction) before accepting

	mu       sync.Mutex
	rejected int // publishes refused
	conns    []*rxConn
	open     []net.Conn
	errs     []error
}

// serverOptions configure an rtmpServer.
type serverOptions struct {
	listen *net.ListenConfig // makes the listener (say, with a small receive buffer)
	tls    bool              // RTMPS with a self-signed certificate for 127.0.0.1
	reject int               // publishes to refuse before accepting
}

// startServer starts a server on a loopback port until the test ends.
func startServer(t testing.TB, opts serverOptions) *rtmpServer {
	t.Helper()
	lc := opts.listen
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rtmpServer{ln: ln, gate: newGate(), reject: opts.reject}
	if opts.tls {
		s.serveTLS(t)
	}
	s.wg.Go(s.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		s.gate.open()
		s.mu.Lock()
		for _, c := range s.open {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rtmpServer) url(key string) string {
	scheme := "rtmp"
	if s.tls {
		scheme = "rtmps"
	}
	return fmt.Sprintf("%s://%s/live/%s", scheme, s.ln.Addr(), key)
}

// serveTLS makes the server speak RTMPS with a self-signed certificate
// for 127.0.0.1.
func (s *rtmpServer) serveTLS(t testing.TB) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	s.tls = true
}

func (s *rtmpServer) accept() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.open = append(s.open, nc)
		s.mu.Unlock()
		if s.tls {
			nc = tls.Server(nc, s.tlsConfig)
		}
		s.wg.Go(func() {
			defer nc.Close()
			if err := s.serve(&gatedConn{Conn: nc, g: s.gate}); err != nil {
				s.mu.Lock()
				s.errs = append(s.errs, err)
				s.mu.Unlock()
			}
		})
	}
}

// serve receives one publish until the client goes.
func (s *rtmpServer) serve(nc net.Conn) error {
	sc := &gortmplib.ServerConn{RW: nc}
	if err := sc.Initialize(); err != nil {
		return err
	}
	if err := sc.AcceptConn(); err != nil {
		return err
	}
	if !sc.Publish {
		return errors.New("not a publish")
	}
	s.mu.Lock()
	refuse := s.rejected < s.reject
	if refuse {
		s.rejected++
	}
	s.mu.Unlock()
	if refuse {
		_ = sc.RejectAction()
		return nil
	}
	c := &rxConn{key: sc.URL.Path}
	r := &gortmplib.Reader{Conn: sc}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("reader: %w", err)
	}
	c.tracks = r.Tracks()
	for _, tr := range c.tracks {
		switch tr.Codec.(type) {
		case *codecs.H264:
			r.OnDataH264(tr, func(pts, dts time.Duration, au [][]byte) {
				if onlyParamSets(au, false) {
					return // the sequence header, which gortmplib hands over as an access unit
				}
				c.add(rxFrame{video: true, pts: pts, dts: dts, key: h264.IsRandomAccess(au), units: au})
			})
		case *codecs.H265:
			r.OnDataH265(tr, func(pts, dts time.Duration, au [][]byte) {
				if onlyParamSets(au, true) {
					return
				}
				c.add(rxFrame{video: true, pts: pts, dts: dts, key: h265.IsRandomAccess(au), units: au})
			})
		case *codecs.AV1:
			r.OnDataAV1(tr, func(pts time.Duration, tu [][]byte) {
				c.add(rxFrame{video: true, pts: pts, dts: pts, key: av1.IsRandomAccess2(tu), units: tu})
			})
		case *codecs.VP9:
			r.OnDataVP9(tr, func(pts time.Duration, frame []byte) {
				c.add(rxFrame{video: true, pts: pts, dts: pts, key: vp9.IsRandomAccess(frame), units: [][]byte{frame}})
			})
		case *codecs.MPEG4Audio:
			r.OnDataMPEG4Audio(tr, func(pts time.Duration, au []byte) {
				c.add(rxFrame{pts: pts, dts: pts, key: true, units: [][]byte{au}})
			})
		case *codecs.Opus:
			r.OnDataOpus(tr, func(pts time.Duration, pkt []byte) {
				c.add(rxFrame{pts: pts, dts: pts, key: true, units: [][]byte{pkt}})
			})
		}
	}
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	for {
		if err := r.Read(); err != nil {
			return nil // the client went
		}
	}
}

// onlyParamSets reports whether an H.264 or H.265 access unit holds
// parameter sets only.
func onlyParamSets(au [][]byte, hevc bool) bool {
	for _, n := range au {
		if hevc {
			if t := (n[0] >> 1) & 0x3f; t < 32 || t > 34 {
				return false
			}
		} else if t := n[0] & 0x1f; t != 7 && t != 8 {
			return false
		}
	}
	return true
}

// waitConn waits for the n-th publish (from 1) to have its tracks.
func (s *rtmpServer) waitConn(t testing.TB, ctx context.Context, n int) *rxConn {
	t.Helper()
	for {
		s.mu.Lock()
		if len(s.conns) >= n {
			c := s.conns[n-1]
			s.mu.Unlock()
			return c
		}
		errs := s.errs
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatalf("no publish %d; server errors: %v", n, errs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// gate holds up the reads of a connection while it is closed.
type gate struct {
	mu sync.Mutex
	ch chan struct{} // closed while reads may go
}

func newGate() *gate {
	ch := make(chan struct{})
	close(ch)
	return &gate{ch: ch}
}

func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.ch:
		g.ch = make(chan struct{})
	default:
	}
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.ch:
	default:
		close(g.ch)
	}
}

func (g *gate) wait() {
	g.mu.Lock()
	ch := g.ch
	g.mu.Unlock()
	<-ch
}

// gatedConn is a connection whose reads wait while its gate is shut: a
// receiver that stops reading.
type gatedConn struct {
	net.Conn
	g *gate
}

func (c *gatedConn) Read(p []byte) (int, error) {
	c.g.wait()
	return c.Conn.Read(p)
}

package protocol

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/auth"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
)

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files, so that a relay restarted on them keeps its fingerprint.
func writeTestCert(t *testing.T) (certFile, keyFile string, fp [32]byte) {
	t.Helper()
	cert, err := transport.GenerateSelfSigned([]string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, transport.Fingerprint(cert)
}

// restartableRelay is a relay on a fixed loopback port that a test can stop
// and start again.
type restartableRelay struct {
	t    *testing.T
	cfg  ServerConfig
	srv  *Server
	done chan error
}

func startRelay(t *testing.T, cfg ServerConfig) *restartableRelay {
	r := &restartableRelay{t: t, cfg: cfg}
	if r.cfg.Addr == "" {
		r.cfg.Addr = "127.0.0.1:0"
	}
	if r.cfg.TCP == TCPOff {
		r.cfg.TCP = TCPHTTP
	}
	r.start()
	r.cfg.Addr = r.srv.Addr().String()
	t.Cleanup(r.stop)
	return r
}

func (r *restartableRelay) start() {
	r.t.Helper()
	var err error
	// The port was just released: binding it again may take a moment.
	for range 50 {
		if r.srv, err = NewServer(r.cfg); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("NewServer: %v", err)
	}
	r.done = make(chan error, 1)
	srv, done := r.srv, r.done
	go func() { done <- srv.Serve(context.Background()) }()
}

func (r *restartableRelay) stop() {
	if r.srv == nil {
		return
	}
	_ = r.srv.Close()
	<-r.done
	r.srv = nil
}

func (r *restartableRelay) url(kind string) string {
	_, port, _ := net.SplitHostPort(r.cfg.Addr)
	p, _ := strconv.Atoi(port)
	return urlFor(kind, p)
}

func urlFor(kind string, port int) string {
	switch kind {
	case "quic":
		return fmt.Sprintf("moql://127.0.0.1:%d", port)
	case "websocket":
		return fmt.Sprintf("ws://127.0.0.1:%d/", port)
	case "http":
		return fmt.Sprintf("http://127.0.0.1:%d/", port)
	default:
		return fmt.Sprintf("https://127.0.0.1:%d/", port)
	}
}

// fastReconnect keeps the tests short.
var fastReconnect = WithReconnect(Reconnect{Min: 50 * time.Millisecond, Max: 400 * time.Millisecond})

// TestClientReconnect: a publishing Client and a consuming Client survive a
// relay restart on every transport. The publisher's group sequences go on
// where they were (no restart from 0), and the consumer finds the
// broadcast again and keeps reading it with increasing sequences.
func TestClientReconnect(t *testing.T) {
	certFile, keyFile, fp := writeTestCert(t)
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			relay := startRelay(t, ServerConfig{CertFile: certFile, KeyFile: keyFile})
			url := relay.url(kind)
			opts := []DialOption{fastReconnect}
			if kind != "http" {
				opts = append(opts, WithFingerprint(fp))
			}

			pubOrigin := moq.NewOrigin()
			defer pubOrigin.Close()
			bw := moq.NewBroadcast()
			defer bw.Close()
			tw, err := bw.CreateTrack("t", 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := pubOrigin.Publish("live/r", bw.Reader()); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			defer wg.Wait()
			writeCtx, stopWriting := context.WithCancel(ctx)
			defer stopWriting()
			wg.Go(func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-writeCtx.Done():
						return
					case <-tick.C:
					}
					g, err := tw.AppendGroup()
					if err != nil {
						return
					}
					_ = g.WriteFrame(fmt.Appendf(nil, "%d", g.Sequence()))
					_ = g.Close()
				}
			})
			pub, err := Connect(ctx, url, append(opts, WithPublish(pubOrigin))...)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()

			subOrigin := moq.NewOrigin()
			defer subOrigin.Close()
			sub, err := Connect(ctx, url, append(opts, WithConsume(subOrigin), WithAnnounceInterest("live/r"))...)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()

			seqs := make(chan uint64, 1000)
			readErrs := make(chan error, 100)
			wg.Go(func() { followTrack(writeCtx, subOrigin, "live/r", "t", seqs, readErrs) })

			var last uint64
			take := func(n int, what string) {
				t.Helper()
				for i := 0; i < n; i++ {
					select {
					case s := <-seqs:
						if last != 0 && s <= last {
							t.Fatalf("%s: group %d after %d", what, s, last)
						}
						last = s
					case <-ctx.Done():
						t.Fatalf("%s: only %d of %d groups", what, i, n)
					}
				}
			}
			take(10, "before the restart")
			before := last
			relay.stop()
			restartAt := time.Now()
			relay.start()
			take(10, "after the restart")
			t.Logf("%s: groups %d … %d across a restart; reconnected within %v", kind, before, last, time.Since(restartAt).Round(time.Millisecond))
			if s, _ := pub.Session(); s == nil {
				t.Error("the publisher has no session after reconnecting")
			}
			stopWriting()
			select {
			case err := <-readErrs:
				t.Logf("the reader saw the loss as: %v", err)
				if errors.Is(err, moq.ErrClosed) {
					t.Errorf("the lost broadcast ended as if finished: %v", err)
				}
			default:
				t.Error("the reader never saw the broadcast lost")
			}
		})
	}
}

// followTrack reads track name of the broadcast at path in o, finding the
// broadcast again whenever it ends, and sends each group's sequence. How
// each broadcast ended goes to ends.
func followTrack(ctx context.Context, o *moq.Origin, path, name string, seqs chan<- uint64, ends chan<- error) {
	ann := o.Announced(path)
	defer ann.Close()
	for {
		a, err := ann.Next(ctx)
		if err != nil {
			return
		}
		if !a.Active || a.Path != path {
			continue
		}
		tr, err := a.Broadcast.Subscribe(name, 0)
		if err != nil {
			continue
		}
		for {
			g, err := tr.NextGroup(ctx)
			if err != nil {
				if ctx.Err() == nil {
					select {
					case ends <- err:
					default:
					}
				}
				break
			}
			seqs <- g.Sequence()
		}
		tr.Close()
	}
}

// TestClientGivesUp: with GiveUpAfter, a Client whose relay does not come
// back stops with ErrGaveUp.
func TestClientGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relay := startRelay(t, ServerConfig{})
	c, err := Connect(ctx, relay.url("http"), WithReconnect(Reconnect{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond, GiveUpAfter: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	relay.stop()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the client never gave up")
	}
	if !errors.Is(c.Err(), ErrGaveUp) {
		t.Errorf("Err() = %v, want ErrGaveUp", c.Err())
	}
}

// TestClientStopsOnNewCertificate: a relay that comes back with another
// certificate than the one pinned is not retried for ever: the client stops
// with the certificate error.
func TestClientStopsOnNewCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relay := startRelay(t, ServerConfig{})
	fp := relay.srv.Fingerprint()
	c, err := Connect(ctx, relay.url("quic"), WithFingerprint(fp), fastReconnect)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	relay.stop()
	relay.start() // a fresh self-signed certificate
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the client kept retrying a certificate it cannot accept")
	}
	if !Permanent(c.Err()) {
		t.Errorf("Err() = %v, want a certificate error", c.Err())
	}
}

// TestReconnectWaits: the waits double from Min up to Max, spread by the
// jitter.
func TestReconnectWaits(t *testing.T) {
	r := Reconnect{Min: 100 * time.Millisecond, Max: time.Second, Jitter: 0.5}.withDefaults()
	for n, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		for range 50 {
			d := r.wait(n)
			if d < want/2 || d > want*3/2 {
				t.Fatalf("wait(%d) = %v, want %v ± 50%%", n, d, want)
			}
		}
	}
	if d := (Reconnect{Min: time.Second, Jitter: -1}).withDefaults().wait(0); d != time.Second {
		t.Errorf("no jitter: %v", d)
	}
}

// TestWaitWanted: a relay asks a client only for the broadcasts its token
// may put, so WaitWanted accepts a path under the put claim at once and
// refuses one outside it, naming what the relay does accept.
func TestWaitWanted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	az, keyFile := testAuthorizer(t)
	srv := testServer(t, ServerConfig{Auth: az})
	token, err := auth.Mint(keyFile, auth.Claims{Put: []string{"alice"}, Get: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := Dial(ctx, fmt.Sprintf("https://127.0.0.1:%d/?jwt=%s", srv.Addr().Port, token), WithFingerprint(srv.Fingerprint()), WithPublish(moq.NewOrigin()))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.WaitWanted(ctx, "alice/cam"); err != nil {
		t.Errorf("alice/cam: %v", err)
	}
	err = sess.WaitWanted(ctx, "bob/cam")
	if !errors.Is(err, ErrNotWanted) {
		t.Fatalf("bob/cam: %v, want ErrNotWanted", err)
	}
	if want := `moq: the peer does not ask for this path "bob/cam": it asks only for broadcasts under "alice/"`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	open := testServer(t, ServerConfig{})
	sess2 := dialTest(t, ctx, open, "quic", Lite04, WithPublish(moq.NewOrigin()))
	if err := sess2.WaitWanted(ctx, "any/where"); err != nil {
		t.Errorf("an open relay: %v", err)
	}
}

// TestServeEndTellsClients: when Serve's context ends, every client hears
// that the relay shut down (the MOQ close and its reason) before Serve
// returns, on every transport, instead of finding out by an idle timeout.
func TestServeEndTellsClients(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", TCP: TCPHTTP})
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	var sessions []*Session
	for _, kind := range transports {
		sessions = append(sessions, dialTest(t, ctx, srv, kind, Lite04))
	}
	// The server serves them all: a connection still on its way to the
	// session table when the server stops is refused instead (QUIC:
	// CONNECTION_REFUSED), which is not what this test is about.
	for len(srv.Sessions()) < len(transports) {
		if ctx.Err() != nil {
			t.Fatalf("the server serves %d sessions of %d", len(srv.Sessions()), len(transports))
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	for i, sess := range sessions {
		select {
		case <-sess.Done():
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: the session did not end", transports[i])
		}
		if got := EndReason(sess.Err()); got != "the relay shut down" {
			t.Errorf("%s: ended with %q (%v)", transports[i], got, sess.Err())
		}
	}
}

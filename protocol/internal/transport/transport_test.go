package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var moqProtocols = []string{"moq-lite-04", "moq-lite-03", "moql"}

type testServer struct {
	l    *Listener
	fp   [32]byte
	port int
}

// startListener runs a Listener on loopback with a fresh self-signed
// certificate; mod may adjust the configuration before Listen.
func startListener(t *testing.T, mod func(*ListenConfig)) *testServer {
	t.Helper()
	cert, err := GenerateSelfSigned(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := ListenConfig{
		Addr:                  "127.0.0.1:0",
		TLSConfig:             &tls.Config{Certificates: []tls.Certificate{cert}},
		RawProtocols:          moqProtocols,
		WebTransportProtocols: moqProtocols,
		Logger:                slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	l, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return &testServer{l: l, fp: Fingerprint(cert), port: l.Addr().(*net.UDPAddr).Port}
}

func (ts *testServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", ts.port) }

func (ts *testServer) url(pathQuery string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", ts.port, pathQuery)
}

// testCtx returns a context that ends after 10 s or with the test.
func testCtx(t *testing.T) context.Context {
	return testkit.Context(t, 10*time.Second)
}

// dial connects a client of the given kind and returns both ends; both are
// closed when the test ends.
func dial(t *testing.T, ts *testServer, kind string, protos []string, pathQuery string, hdr http.Header) (client, server Session) {
	t.Helper()
	ctx := testCtx(t)
	cfg := DialConfig{TLSConfig: PinnedTLSConfig(ts.fp), Protocols: protos, Header: hdr}
	var err error
	switch kind {
	case KindQUIC:
		client, err = DialQUIC(ctx, ts.addr(), "localhost", cfg)
	case KindWebTransport:
		client, err = DialWebTransport(ctx, ts.url(pathQuery), cfg)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", kind, err)
	}
	t.Cleanup(func() { _ = client.CloseWithError(0, "") })
	server, err = ts.l.Accept(ctx)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { _ = server.CloseWithError(0, "") })
	return client, server
}

var kinds = []string{KindQUIC, KindWebTransport}

func TestBothKindsOnOnePort(t *testing.T) {
	ts := startListener(t, nil)

	qc, qs := dial(t, ts, KindQUIC, []string{"moq-lite-04"}, "", nil)
	wc, ws := dial(t, ts, KindWebTransport, []string{"moq-lite-04", "moq-lite-03"}, "/", nil)

	for _, c := range []struct {
		name       string
		s          Session
		kind, prot string
	}{
		{"quic client", qc, KindQUIC, "moq-lite-04"},
		{"quic server", qs, KindQUIC, "moq-lite-04"},
		{"wt client", wc, KindWebTransport, "moq-lite-04"},
		{"wt server", ws, KindWebTransport, "moq-lite-04"},
	} {
		if c.s.Kind() != c.kind || c.s.Protocol() != c.prot {
			t.Errorf("%s: kind %q protocol %q, want %q %q", c.name, c.s.Kind(), c.s.Protocol(), c.kind, c.prot)
		}
	}
	if u := qs.Request().URL; u.Scheme != "moqt" || u.Host != "localhost" || u.Path != "" {
		t.Errorf("raw QUIC request URL = %v, want moqt://localhost", u)
	}
	if qs.RemoteAddr() == nil || ws.RemoteAddr() == nil {
		t.Error("RemoteAddr is nil")
	}
}

func TestRawALPNNegotiation(t *testing.T) {
	ts := startListener(t, nil)
	c, s := dial(t, ts, KindQUIC, []string{"moql", "moq-lite-03"}, "", nil)
	// crypto/tls picks by server preference for ALPN.
	if c.Protocol() != "moq-lite-03" || s.Protocol() != "moq-lite-03" {
		t.Errorf("protocol client %q server %q, want moq-lite-03", c.Protocol(), s.Protocol())
	}

	_, err := DialQUIC(testCtx(t), ts.addr(), "localhost", DialConfig{TLSConfig: PinnedTLSConfig(ts.fp), Protocols: []string{"moqt-99"}})
	if err == nil {
		t.Error("dial with an unknown ALPN succeeded")
	}
}

func TestWebTransportProtocolNegotiation(t *testing.T) {
	ts := startListener(t, nil)
	for _, c := range []struct {
		offer []string
		want  string
	}{
		{[]string{"moql"}, "moql"},
		{nil, ""},
		{[]string{"moq-lite-03", "moq-lite-04"}, "moq-lite-03"}, // the client's order wins
		{[]string{"moqt-17", "moq-lite-04"}, "moq-lite-04"},
		{[]string{"moqt-17"}, ""},
	} {
		t.Run(fmt.Sprint(c.offer), func(t *testing.T) {
			cl, sv := dial(t, ts, KindWebTransport, c.offer, "/", nil)
			if cl.Protocol() != c.want || sv.Protocol() != c.want {
				t.Errorf("client %q server %q, want %q", cl.Protocol(), sv.Protocol(), c.want)
			}
		})
	}
}

func TestStreams(t *testing.T) {
	ts := startListener(t, nil)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := testCtx(t)
			cl, sv := dial(t, ts, kind, moqProtocols, "/", nil)

			t.Run("bidi echo", func(t *testing.T) {
				st, err := cl.OpenStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				st.SetPriority(0)
				if _, err := st.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				select {
				case <-st.Context().Done():
					if cause := context.Cause(st.Context()); !errors.Is(cause, context.Canceled) {
						t.Errorf("cause after Close = %v, want context.Canceled", cause)
					}
				case <-ctx.Done():
					t.Fatal("send context not done after Close")
				}

				ss, err := sv.AcceptStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(ss) // ReadAll stops at io.EOF, i.e. the FIN
				if err != nil || string(got) != "hello" {
					t.Fatalf("server read %q, %v", got, err)
				}
				ss.SetPriority(7)
				if _, err := ss.Write(got); err != nil {
					t.Fatal(err)
				}
				if err := ss.Close(); err != nil {
					t.Fatal(err)
				}
				back, err := io.ReadAll(st)
				if err != nil || string(back) != "hello" {
					t.Fatalf("client read %q, %v", back, err)
				}
			})

			t.Run("server uni", func(t *testing.T) {
				us, err := sv.OpenUniStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				us.SetPriority(3)
				if _, err := us.Write([]byte("group")); err != nil {
					t.Fatal(err)
				}
				if err := us.Close(); err != nil {
					t.Fatal(err)
				}
				ur, err := cl.AcceptUniStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(ur)
				if err != nil || string(got) != "group" {
					t.Fatalf("read %q, %v", got, err)
				}
			})

			t.Run("CancelWrite", func(t *testing.T) {
				us, err := cl.OpenUniStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := us.Write([]byte("partial")); err != nil {
					t.Fatal(err)
				}
				us.CancelWrite(7)
				if cause := context.Cause(waitDone(t, us.Context())); !isStreamError(cause, 7, false) {
					t.Errorf("local cause = %v, want local StreamError 7", cause)
				}
				ur, err := sv.AcceptUniStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.ReadAll(ur)
				if !isStreamError(err, 7, true) {
					t.Fatalf("read error = %v, want remote StreamError 7", err)
				}
			})

			t.Run("CancelRead", func(t *testing.T) {
				st, err := cl.OpenStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st.Write([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				ss, err := sv.AcceptStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 4)
				if _, err := io.ReadFull(ss, buf); err != nil {
					t.Fatal(err)
				}
				ss.CancelRead(5)
				if cause := context.Cause(waitDone(t, st.Context())); !isStreamError(cause, 5, true) {
					t.Errorf("writer context cause = %v, want remote StreamError 5", cause)
				}
				_, err = st.Write([]byte("more"))
				if !isStreamError(err, 5, true) {
					t.Errorf("write error = %v, want remote StreamError 5", err)
				}
				st.CancelRead(0)
				ss.CancelWrite(0)
			})

			t.Run("read deadline", func(t *testing.T) {
				st, err := cl.OpenStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer st.CancelWrite(0)
				if err := st.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				_, err = st.Read(make([]byte, 1))
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("read error = %v, want a timeout", err)
				}
			})
		})
	}
}

func waitDone(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not done")
	}
	return ctx
}

func isStreamError(err error, code uint64, remote bool) bool {
	var se *StreamError
	return errors.As(err, &se) && se.Code == code && se.Remote == remote
}

func isSessionError(err error, code uint64, reason string, remote bool) bool {
	var se *SessionError
	return errors.As(err, &se) && se.Code == code && se.Reason == reason && se.Remote == remote
}

func TestCloseWithError(t *testing.T) {
	ts := startListener(t, nil)
	for _, kind := range kinds {
		for _, serverCloses := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/serverCloses=%v", kind, serverCloses), func(t *testing.T) {
				ctx := testCtx(t)
				cl, sv := dial(t, ts, kind, moqProtocols, "/", nil)
				closer, other := cl, sv
				if serverCloses {
					closer, other = sv, cl
				}
				// A stream open across the close must end too.
				st, err := other.OpenStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}

				acceptErr := make(chan error, 1)
				go func() {
					_, err := other.AcceptStream(ctx)
					acceptErr <- err
				}()
				if err := closer.CloseWithError(13, "bye"); err != nil {
					t.Fatal(err)
				}
				if err := <-acceptErr; !isSessionError(err, 13, "bye", true) {
					t.Errorf("peer Accept error = %v (%T), want remote SessionError 13 bye", err, err)
				}
				if _, err := closer.AcceptUniStream(ctx); !isSessionError(err, 13, "bye", false) {
					t.Errorf("local Accept error = %v (%T), want local SessionError 13 bye", err, err)
				}
				if _, err := other.OpenUniStream(ctx); err == nil {
					t.Error("OpenUniStream on a closed session succeeded")
				}
				waitDone(t, other.Context())
				waitDone(t, closer.Context())
				cause := context.Cause(waitDone(t, st.Context()))
				if kind == KindQUIC && !isSessionError(cause, 13, "bye", true) {
					t.Errorf("stream context cause = %v, want SessionError 13", cause)
				}
				if kind == KindWebTransport && !errors.Is(cause, net.ErrClosed) {
					t.Errorf("stream context cause = %v, want net.ErrClosed", cause)
				}
				if _, err := st.Write([]byte("y")); err == nil {
					t.Error("write on a stream of a closed session succeeded")
				}
			})
		}
	}
}

func TestAdmitRefuses(t *testing.T) {
	ts := startListener(t, func(c *ListenConfig) {
		c.Admit = func(r *http.Request) (int, error) {
			switch r.URL.Query().Get("jwt") {
			case "good":
				return 0, nil
			case "broken":
				return 0, errors.New("auth backend down")
			}
			return http.StatusUnauthorized, errors.New("bad token")
		}
	})
	_, err := DialWebTransport(testCtx(t), ts.url("/room?jwt=bad"), DialConfig{TLSConfig: PinnedTLSConfig(ts.fp), Protocols: moqProtocols})
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("dial error = %v, want HTTPError 401", err)
	}
	// An error without a status refuses too.
	_, err = DialWebTransport(testCtx(t), ts.url("/room?jwt=broken"), DialConfig{TLSConfig: PinnedTLSConfig(ts.fp), Protocols: moqProtocols})
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Fatalf("dial error = %v, want HTTPError 403", err)
	}
	_, sv := dial(t, ts, KindWebTransport, moqProtocols, "/room?jwt=good", nil)
	if sv.Request().URL.Query().Get("jwt") != "good" {
		t.Error("admitted session lost its query")
	}
}

func TestCheckOriginRefuses(t *testing.T) {
	ts := startListener(t, func(c *ListenConfig) {
		c.CheckOrigin = func(r *http.Request) bool { return r.Header.Get("Origin") == "https://ok.example" }
	})
	cfg := DialConfig{TLSConfig: PinnedTLSConfig(ts.fp), Header: http.Header{"Origin": {"https://evil.example"}}}
	_, err := DialWebTransport(testCtx(t), ts.url("/"), cfg)
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Fatalf("dial error = %v, want HTTPError 403", err)
	}
	_, sv := dial(t, ts, KindWebTransport, nil, "/", http.Header{"Origin": {"https://ok.example"}})
	if sv.Request().Origin != "https://ok.example" {
		t.Errorf("Origin = %q", sv.Request().Origin)
	}
}

func TestRequestReachesServer(t *testing.T) {
	ts := startListener(t, nil)
	cl, sv := dial(t, ts, KindWebTransport, moqProtocols, "/live/room?jwt=abc", http.Header{"X-Moq-Test": {"1"}})
	req := sv.Request()
	if req.URL.Path != "/live/room" || req.URL.Query().Get("jwt") != "abc" {
		t.Errorf("server URL = %v", req.URL)
	}
	if req.Header.Get("X-Moq-Test") != "1" {
		t.Errorf("server header = %v", req.Header)
	}
	if cl.Request().URL.Path != "/live/room" {
		t.Errorf("client URL = %v", cl.Request().URL)
	}
}

func TestStats(t *testing.T) {
	ts := startListener(t, nil)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := testCtx(t)
			cl, sv := dial(t, ts, kind, moqProtocols, "/", nil)
			for range 3 {
				st, err := cl.OpenStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st.Write(make([]byte, 10000)); err != nil {
					t.Fatal(err)
				}
				_ = st.Close()
				ss, err := sv.AcceptStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(ss, ss); err != nil {
					t.Fatal(err)
				}
				_ = ss.Close()
				if _, err := io.ReadAll(st); err != nil {
					t.Fatal(err)
				}
			}
			for name, s := range map[string]Session{"client": cl, "server": sv} {
				st := s.Stats()
				if st.SmoothedRTT <= 0 || st.MinRTT <= 0 || st.EstimatedBitrate == 0 || st.BytesSent == 0 || st.BytesReceived == 0 {
					t.Errorf("%s stats = %+v, want non-zero values", name, st)
				}
			}
		})
	}
}

func TestPinnedFingerprint(t *testing.T) {
	ts := startListener(t, nil)
	wrong := ts.fp
	wrong[0] ^= 0xff
	ctx := testCtx(t)
	cfg := DialConfig{TLSConfig: PinnedTLSConfig(wrong), Protocols: moqProtocols}
	if _, err := DialQUIC(ctx, ts.addr(), "localhost", cfg); err == nil {
		t.Error("raw QUIC dial with a wrong pin succeeded")
	}
	if _, err := DialWebTransport(ctx, ts.url("/"), cfg); err == nil {
		t.Error("WebTransport dial with a wrong pin succeeded")
	}
	// The right pin works for both kinds (dial fails the test otherwise).
	dial(t, ts, KindQUIC, moqProtocols, "", nil)
	dial(t, ts, KindWebTransport, moqProtocols, "/", nil)
}

func TestListenerClose(t *testing.T) {
	ts := startListener(t, nil)
	qc, qs := dial(t, ts, KindQUIC, moqProtocols, "", nil)
	wc, ws := dial(t, ts, KindWebTransport, moqProtocols, "/", nil)
	// A session that was never accepted must be cleaned up by Close too.
	queued, err := DialQUIC(testCtx(t), ts.addr(), "localhost", DialConfig{TLSConfig: PinnedTLSConfig(ts.fp), Protocols: moqProtocols})
	if err != nil {
		t.Fatal(err)
	}
	defer queued.CloseWithError(0, "")

	acceptErr := make(chan error, 1)
	go func() {
		// Drains the queued session first, then must fail once closed.
		for {
			if _, err := ts.l.Accept(context.Background()); err != nil {
				acceptErr <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := ts.l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	for name, s := range map[string]Session{"quic client": qc, "quic server": qs, "wt client": wc, "wt server": ws, "queued": queued} {
		select {
		case <-s.Context().Done():
		case <-time.After(5 * time.Second):
			t.Errorf("%s still alive after listener Close", name)
		}
	}
	if err := ts.l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestPlainHTTPGets404(t *testing.T) {
	ts := startListener(t, nil)
	tr := &http3.Transport{TLSClientConfig: PinnedTLSConfig(ts.fp)}
	defer tr.Close()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, ts.url("/live/room"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = rsp.Body.Close()
	if rsp.StatusCode != http.StatusNotFound {
		t.Errorf("status = %d, want 404", rsp.StatusCode)
	}
}

func TestDialTimeoutReleasesSocket(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close() // nothing answers there now
	for _, kind := range kinds {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		cfg := DialConfig{TLSConfig: PinnedTLSConfig([32]byte{}), Protocols: moqProtocols}
		if kind == KindQUIC {
			_, err = DialQUIC(ctx, addr, "localhost", cfg)
		} else {
			_, err = DialWebTransport(ctx, "https://"+addr+"/", cfg)
		}
		cancel()
		if err == nil {
			t.Errorf("%s dial to a silent port succeeded", kind)
		}
	}
	// goleak in TestMain checks that the failed dials left nothing behind.
}

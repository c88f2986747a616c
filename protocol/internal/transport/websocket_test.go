package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// WebSocket variants under test: a Go client offering application protocols
// lands on qmux-00 with "moq-lite-04"; one offering none gets the legacy
// "webtransport" dialect.
var wsVariants = []struct {
	name    string
	protos  []string
	dialect qmuxDialect
	proto   string
}{
	{"legacy", nil, dialectLegacy, ""},
	{"qmux-00", moqProtocols, dialectQMux00, "moq-lite-04"},
}

// startWS runs a Listener with a TCP side in the given mode.
func startWS(t *testing.T, mode TCPMode, mod func(*ListenConfig)) *testServer {
	t.Helper()
	return startListener(t, func(c *ListenConfig) {
		c.TCP = mode
		if mod != nil {
			mod(c)
		}
	})
}

func (ts *testServer) tcpPort() int { return ts.l.TCPAddr().(*net.TCPAddr).Port }

func (ts *testServer) wsURL(pathQuery string) string {
	return fmt.Sprintf("ws://127.0.0.1:%d%s", ts.tcpPort(), pathQuery)
}

// dialWS connects a Go WebSocket client and returns both ends, closed when
// the test ends.
func dialWS(t *testing.T, ts *testServer, protos []string, pathQuery string, hdr http.Header, limits *wsLimits) (client, server Session) {
	t.Helper()
	ctx := testCtx(t)
	client, err := DialWebSocket(ctx, ts.wsURL(pathQuery), DialConfig{Protocols: protos, Header: hdr, wsLimits: limits})
	if err != nil {
		t.Fatalf("dial websocket: %v", err)
	}
	t.Cleanup(func() { _ = client.CloseWithError(0, "") })
	server, err = ts.l.Accept(ctx)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { _ = server.CloseWithError(0, "") })
	return client, server
}

// rawPeer is a bare coder/websocket client speaking frames by hand, as
// @moq/qmux would.
type rawPeer struct {
	t *testing.T
	c *websocket.Conn
	d qmuxDialect

	readErr error // what ended expectClosed
}

// rawHTTPClient returns a client whose idle connections are closed when the
// test ends (refused upgrades leave them idle).
func rawHTTPClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func dialRaw(t *testing.T, url string, offer []string) *rawPeer {
	t.Helper()
	c, _, err := websocket.Dial(testCtx(t), url, &websocket.DialOptions{Subprotocols: offer, HTTPClient: rawHTTPClient(t)})
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	d, _ := wsDialectOf(c.Subprotocol())
	return &rawPeer{t: t, c: c, d: d}
}

// dialRawQMux connects a raw qmux-00 peer, reads the server's transport
// parameters and sends its own.
func dialRawQMux(t *testing.T, ts *testServer, mine transportParams) (*rawPeer, transportParams) {
	t.Helper()
	p := dialRaw(t, ts.wsURL("/"), []string{"qmux-00"})
	if p.d != dialectQMux00 {
		t.Fatalf("dialect %v", p.d)
	}
	f := p.next()
	if f.kind != fkTransportParams {
		t.Fatalf("first frame kind %d, want transport parameters", f.kind)
	}
	p.send(appendTransportParams(nil, mine))
	return p, f.params
}

func (p *rawPeer) send(msg []byte) {
	p.t.Helper()
	if err := p.c.Write(testCtx(p.t), websocket.MessageBinary, msg); err != nil {
		p.t.Fatalf("raw write: %v", err)
	}
}

// nextMsg reads one binary message, failing the test on errors.
func (p *rawPeer) nextMsg() []byte {
	p.t.Helper()
	msg, err := p.read()
	if err != nil {
		p.t.Fatalf("raw read: %v", err)
	}
	return msg
}

func (p *rawPeer) read() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		typ, msg, err := p.c.Read(ctx)
		if err != nil {
			return nil, err
		}
		if typ == websocket.MessageBinary {
			return msg, nil
		}
	}
}

func (p *rawPeer) next() *qmuxFrame {
	p.t.Helper()
	return decodeOne(p.t, p.d, p.nextMsg())
}

// nextOf skips frames until one of kind arrives.
func (p *rawPeer) nextOf(kind frameKind) *qmuxFrame {
	p.t.Helper()
	for {
		if f := p.next(); f.kind == kind {
			return f
		}
	}
}

// expectClosed reads until the connection ends and returns the close frame
// the server sent before, if any.
func (p *rawPeer) expectClosed() *qmuxFrame {
	p.t.Helper()
	var closeFrame *qmuxFrame
	for {
		msg, err := p.read()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				p.t.Fatal("connection still open")
			}
			p.readErr = err
			return closeFrame
		}
		_ = decodeMessage(p.d, msg, func(f *qmuxFrame) error {
			if f.kind == fkClose {
				closeFrame = f
			}
			return nil
		})
	}
}

var bigParams = transportParams{
	MaxData: 1 << 30, MaxStreamDataBidiLocal: 1 << 30, MaxStreamDataBidiRemote: 1 << 30,
	MaxStreamDataUni: 1 << 30, MaxStreamsBidi: 1000, MaxStreamsUni: 1000,
}

// rawConnect returns a raw peer of the given dialect that has completed the
// qmux-00 parameter exchange where applicable, and the server session.
func rawConnect(t *testing.T, ts *testServer, d qmuxDialect) (*rawPeer, Session) {
	t.Helper()
	var p *rawPeer
	if d == dialectQMux00 {
		p, _ = dialRawQMux(t, ts, bigParams)
	} else {
		p = dialRaw(t, ts.wsURL("/"), []string{"qmux-00", "webtransport"})
		if p.d != dialectLegacy || p.c.Subprotocol() != "webtransport" {
			t.Fatalf("answered %q", p.c.Subprotocol())
		}
	}
	sv, err := ts.l.Accept(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sv.CloseWithError(0, "") })
	return p, sv
}

func TestWSSubprotocolSelection(t *testing.T) {
	supported := moqProtocols
	for _, c := range []struct {
		offer   []string
		answer  string
		dialect qmuxDialect
		proto   string
	}{
		// @moq/lite connect() default.
		{[]string{"qmux-00", "webtransport"}, "webtransport", dialectLegacy, ""},
		// @moq/qmux session created with protocols ["moq-lite-04"].
		{[]string{"qmux-00", "webtransport", "qmux-00.moq-lite-04", "webtransport.moq-lite-04"}, "qmux-00.moq-lite-04", dialectQMux00, "moq-lite-04"},
		// The client's order wins.
		{[]string{"qmux-00.moq-lite-03", "qmux-00.moq-lite-04", "qmux-00", "webtransport"}, "qmux-00.moq-lite-03", dialectQMux00, "moq-lite-03"},
		{[]string{"qmux-00.moqt-17", "qmux-00.moql", "webtransport"}, "qmux-00.moql", dialectQMux00, "moql"},
		{[]string{"qmux-00.moqt-17", "qmux-00", "webtransport"}, "webtransport", dialectLegacy, ""},
		{[]string{"webtransport.moq-lite-04", "webtransport"}, "webtransport", dialectLegacy, ""},
		{[]string{"qmux-00"}, "qmux-00", dialectQMux00, ""},
		{nil, "", dialectLegacy, ""},
		{[]string{"chat"}, "", dialectLegacy, ""},
		// What DialWebSocket offers.
		{wsOffer(moqProtocols), "qmux-00.moq-lite-04", dialectQMux00, "moq-lite-04"},
		{wsOffer(nil), "webtransport", dialectLegacy, ""},
	} {
		answer, d, proto := selectWSSubprotocol(c.offer, supported)
		if answer != c.answer || d != c.dialect || proto != c.proto {
			t.Errorf("offer %q: answer %q %v %q, want %q %v %q", c.offer, answer, d, proto, c.answer, c.dialect, c.proto)
		}
		// A client reading the answer agrees on dialect and protocol.
		if d2, p2 := wsDialectOf(answer); d2 != d || p2 != proto {
			t.Errorf("answer %q read back as %v %q", answer, d2, p2)
		}
	}
	if got := wsOffer([]string{"moq-lite-04", "moq-lite-03"}); !reflect.DeepEqual(got, []string{"qmux-00.moq-lite-04", "qmux-00.moq-lite-03", "qmux-00", "webtransport"}) {
		t.Errorf("offer = %q", got)
	}
	if d, p := wsDialectOf("webtransport.moq-lite-04"); d != dialectLegacy || p != "moq-lite-04" {
		t.Errorf("webtransport.moq-lite-04 read as %v %q", d, p)
	}

	// End to end: what the server answers on the wire and what the session
	// reports.
	ts := startWS(t, TCPHTTP, nil)
	for _, c := range []struct {
		offer  []string
		answer string
		proto  string
	}{
		{[]string{"qmux-00", "webtransport"}, "webtransport", ""},
		{[]string{"qmux-00", "webtransport", "qmux-00.moq-lite-04", "webtransport.moq-lite-04"}, "qmux-00.moq-lite-04", "moq-lite-04"},
		{[]string{"qmux-00"}, "qmux-00", ""},
	} {
		p := dialRaw(t, ts.wsURL("/"), c.offer)
		sv, err := ts.l.Accept(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if p.c.Subprotocol() != c.answer || sv.Protocol() != c.proto || sv.Kind() != KindWebSocket {
			t.Errorf("offer %q: answered %q, server protocol %q kind %q; want %q %q", c.offer, p.c.Subprotocol(), sv.Protocol(), sv.Kind(), c.answer, c.proto)
		}
		_ = sv.CloseWithError(0, "")
	}
}

func TestWSStreams(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	for _, v := range wsVariants {
		t.Run(v.name, func(t *testing.T) {
			ctx := testCtx(t)
			cl, sv := dialWS(t, ts, v.protos, "/", nil, nil)
			for name, s := range map[string]Session{"client": cl, "server": sv} {
				if s.Kind() != KindWebSocket || s.Protocol() != v.proto || s.(*wsSession).d != v.dialect {
					t.Fatalf("%s: kind %q protocol %q dialect %v", name, s.Kind(), s.Protocol(), s.(*wsSession).d)
				}
			}

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
				if cause := context.Cause(waitDone(t, st.Context())); !errors.Is(cause, context.Canceled) {
					t.Errorf("cause after Close = %v, want context.Canceled", cause)
				}
				ss, err := sv.AcceptStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(ss)
				if err != nil || string(got) != "hello" {
					t.Fatalf("server read %q, %v", got, err)
				}
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
				if _, err := st.Write([]byte("x")); err == nil {
					t.Error("write after Close succeeded")
				}
			})

			t.Run("server uni", func(t *testing.T) {
				for i := range 3 {
					us, err := sv.OpenUniStream(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := fmt.Fprintf(us, "group %d", i); err != nil {
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
					if err != nil || string(got) != fmt.Sprintf("group %d", i) {
						t.Fatalf("read %q, %v", got, err)
					}
				}
			})

			t.Run("empty stream", func(t *testing.T) {
				us, err := cl.OpenUniStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := us.Close(); err != nil {
					t.Fatal(err)
				}
				ur, err := sv.AcceptUniStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := io.ReadAll(ur); err != nil || len(got) != 0 {
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
				if _, err := us.Write([]byte("more")); !isStreamError(err, 7, false) {
					t.Errorf("write after CancelWrite = %v", err)
				}
				ur, err := sv.AcceptUniStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err = io.ReadAll(ur); !isStreamError(err, 7, true) {
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
				if _, err := ss.Read(buf); !isStreamError(err, 5, false) {
					t.Errorf("read after CancelRead = %v, want local StreamError 5", err)
				}
				if cause := context.Cause(waitDone(t, st.Context())); !isStreamError(cause, 5, true) {
					t.Errorf("writer context cause = %v, want remote StreamError 5", cause)
				}
				if _, err := st.Write([]byte("more")); !isStreamError(err, 5, true) {
					t.Errorf("write error = %v, want remote StreamError 5", err)
				}
				// The STOP_SENDING was answered with RESET_STREAM(5) on
				// the wire, which the server side ignores; the other
				// direction still works.
				if _, err := ss.Write([]byte("pong")); err != nil {
					t.Fatal(err)
				}
				_ = ss.Close()
				if got, err := io.ReadAll(st); err != nil || string(got) != "pong" {
					t.Errorf("client read %q, %v", got, err)
				}
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
				// Moving the deadline wakes a blocked Read.
				_ = st.SetReadDeadline(time.Time{})
				errc := make(chan error, 1)
				go func() {
					_, err := st.Read(make([]byte, 1))
					errc <- err
				}()
				time.Sleep(20 * time.Millisecond)
				_ = st.SetReadDeadline(time.Now())
				if err := <-errc; !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("read error = %v, want a timeout", err)
				}
			})

			t.Run("concurrent streams", func(t *testing.T) {
				const n = 20
				payload := make([]byte, 100_000)
				_, _ = rand.Read(payload)
				errc := make(chan error, 2*n)
				for range n {
					go func() {
						us, err := cl.OpenUniStream(ctx)
						if err == nil {
							_, err = us.Write(payload)
						}
						if err == nil {
							err = us.Close()
						}
						errc <- err
					}()
					go func() {
						ur, err := sv.AcceptUniStream(ctx)
						if err == nil {
							var got []byte
							got, err = io.ReadAll(ur)
							if err == nil && !bytes.Equal(got, payload) {
								err = errors.New("payload mismatch")
							}
						}
						errc <- err
					}()
				}
				for range 2 * n {
					if err := <-errc; err != nil {
						t.Fatal(err)
					}
				}
			})
		})
	}
}

func TestWSCloseWithError(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	for _, v := range wsVariants {
		for _, serverCloses := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/serverCloses=%v", v.name, serverCloses), func(t *testing.T) {
				ctx := testCtx(t)
				cl, sv := dialWS(t, ts, v.protos, "/", nil, nil)
				closer, other := cl, sv
				if serverCloses {
					closer, other = sv, cl
				}
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
					t.Errorf("local Accept error = %v, want local SessionError 13 bye", err)
				}
				if _, err := other.OpenUniStream(ctx); err == nil {
					t.Error("OpenUniStream on a closed session succeeded")
				}
				if cause := context.Cause(waitDone(t, other.Context())); !isSessionError(cause, 13, "bye", true) {
					t.Errorf("peer session cause = %v", cause)
				}
				waitDone(t, closer.Context())
				if cause := context.Cause(waitDone(t, st.Context())); !isSessionError(cause, 13, "bye", true) {
					t.Errorf("stream context cause = %v, want SessionError 13", cause)
				}
				if _, err := st.Write([]byte("y")); err == nil {
					t.Error("write on a stream of a closed session succeeded")
				}
				for _, s := range []Session{cl, sv} {
					select {
					case <-s.(*wsSession).done:
					case <-time.After(5 * time.Second):
						t.Fatal("session goroutines still running")
					}
				}
			})
		}
	}
}

// TestWSLargeWriteChunked checks that a 1 MiB write reaches a raw peer
// intact in STREAM frames of at most maxStreamPayload bytes each.
func TestWSLargeWriteChunked(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	payload := make([]byte, 1<<20)
	_, _ = rand.Read(payload)
	for _, d := range []qmuxDialect{dialectLegacy, dialectQMux00} {
		t.Run(d.String(), func(t *testing.T) {
			p, sv := rawConnect(t, ts, d)
			us, err := sv.OpenUniStream(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			werr := make(chan error, 1)
			go func() {
				_, err := us.Write(payload)
				if err == nil {
					err = us.Close()
				}
				werr <- err
			}()
			var got []byte
			msgs := 0
			for {
				msg := p.nextMsg()
				f := decodeOne(t, d, msg)
				if f.kind != fkStream {
					continue
				}
				if f.id != 3 { // first server-initiated unidirectional stream
					t.Fatalf("stream id %d", f.id)
				}
				msgs++
				if len(f.data) > maxStreamPayload {
					t.Fatalf("message with %d payload bytes", len(f.data))
				}
				got = append(got, f.data...)
				if f.fin {
					if len(f.data) != 0 {
						t.Error("FIN carried data")
					}
					break
				}
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("received %d bytes, differing from the %d written", len(got), len(payload))
			}
			if want := (len(payload)+maxStreamPayload-1)/maxStreamPayload + 1; msgs != want {
				t.Errorf("%d STREAM messages, want %d", msgs, want)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if st := sv.Stats(); st.BytesSent < 1<<20 || st.BytesReceived == 0 && d == dialectQMux00 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestWSSplitMessages feeds a stream byte by byte, one STREAM frame per
// byte, as @moq/qmux splits its writes.
func TestWSSplitMessages(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	for _, d := range []qmuxDialect{dialectLegacy, dialectQMux00} {
		t.Run(d.String(), func(t *testing.T) {
			ctx := testCtx(t)
			p, sv := rawConnect(t, ts, d)
			// Client SETUP as @moq/lite sends it, split into single bytes.
			msg := mustHex(t, "20 00 2c 03 c0 00 00 00 ff 0d ad 02 c0 00 00 00 ff 0d ad 01 c0 00 00 00 ff 00 00 0e 02 02 80 00 a4 55 07 0b 6d 6f 71 2d 6c 69 74 65 2d 6a 73")
			p.send(appendStreamFrame(nil, d, 0, nil, false)) // opens the stream, empty
			for _, b := range msg {
				p.send(appendStreamFrame(nil, d, 0, []byte{b}, false))
			}
			p.send(appendStreamFrame(nil, d, 0, nil, true))
			ss, err := sv.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(ss)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("read % x, %v", got, err)
			}
			// The reply goes back on the client's stream 0.
			if _, err := ss.Write(mustHex(t, "21 00 09 c0 00 00 00 ff 0d ad 02 00")); err != nil {
				t.Fatal(err)
			}
			f := p.nextOf(fkStream)
			if f.id != 0 || !bytes.Equal(f.data, mustHex(t, "21 00 09 c0 00 00 00 ff 0d ad 02 00")) {
				t.Fatalf("reply on stream %d: % x", f.id, f.data)
			}
			// Streams opened out of order: 8 implicitly opens 4.
			p.send(appendStreamFrame(nil, d, 8, []byte("eight"), true))
			p.send(appendStreamFrame(nil, d, 4, []byte("four"), true))
			for _, want := range []string{"four", "eight"} {
				ss, err := sv.AcceptStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := io.ReadAll(ss); err != nil || string(got) != want {
					t.Fatalf("read %q, %v, want %q", got, err, want)
				}
			}
			// Text messages are ignored.
			if err := p.c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			p.send(appendStreamFrame(nil, d, 2, []byte("uni"), true))
			ur, err := sv.AcceptUniStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(ur); err != nil || string(got) != "uni" {
				t.Fatalf("read %q, %v", got, err)
			}
		})
	}
}

// TestWSStopSendingAnsweredWithReset checks the wire exchange with a raw
// peer: STOP_SENDING is answered with RESET_STREAM of the same code, and
// CancelRead / CancelWrite / CloseWithError produce the expected frames.
func TestWSStopSendingAnsweredWithReset(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	for _, d := range []qmuxDialect{dialectLegacy, dialectQMux00} {
		t.Run(d.String(), func(t *testing.T) {
			ctx := testCtx(t)
			p, sv := rawConnect(t, ts, d)
			p.send(appendStreamFrame(nil, d, 0, []byte("sub"), false))
			ss, err := sv.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(ss, make([]byte, 3)); err != nil {
				t.Fatal(err)
			}
			if _, err := ss.Write([]byte("ok")); err != nil {
				t.Fatal(err)
			}
			if f := p.nextOf(fkStream); string(f.data) != "ok" {
				t.Fatalf("got %q", f.data)
			}
			p.send(appendStopSending(nil, d, 0, 5))
			if cause := context.Cause(waitDone(t, ss.Context())); !isStreamError(cause, 5, true) {
				t.Errorf("send context cause = %v, want remote StreamError 5", cause)
			}
			if _, err := ss.Write([]byte("late")); !isStreamError(err, 5, true) {
				t.Errorf("write = %v, want remote StreamError 5", err)
			}
			f := p.nextOf(fkResetStream)
			if f.id != 0 || f.code != 5 {
				t.Errorf("RESET_STREAM id %d code %d, want 0 5", f.id, f.code)
			}
			if d == dialectQMux00 && f.value != 2 {
				t.Errorf("final size %d, want 2", f.value)
			}

			ss.CancelRead(9)
			if f := p.nextOf(fkStopSending); f.id != 0 || f.code != 9 {
				t.Errorf("STOP_SENDING id %d code %d, want 0 9", f.id, f.code)
			}

			us, err := sv.OpenUniStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := us.Write([]byte("g")); err != nil {
				t.Fatal(err)
			}
			us.CancelWrite(7)
			if f := p.nextOf(fkStream); f.id != 3 || string(f.data) != "g" {
				t.Errorf("STREAM id %d %q", f.id, f.data)
			}
			if f := p.nextOf(fkResetStream); f.id != 3 || f.code != 7 {
				t.Errorf("RESET_STREAM id %d code %d, want 3 7", f.id, f.code)
			}

			// A reset from the peer reaches the reader.
			p.send(appendStreamFrame(nil, d, 2, []byte("abc"), false))
			p.send(appendResetStream(nil, d, 2, 4, 3))
			ur, err := sv.AcceptUniStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(ur); !isStreamError(err, 4, true) {
				t.Errorf("read = %v, want remote StreamError 4", err)
			}

			_ = sv.CloseWithError(13, "bye")
			f = p.expectClosed()
			if f == nil || !f.appClose || f.code != 13 || f.reason != "bye" {
				t.Errorf("close frame %+v, want APPLICATION_CLOSE 13 bye", f)
			}
			// The WebSocket close carries the reason too (what @moq/qmux
			// hands the application).
			var ce websocket.CloseError
			if !errors.As(p.readErr, &ce) || ce.Code != websocket.StatusNormalClosure || ce.Reason != "bye" {
				t.Errorf("websocket close = %v, want 1000 bye", p.readErr)
			}
		})
	}
}

// TestWSPeerCloseReachesServer checks a raw peer's APPLICATION_CLOSE.
func TestWSPeerCloseReachesServer(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	for _, d := range []qmuxDialect{dialectLegacy, dialectQMux00} {
		t.Run(d.String(), func(t *testing.T) {
			p, sv := rawConnect(t, ts, d)
			p.send(appendClose(nil, d, true, 42, "gone"))
			if cause := context.Cause(waitDone(t, sv.Context())); !isSessionError(cause, 42, "gone", true) {
				t.Errorf("cause = %v, want remote SessionError 42 gone", cause)
			}
		})
	}
}

func TestWSFlowControlBlocksWriter(t *testing.T) {
	small := &wsLimits{
		params: transportParams{
			MaxData: 64 << 10, MaxStreamDataBidiLocal: 16 << 10, MaxStreamDataBidiRemote: 16 << 10,
			MaxStreamDataUni: 16 << 10, MaxStreamsBidi: 2, MaxStreamsUni: 2,
		},
	}
	ts := startWS(t, TCPHTTP, func(c *ListenConfig) { c.wsLimits = small })
	ctx := testCtx(t)
	cl, sv := dialWS(t, ts, moqProtocols, "/", nil, small)
	payload := make([]byte, 4<<20)
	_, _ = rand.Read(payload)

	for _, dir := range []string{"client to server", "server to client"} {
		t.Run(dir, func(t *testing.T) {
			w, r := cl, sv
			if dir == "server to client" {
				w, r = sv, cl
			}
			us, err := w.OpenUniStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			werr := make(chan error, 1)
			go func() {
				_, err := us.Write(payload)
				if err == nil {
					err = us.Close()
				}
				werr <- err
			}()
			ur, err := r.AcceptUniStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Nobody reads: the writer must stop at the stream window.
			time.Sleep(200 * time.Millisecond)
			select {
			case err := <-werr:
				t.Fatalf("4 MiB write finished without credit: %v", err)
			default:
			}
			ws := w.(*wsSession)
			ws.mu.Lock()
			sent := ws.streams[streamIDOf(us)].sent
			ws.mu.Unlock()
			if sent != 16<<10 {
				t.Errorf("sent %d bytes before the reader read, want the 16 KiB window", sent)
			}
			got, err := io.ReadAll(ur)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("read %d bytes, %v", len(got), err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("stream count", func(t *testing.T) {
		var opened []Stream
		for range 2 {
			st, err := cl.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			opened = append(opened, st)
		}
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := cl.OpenStream(short)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("third OpenStream = %v, want to block", err)
		}
		// Finishing one stream on both sides frees a slot.
		_ = opened[0].Close()
		ss, err := sv.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(ss); err != nil {
			t.Fatal(err)
		}
		_ = ss.Close()
		if _, err := io.ReadAll(opened[0]); err != nil {
			t.Fatal(err)
		}
		st, err := cl.OpenStream(ctx)
		if err != nil {
			t.Fatalf("OpenStream after a slot freed: %v", err)
		}
		st.CancelWrite(0)
		opened[1].CancelWrite(0)
	})

	for name, s := range map[string]Session{"client": cl, "server": sv} {
		if s.Context().Err() != nil {
			t.Errorf("%s session ended: %v", name, context.Cause(s.Context()))
		}
	}
}

func streamIDOf(s SendStream) uint64 { return s.(*wsStream).id }

// TestWSPeerViolations checks that a raw peer breaking the rules gets the
// connection closed with a transport error.
func TestWSPeerViolations(t *testing.T) {
	limits := &wsLimits{
		params: transportParams{
			MaxData: 2500, MaxStreamDataBidiLocal: 1000, MaxStreamDataBidiRemote: 1000,
			MaxStreamDataUni: 1000, MaxStreamsBidi: 2, MaxStreamsUni: 2,
		},
		legacyStreamBuffer: 1000, legacySessionBuffer: 1500, legacyMaxStreams: 2,
	}
	ts := startWS(t, TCPHTTP, func(c *ListenConfig) { c.wsLimits = limits })
	big := make([]byte, 800)
	for _, c := range []struct {
		name string
		d    qmuxDialect
		code uint64
		send func(p *rawPeer)
	}{
		{"stream data limit", dialectQMux00, errCodeFlowControl, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 0, big, false))
			p.send(appendStreamFrame(nil, p.d, 0, big, false))
		}},
		{"connection data limit", dialectQMux00, errCodeFlowControl, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 2, big, true))
			p.send(appendStreamFrame(nil, p.d, 6, big, true))
			p.send(appendStreamFrame(nil, p.d, 0, big, true))
			p.send(appendStreamFrame(nil, p.d, 0, nil, true)) // a duplicate empty FIN is fine
			p.send(appendStopSending(nil, p.d, 0, 0))
			p.send(appendStreamFrame(nil, p.d, 4, big, true)) // 3200 > 2500
		}},
		{"stream limit", dialectQMux00, errCodeStreamLimit, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 8, nil, false))
		}},
		{"wrong direction", dialectQMux00, errCodeStreamState, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 3, []byte("x"), false))
		}},
		{"never opened", dialectQMux00, errCodeStreamState, func(p *rawPeer) {
			p.send(appendStopSending(nil, p.d, 1, 0))
		}},
		{"data after FIN", dialectQMux00, errCodeFinalSize, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 0, []byte("x"), true))
			p.send(appendStreamFrame(nil, p.d, 0, []byte("y"), false))
		}},
		{"frame too large", dialectQMux00, errCodeProtocolViolation, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 0, make([]byte, maxStreamPayload+1), false))
		}},
		{"legacy frame too large", dialectLegacy, errCodeProtocolViolation, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 0, make([]byte, maxStreamPayload+1), false))
		}},
		{"legacy stream buffer", dialectLegacy, errCodeFlowControl, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 0, big, false))
			p.send(appendStreamFrame(nil, p.d, 0, big, false))
		}},
		{"legacy session buffer", dialectLegacy, errCodeFlowControl, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 0, big, false))
			p.send(appendStreamFrame(nil, p.d, 2, big, false))
		}},
		{"legacy stream count", dialectLegacy, errCodeStreamLimit, func(p *rawPeer) {
			p.send(appendStreamFrame(nil, p.d, 8, nil, false))
		}},
		{"legacy unknown frame", dialectLegacy, errCodeFrameEncoding, func(p *rawPeer) {
			p.send([]byte{0x42, 0})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, sv := rawConnect(t, ts, c.d)
			c.send(p)
			f := p.expectClosed()
			if f == nil {
				t.Fatal("no close frame before the connection closed")
			}
			if c.d == dialectQMux00 && f.appClose {
				t.Errorf("qmux-00 violation closed with APPLICATION_CLOSE")
			}
			cause := context.Cause(waitDone(t, sv.Context()))
			var qe *qmuxError
			if !errors.As(cause, &qe) || qe.Remote {
				t.Fatalf("server cause = %v, want a local transport error", cause)
			}
			if f.code != c.code || qe.Code != c.code {
				t.Errorf("code on wire %#x, in cause %#x, want %#x (%s)", f.code, qe.Code, c.code, qe.Reason)
			}
		})
	}

	t.Run("first frame not parameters", func(t *testing.T) {
		p := dialRaw(t, ts.wsURL("/"), []string{"qmux-00"})
		p.send(appendStreamFrame(nil, p.d, 0, []byte("x"), false))
		f := p.expectClosed()
		if f == nil || f.code != errCodeProtocolViolation {
			t.Errorf("close frame %+v, want PROTOCOL_VIOLATION", f)
		}
		sv, err := ts.l.Accept(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, sv.Context())
	})

	t.Run("oversized message", func(t *testing.T) {
		p, sv := rawConnect(t, ts, dialectLegacy)
		p.send(appendStreamFrame(nil, p.d, 0, make([]byte, wsReadLimit+1), false))
		p.expectClosed()
		waitDone(t, sv.Context())
	})
}

// TestWSLegacyBackpressure: without flow control, a fast legacy peer is
// slowed down by not reading the socket while the application lags, and
// disconnected only if the application does not catch up in time.
func TestWSLegacyBackpressure(t *testing.T) {
	server := func(stall time.Duration) (*testServer, wsLimits) {
		limits := defaultWSLimits()
		limits.legacyStreamBuffer = 64 << 10
		limits.legacySessionBuffer = 96 << 10
		limits.legacyStall = stall
		return startWS(t, TCPHTTP, func(c *ListenConfig) { c.wsLimits = &limits }), limits
	}
	payload := make([]byte, 3<<20)
	_, _ = rand.Read(payload)

	t.Run("slow reader catches up", func(t *testing.T) {
		ts, _ := server(5 * time.Second)
		p, sv := rawConnect(t, ts, dialectLegacy)
		sent := make(chan error, 1)
		go func() {
			ctx := testCtx(t)
			for off := 0; off < len(payload); off += maxStreamPayload {
				end := min(off+maxStreamPayload, len(payload))
				if err := p.c.Write(ctx, websocket.MessageBinary, appendStreamFrame(nil, dialectLegacy, 2, payload[off:end], false)); err != nil {
					sent <- err
					return
				}
			}
			sent <- p.c.Write(ctx, websocket.MessageBinary, appendStreamFrame(nil, dialectLegacy, 2, nil, true))
		}()
		ur, err := sv.AcceptUniStream(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // lag behind, within legacyStall
		got := make([]byte, 0, len(payload))
		buf := make([]byte, 4096)
		for {
			n, err := ur.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read after %d bytes: %v", len(got), err)
			}
			if len(got)%(256<<10) < 4096 {
				time.Sleep(time.Millisecond)
			}
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("payload mismatch (%d bytes)", len(got))
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		if sv.Context().Err() != nil {
			t.Fatalf("session ended: %v", context.Cause(sv.Context()))
		}
	})

	t.Run("reader never catches up", func(t *testing.T) {
		ts, limits := server(300 * time.Millisecond)
		p, sv := rawConnect(t, ts, dialectLegacy)
		start := time.Now()
		go func() {
			ctx := testCtx(t)
			for off := 0; off < len(payload); off += maxStreamPayload {
				end := min(off+maxStreamPayload, len(payload))
				if p.c.Write(ctx, websocket.MessageBinary, appendStreamFrame(nil, dialectLegacy, 2, payload[off:end], false)) != nil {
					return
				}
			}
		}()
		cause := context.Cause(waitDone(t, sv.Context()))
		var qe *qmuxError
		if !errors.As(cause, &qe) || qe.Code != errCodeFlowControl {
			t.Fatalf("cause = %v, want a flow control error", cause)
		}
		if d := time.Since(start); d < limits.legacyStall {
			t.Errorf("closed after %v, before the %v grace period", d, limits.legacyStall)
		}
	})
}

// TestWSPeerFlowControlRespected: the server never sends beyond a raw
// peer's limits and resumes on MAX_STREAM_DATA / MAX_DATA, as @moq/qmux
// expects (it closes the connection on violations).
func TestWSPeerFlowControlRespected(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	p, _ := dialRawQMux(t, ts, transportParams{
		MaxData: 3000, MaxStreamDataBidiLocal: 1000, MaxStreamDataBidiRemote: 1000,
		MaxStreamDataUni: 2000, MaxStreamsBidi: 1, MaxStreamsUni: 1,
	})
	sv, err := ts.l.Accept(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sv.CloseWithError(0, "") })
	ctx := testCtx(t)
	payload := make([]byte, 5000)
	_, _ = rand.Read(payload)
	us, err := sv.OpenUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if _, err := us.Write(payload); err == nil {
			_ = us.Close()
		}
	}()
	// A second uni stream must wait for MAX_STREAMS.
	opened := make(chan error, 1)
	go func() {
		us2, err := sv.OpenUniStream(ctx)
		if err == nil {
			err = us2.Close()
		}
		opened <- err
	}()

	var got []byte
	readUntilBlocked := func(wantBlocked frameKind) {
		t.Helper()
		for {
			f := p.next()
			switch f.kind {
			case fkStream:
				got = append(got, f.data...)
			case fkStreamsBlocked:
			case wantBlocked:
				return
			case fkStreamDataBlocked, fkDataBlocked:
				t.Fatalf("blocked by kind %d, want %d, after %d bytes", f.kind, wantBlocked, len(got))
			}
		}
	}
	readUntilBlocked(fkStreamDataBlocked)
	if len(got) != 2000 {
		t.Fatalf("%d bytes before STREAM_DATA_BLOCKED, want 2000", len(got))
	}
	p.send(appendStreamValueFrame(nil, ftMaxStreamData, 3, 10000))
	readUntilBlocked(fkDataBlocked)
	if len(got) != 3000 {
		t.Fatalf("%d bytes before DATA_BLOCKED, want 3000", len(got))
	}
	select {
	case err := <-opened:
		t.Fatalf("second uni stream opened beyond MAX_STREAMS: %v", err)
	default:
	}
	p.send(appendValueFrame(nil, ftMaxData, 10000))
	for {
		f := p.next()
		if f.kind == fkStream && f.id == 3 {
			got = append(got, f.data...)
			if f.fin {
				break
			}
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("payload mismatch (%d bytes)", len(got))
	}
	p.send(appendValueFrame(nil, ftMaxStreamsUni, 2))
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	if f := p.nextOf(fkStream); f.id != 7 || !f.fin {
		t.Errorf("second stream frame id %d fin %v", f.id, f.fin)
	}
}

// TestWSServerCreditUpdates: the server advertises more credit as the
// application reads, at half-window, so a raw peer can keep sending.
func TestWSServerCreditUpdates(t *testing.T) {
	limits := &wsLimits{params: transportParams{
		MaxData: 4000, MaxStreamDataBidiLocal: 2000, MaxStreamDataBidiRemote: 2000,
		MaxStreamDataUni: 2000, MaxStreamsBidi: 4, MaxStreamsUni: 4,
	}}
	ts := startWS(t, TCPHTTP, func(c *ListenConfig) { c.wsLimits = limits })
	p, params := dialRawQMux(t, ts, bigParams)
	if params != limits.params {
		t.Fatalf("advertised %+v", params)
	}
	sv, err := ts.l.Accept(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sv.CloseWithError(0, "") })
	p.send(appendStreamFrame(nil, p.d, 2, make([]byte, 2000), false))
	ur, err := sv.AcceptUniStream(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(ur, make([]byte, 999)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(ur, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// 1000 of 2000 read: MAX_STREAM_DATA 3000; connection 1000 of 4000 read:
	// not yet half.
	f := p.nextOf(fkMaxStreamData)
	if f.id != 2 || f.value != 3000 {
		t.Fatalf("MAX_STREAM_DATA id %d value %d, want 2 3000", f.id, f.value)
	}
	if _, err := io.ReadFull(ur, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	f = p.nextOf(fkMaxData)
	if f.value != 6000 {
		t.Fatalf("MAX_DATA %d, want 6000", f.value)
	}
	p.send(appendStreamFrame(nil, p.d, 2, make([]byte, 1000), true))
	if n, err := io.Copy(io.Discard, ur); err != nil || n != 1000 {
		t.Fatalf("read %d, %v", n, err)
	}
	// Two finished peer streams (of 4) raise the limit by 2.
	p.send(appendStreamFrame(nil, p.d, 6, nil, true))
	ur2, err := sv.AcceptUniStream(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(ur2); err != nil {
		t.Fatal(err)
	}
	if f := p.nextOf(fkMaxStreams); !f.uni || f.value != 6 {
		t.Fatalf("MAX_STREAMS uni %v value %d, want uni 6", f.uni, f.value)
	}
}

func TestWSFingerprint(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	ctx := testCtx(t)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://127.0.0.1:%d%s", ts.tcpPort(), path), nil)
		if err != nil {
			t.Fatal(err)
		}
		rsp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer rsp.Body.Close()
		body, _ := io.ReadAll(rsp.Body)
		return rsp, string(body)
	}
	rsp, body := get(http.MethodGet, FingerprintPath)
	if rsp.StatusCode != http.StatusOK || body != fmt.Sprintf("%x", ts.fp) {
		t.Errorf("GET: %d %q, want 200 %x", rsp.StatusCode, body, ts.fp)
	}
	if got := rsp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
	if rsp, _ := get(http.MethodPost, FingerprintPath); rsp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", rsp.StatusCode)
	}
	if rsp, _ := get(http.MethodGet, "/live/room"); rsp.StatusCode != http.StatusNotFound {
		t.Errorf("GET without upgrade: %d, want 404", rsp.StatusCode)
	}

	fp, err := FetchFingerprint(ctx, fmt.Sprintf("http://127.0.0.1:%d/live/room?jwt=x", ts.tcpPort()))
	if err != nil || fp != ts.fp {
		t.Fatalf("FetchFingerprint = %x, %v; want %x", fp, err, ts.fp)
	}
	// The fetched pin works for WebTransport on the same port number.
	wt, err := DialWebTransport(ctx, ts.url("/live/room"), DialConfig{TLSConfig: PinnedTLSConfig(fp), Protocols: moqProtocols})
	if err != nil {
		t.Fatal(err)
	}
	defer wt.CloseWithError(0, "")
	if _, err := FetchFingerprint(ctx, ts.url("/")); err == nil {
		t.Error("FetchFingerprint accepted an https URL")
	}
}

func TestParseFingerprint(t *testing.T) {
	hexFP := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	for _, c := range []struct {
		in string
		ok bool
	}{
		{hexFP, true},
		{"0x" + hexFP, true},
		{"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff", true},
		{hexFP + "\n", false},
		{" " + hexFP, false},
		{hexFP[:63], false},
		{hexFP[:62], false},
		{"00:11", false},
		{"", false},
	} {
		fp, err := parseFingerprint(c.in)
		if (err == nil) != c.ok {
			t.Errorf("%q: err %v, want ok=%v", c.in, err, c.ok)
		}
		if c.ok && fmt.Sprintf("%x", fp) != hexFP {
			t.Errorf("%q parsed as %x", c.in, fp)
		}
	}
}

func TestWSAdmitAndOrigin(t *testing.T) {
	ts := startWS(t, TCPHTTP, func(c *ListenConfig) {
		c.CheckOrigin = func(r *http.Request) bool {
			o := r.Header.Get("Origin")
			return o == "" || o == "https://ok.example"
		}
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
	ctx := testCtx(t)
	var he *HTTPError
	_, err := DialWebSocket(ctx, ts.wsURL("/room?jwt=bad"), DialConfig{Protocols: moqProtocols})
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("dial error = %v, want HTTPError 401", err)
	}
	_, err = DialWebSocket(ctx, ts.wsURL("/room?jwt=broken"), DialConfig{})
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Fatalf("dial error = %v, want HTTPError 403", err)
	}
	_, err = DialWebSocket(ctx, ts.wsURL("/room?jwt=good"), DialConfig{Header: http.Header{"Origin": {"https://evil.example"}}})
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Fatalf("dial error = %v, want HTTPError 403", err)
	}
	// A raw browser-like client sees the 401 too.
	_, rsp, err := websocket.Dial(ctx, ts.wsURL("/room"), &websocket.DialOptions{Subprotocols: []string{"qmux-00", "webtransport"}, HTTPClient: rawHTTPClient(t)})
	if err == nil || rsp == nil || rsp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("raw dial: %v, %v", rsp, err)
	}
	cl, sv := dialWS(t, ts, moqProtocols, "/room?jwt=good", http.Header{"Origin": {"https://ok.example"}}, nil)
	if sv.Request().URL.Query().Get("jwt") != "good" || sv.Request().Origin != "https://ok.example" {
		t.Errorf("admitted session request %v origin %q", sv.Request().URL, sv.Request().Origin)
	}
	if cl.Protocol() != "moq-lite-04" {
		t.Errorf("protocol %q", cl.Protocol())
	}
}

func TestWSRequestAndStats(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	// The dial context ending after the dial does not end the session.
	dctx, cancel := context.WithCancel(context.Background())
	cl, err := DialWebSocket(dctx, ts.wsURL("/live/room?jwt=abc"), DialConfig{Protocols: moqProtocols, Header: http.Header{"X-Moq-Test": {"1"}}})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.CloseWithError(0, "")
	sv, err := ts.l.Accept(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sv.CloseWithError(0, "")
	req := sv.Request()
	if req.URL.Scheme != "ws" || req.URL.Path != "/live/room" || req.URL.Query().Get("jwt") != "abc" {
		t.Errorf("server URL = %v", req.URL)
	}
	if req.Header.Get("X-Moq-Test") != "1" {
		t.Errorf("server header = %v", req.Header)
	}
	if cl.Request().URL.Path != "/live/room" || cl.Request().Header.Get("X-Moq-Test") != "1" {
		t.Errorf("client request = %v %v", cl.Request().URL, cl.Request().Header)
	}
	if cl.RemoteAddr() == nil || sv.RemoteAddr() == nil {
		t.Fatalf("RemoteAddr client %v server %v", cl.RemoteAddr(), sv.RemoteAddr())
	}
	if got := cl.RemoteAddr().(*net.TCPAddr).Port; got != ts.port {
		t.Errorf("client RemoteAddr port %d, want %d", got, ts.port)
	}

	time.Sleep(50 * time.Millisecond) // past the dial context's end
	ctx := testCtx(t)
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
	if n, err := io.Copy(io.Discard, st); err != nil || n != 10000 {
		t.Fatalf("echo %d, %v", n, err)
	}
	for name, s := range map[string]Session{"client": cl, "server": sv} {
		if st := s.Stats(); st.BytesSent < 10000 || st.BytesReceived < 10000 {
			t.Errorf("%s stats = %+v", name, st)
		}
	}
}

// TestAllKindsOnOnePort serves raw QUIC, WebTransport and WebSocket from one
// Listener: UDP and TCP on the same port number.
func TestAllKindsOnOnePort(t *testing.T) {
	for _, mode := range []TCPMode{TCPHTTP, TCPHTTPS} {
		t.Run(mode.String(), func(t *testing.T) {
			ts := startWS(t, mode, nil)
			if ts.tcpPort() != ts.port {
				t.Fatalf("TCP port %d, UDP port %d", ts.tcpPort(), ts.port)
			}
			ctx := testCtx(t)
			qc, qs := dial(t, ts, KindQUIC, []string{"moq-lite-04"}, "", nil)
			wc, ws := dial(t, ts, KindWebTransport, moqProtocols, "/", nil)
			scheme := "ws"
			if mode == TCPHTTPS {
				scheme = "wss"
			}
			u := fmt.Sprintf("%s://127.0.0.1:%d/room", scheme, ts.port)
			cfg := DialConfig{TLSConfig: PinnedTLSConfig(ts.fp), Protocols: moqProtocols}
			sc, err := DialWebSocket(ctx, u, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sc.CloseWithError(0, "")
			ss, err := ts.l.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer ss.CloseWithError(0, "")
			for _, c := range []struct {
				name string
				s    Session
				kind string
			}{
				{"quic client", qc, KindQUIC}, {"quic server", qs, KindQUIC},
				{"wt client", wc, KindWebTransport}, {"wt server", ws, KindWebTransport},
				{"ws client", sc, KindWebSocket}, {"ws server", ss, KindWebSocket},
			} {
				if c.s.Kind() != c.kind || c.s.Protocol() != "moq-lite-04" {
					t.Errorf("%s: kind %q protocol %q", c.name, c.s.Kind(), c.s.Protocol())
				}
			}
			if ss.Request().URL.Scheme != scheme {
				t.Errorf("server URL %v", ss.Request().URL)
			}
			// Each kind carries a stream.
			for _, pair := range [][2]Session{{qc, qs}, {wc, ws}, {sc, ss}} {
				us, err := pair[0].OpenUniStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = us.Write([]byte(pair[0].Kind()))
				_ = us.Close()
				ur, err := pair[1].AcceptUniStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := io.ReadAll(ur); err != nil || string(got) != pair[0].Kind() {
					t.Errorf("%s: read %q, %v", pair[0].Kind(), got, err)
				}
			}
			if mode == TCPHTTPS {
				// The pin is checked on TCP too.
				wrong := ts.fp
				wrong[0] ^= 0xff
				if _, err := DialWebSocket(ctx, u, DialConfig{TLSConfig: PinnedTLSConfig(wrong)}); err == nil {
					t.Error("wss dial with a wrong pin succeeded")
				}
			}
		})
	}
}

func TestWSListenerClose(t *testing.T) {
	ts := startWS(t, TCPHTTP, nil)
	cl, sv := dialWS(t, ts, moqProtocols, "/", nil, nil)
	legacyCl, legacySv := dialWS(t, ts, nil, "/", nil, nil)
	// One session never accepted.
	queued, err := DialWebSocket(testCtx(t), ts.wsURL("/"), DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer queued.CloseWithError(0, "")
	time.Sleep(50 * time.Millisecond)
	if err := ts.l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.l.Accept(testCtx(t)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v", err)
	}
	for name, s := range map[string]Session{"client": cl, "server": sv, "legacy client": legacyCl, "legacy server": legacySv, "queued": queued} {
		select {
		case <-s.Context().Done():
		case <-time.After(5 * time.Second):
			t.Errorf("%s still alive after listener Close", name)
		}
	}
	if cause := context.Cause(cl.Context()); !isSessionError(cause, 0, "server shutting down", true) {
		t.Errorf("client cause = %v", cause)
	}
	if _, err := DialWebSocket(testCtx(t), ts.wsURL("/"), DialConfig{}); err == nil {
		t.Error("dial after Close succeeded")
	}
}

func TestListenTCPPortInUse(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	cert, err := GenerateSelfSigned(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Listen(ListenConfig{
		Addr:      tcp.Addr().String(),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		TCP:       TCPHTTP,
	})
	if err == nil {
		t.Fatal("Listen succeeded although the TCP port is taken")
	}
}

func BenchmarkWSStream(b *testing.B) {
	for _, v := range wsVariants {
		b.Run(v.name, func(b *testing.B) {
			cert, err := GenerateSelfSigned(nil, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			l, err := Listen(ListenConfig{Addr: "127.0.0.1:0", TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
				WebTransportProtocols: moqProtocols, TCP: TCPHTTP})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			cl, err := DialWebSocket(ctx, "ws://"+l.TCPAddr().String()+"/", DialConfig{Protocols: v.protos})
			if err != nil {
				b.Fatal(err)
			}
			defer cl.CloseWithError(0, "")
			sv, err := l.Accept(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer sv.CloseWithError(0, "")
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			us, err := cl.OpenUniStream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan int64)
			go func() {
				ur, err := sv.AcceptUniStream(ctx)
				if err != nil {
					done <- -1
					return
				}
				n, _ := io.Copy(io.Discard, ur)
				done <- n
			}()
			b.ResetTimer()
			for range b.N {
				if _, err := us.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			_ = us.Close()
			if n := <-done; n != int64(b.N*len(buf)) {
				b.Fatalf("received %d", n)
			}
		})
	}
}

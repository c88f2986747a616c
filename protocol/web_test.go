package protocol

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/auth"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
)

// webGet makes a GET request to the server's TCP side and returns the
// response with its body read.
func webGet(t *testing.T, ctx context.Context, srv *Server, path string) (*http.Response, string) {
	t.Helper()
	rsp := webDo(t, ctx, srv, http.MethodGet, path)
	defer rsp.Body.Close()
	body, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return rsp, string(body)
}

// webDo sends a request to the server's TCP side; the caller closes the
// body.
func webDo(t *testing.T, ctx context.Context, srv *Server, method, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+srv.TCPAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	rsp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return rsp
}

// wantWeb checks a response's status and body.
func wantWeb(t *testing.T, ctx context.Context, srv *Server, path string, status int, body string) {
	t.Helper()
	rsp, got := webGet(t, ctx, srv, path)
	if rsp.StatusCode != status || got != body {
		t.Errorf("GET %s: %d %q, want %d %q", path, rsp.StatusCode, got, status, body)
	}
}

// publishLocal publishes an in-process broadcast with one track at path
// of the server's Origin.
func publishLocal(t *testing.T, srv *Server, path, track string) *moq.TrackWriter {
	t.Helper()
	bw := moq.NewBroadcast()
	tw, err := bw.CreateTrack(track, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Origin().Publish(path, bw.Reader()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bw.Close() })
	return tw
}

// writeGroup writes a closed group of frames frameBytes(g, 0..frames-1)
// with sequence seq.
func writeGroup(t *testing.T, tw *moq.TrackWriter, seq uint64, frames int) {
	t.Helper()
	gw, err := tw.CreateGroup(seq)
	if err != nil {
		t.Fatal(err)
	}
	for f := range frames {
		if err := gw.WriteFrame(frameBytes(int(seq), f)); err != nil {
			t.Fatal(err)
		}
	}
	_ = gw.Close()
}

// groupBytes is what /fetch returns for a whole group written by writeGroup.
func groupBytes(seq uint64, frames int) string {
	var b bytes.Buffer
	for f := range frames {
		b.Write(frameBytes(int(seq), f))
	}
	return b.String()
}

// TestWebAnnounced: GET /announced lists the active broadcasts, those
// published by a peer included, one per line and relative to the prefix
// asked for, like the announcements a session rooted there gets.
func TestWebAnnounced(t *testing.T) {
	ctx := testContext(t)
	srv := testServer(t, ServerConfig{})
	publishTrack(t, ctx, srv, "quic", "live/carol", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/carol")
	publishLocal(t, srv, "live/bob", "video")
	publishLocal(t, srv, "live/alice", "video")
	publishLocal(t, srv, "other/x", "video")
	publishLocal(t, srv, "livestream", "video")

	rsp, body := webGet(t, ctx, srv, "/announced")
	if rsp.StatusCode != http.StatusOK || body != "live/alice\nlive/bob\nlive/carol\nlivestream\nother/x" {
		t.Errorf("GET /announced: %d %q", rsp.StatusCode, body)
	}
	if got := rsp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin %q, want *", got)
	}
	wantWeb(t, ctx, srv, "/announced/live", http.StatusOK, "alice\nbob\ncarol")
	wantWeb(t, ctx, srv, "/announced//live/", http.StatusOK, "alice\nbob\ncarol")
	wantWeb(t, ctx, srv, "/announced/nothing", http.StatusOK, "")

	// Ended broadcasts are gone from the list.
	b, _ := srv.Origin().Consume("live/bob")
	srv.Origin().Unpublish("live/bob", b)
	wantWeb(t, ctx, srv, "/announced/live", http.StatusOK, "alice\ncarol")

	if rsp := webDo(t, ctx, srv, http.MethodPost, "/announced"); rsp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /announced: %d, want 405", rsp.StatusCode)
	} else {
		rsp.Body.Close()
	}
}

// TestWebAnnouncedAuth: with auth, /announced is scoped by the token of
// its jwt parameter exactly like a session: its root, its get prefixes,
// the public prefix; no token (outside the public prefix) or a token that
// may not subscribe is 401.
func TestWebAnnouncedAuth(t *testing.T) {
	ctx := testContext(t)
	_, keyFile := testAuthorizer(t)
	public := "public"
	az, err := auth.New(auth.Config{KeyFiles: []string{keyFile}, PublicPrefix: &public})
	if err != nil {
		t.Fatal(err)
	}
	srv := testServer(t, ServerConfig{Auth: az})
	for _, p := range []string{"room/alice", "room/alice/cam2", "room/bob", "public/demo", "elsewhere"} {
		publishLocal(t, srv, p, "video")
	}
	mint := func(c auth.Claims) string {
		tok, err := auth.Mint(keyFile, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	viewer := mint(auth.Claims{Root: "room", Get: []string{"alice"}})
	publisher := mint(auth.Claims{Root: "room", Put: []string{"alice"}})

	wantWeb(t, ctx, srv, "/announced/room", http.StatusUnauthorized, "unauthorized\n")
	wantWeb(t, ctx, srv, "/announced/room?jwt=garbage", http.StatusUnauthorized, "unauthorized\n")
	wantWeb(t, ctx, srv, "/announced/room?jwt="+viewer, http.StatusOK, "alice\nalice/cam2")
	// A path above the token's root sees the same broadcasts, relative
	// to that path; one below it, relative to itself.
	wantWeb(t, ctx, srv, "/announced?jwt="+viewer, http.StatusOK, "room/alice\nroom/alice/cam2")
	wantWeb(t, ctx, srv, "/announced/room/alice?jwt="+viewer, http.StatusOK, "\ncam2")
	// Outside the token's root, and a token that may only publish.
	wantWeb(t, ctx, srv, "/announced/elsewhere?jwt="+viewer, http.StatusUnauthorized, "unauthorized\n")
	if rsp, _ := webGet(t, ctx, srv, "/announced/room?jwt="+publisher); rsp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a publish-only token: %d, want 401", rsp.StatusCode)
	}
	// The public prefix needs no token; above it, it is all one sees.
	wantWeb(t, ctx, srv, "/announced/public", http.StatusOK, "demo")
	wantWeb(t, ctx, srv, "/announced", http.StatusOK, "public/demo")
}

// TestWebFetch: /fetch serves one cached group, the latest or by number,
// whole or one frame, with 404 for what does not exist and 400 for
// requests that make no sense.
func TestWebFetch(t *testing.T) {
	ctx := testContext(t)
	srv := testServer(t, ServerConfig{})
	tw := publishLocal(t, srv, "live/cam", "video")
	writeGroup(t, tw, 0, 3)
	writeGroup(t, tw, 1, 4)
	writeGroup(t, tw, 3, 2) // 2 never comes

	rsp, body := webGet(t, ctx, srv, "/fetch/live/cam/video")
	if rsp.StatusCode != http.StatusOK || body != groupBytes(3, 2) {
		t.Errorf("latest: %d, %d bytes, want group 3", rsp.StatusCode, len(body))
	}
	if rsp.Header.Get(groupHeader) != "3" || rsp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("latest: headers %v", rsp.Header)
	}
	wantWeb(t, ctx, srv, "/fetch/live/cam/video?group=latest", http.StatusOK, groupBytes(3, 2))
	wantWeb(t, ctx, srv, "/fetch/live/cam/video?group=1", http.StatusOK, groupBytes(1, 4))
	wantWeb(t, ctx, srv, "/fetch/live/cam/video?group=0&frame=chunked", http.StatusOK, groupBytes(0, 3))
	wantWeb(t, ctx, srv, "/fetch/live/cam/video?group=1&frame=2", http.StatusOK, string(frameBytes(1, 2)))
	wantWeb(t, ctx, srv, "/fetch/live/cam/video?frame=1", http.StatusOK, string(frameBytes(3, 1)))

	for _, path := range []string{
		"/fetch/live/cam/video?group=1&frame=4",                    // no such frame
		"/fetch/live/cam/video?group=1&frame=18446744073709551615", // nor that one
		"/fetch/live/cam/video?group=2",                            // a newer group exists without it
		"/fetch/live/cam/audio",                                    // no such track
		"/fetch/live/nobody/video",                                 // no such broadcast
		"/fetch/live/video",                                        // live is no broadcast
	} {
		if rsp, _ := webGet(t, ctx, srv, path); rsp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rsp.StatusCode)
		}
	}
	// A broadcast a peer publishes: its tracks are asked of the peer.
	_, _, remote := publishTrack(t, ctx, srv, "websocket", "live/remote", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/remote")
	writeGroup(t, remote, 4, 2)
	wantWeb(t, ctx, srv, "/fetch/live/remote/video", http.StatusOK, groupBytes(4, 2))
	wantWeb(t, ctx, srv, "/fetch/live/remote/video?group=4&frame=1", http.StatusOK, string(frameBytes(4, 1)))
	if rsp, _ := webGet(t, ctx, srv, "/fetch/live/remote/audio"); rsp.StatusCode != http.StatusNotFound {
		t.Errorf("a track the peer does not have: %d, want 404", rsp.StatusCode)
	}

	long := strings.Repeat("x", DefaultLimits.MaxPathLength+1)
	for path, status := range map[string]int{
		"/fetch/video":                                        http.StatusBadRequest,
		"/fetch/live/cam/":                                    http.StatusBadRequest,
		"/fetch/live/cam/video?group=-1":                      http.StatusBadRequest,
		"/fetch/live/cam/video?group=18446744073709551616":    http.StatusBadRequest,
		"/fetch/live/cam/video?group=1e3":                     http.StatusBadRequest,
		"/fetch/live/cam/video?frame=last":                    http.StatusBadRequest,
		"/fetch/live/../live/cam/video":                       http.StatusBadRequest,
		"/fetch/live/cam/%2E%2E":                              http.StatusBadRequest,
		"/fetch/live/%00/video":                               http.StatusBadRequest,
		"/fetch/" + long + "/video":                           http.StatusRequestURITooLong,
		"/fetch/live/cam/" + long:                             http.StatusRequestURITooLong,
		"/announced/" + long:                                  http.StatusRequestURITooLong,
		"/announced/a/../b":                                   http.StatusBadRequest,
		"/fetch/live/cam/video?group=1&jwt=unused&group=flag": http.StatusOK,
	} {
		if rsp, _ := webGet(t, ctx, srv, path); rsp.StatusCode != status {
			t.Errorf("GET %.60s: %d, want %d", path, rsp.StatusCode, status)
		}
	}
}

// TestWebFetchWaits: a fetch with no group cached yet waits for the first
// one, which here a peer publishes only once the relay asked it for the
// track, that is after the request came in; group=N waits for N likewise;
// nothing within the wait is 504.
func TestWebFetchWaits(t *testing.T) {
	ctx := testContext(t)
	srv := testServer(t, ServerConfig{})

	// The peer's track exists only once asked for, and its first group is
	// written then: the relay cannot have had it before the request.
	pubOrigin := moq.NewOrigin()
	defer pubOrigin.Close()
	bw := moq.NewBroadcast()
	defer bw.Close()
	asked := make(chan *moq.TrackWriter, 4)
	bw.HandleRequests(func(tw *moq.TrackWriter) {
		asked <- tw
		<-tw.Unused()
	})
	if err := pubOrigin.Publish("live/peer", bw.Reader()); err != nil {
		t.Fatal(err)
	}
	dialTest(t, ctx, srv, "webtransport", Lite04, WithPublish(pubOrigin))
	waitAnnounced(t, ctx, srv.Origin(), "live/peer")

	type result struct {
		status int
		body   string
		err    error
	}
	fetch := func(path string) <-chan result {
		done := make(chan result, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.TCPAddr().String()+path, nil)
			rsp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
			if err != nil {
				done <- result{err: err}
				return
			}
			defer rsp.Body.Close()
			body, err := io.ReadAll(rsp.Body)
			done <- result{rsp.StatusCode, string(body), err}
		}()
		return done
	}
	got := fetch("/fetch/live/peer/video")
	var tw *moq.TrackWriter
	select {
	case tw = <-asked:
	case <-ctx.Done():
		t.Fatal("the relay never asked the peer for the track")
	}
	writeGroup(t, tw, 7, 3)
	if r := <-got; r.err != nil || r.status != http.StatusOK || r.body != groupBytes(7, 3) {
		t.Fatalf("waiting fetch: %d, %d bytes, %v; want group 7", r.status, len(r.body), r.err)
	}

	// group=N waits for N on a local track too, and takes it even after
	// lower ones.
	local := publishLocal(t, srv, "live/local", "video")
	writeGroup(t, local, 0, 1)
	got = fetch("/fetch/live/local/video?group=2")
	select {
	case r := <-got:
		t.Fatalf("group 2 answered before it existed: %d %q", r.status, r.body)
	case <-time.After(50 * time.Millisecond):
	}
	writeGroup(t, local, 1, 1)
	writeGroup(t, local, 2, 2)
	if r := <-got; r.err != nil || r.status != http.StatusOK || r.body != groupBytes(2, 2) {
		t.Fatalf("fetch of group 2: %d %q %v", r.status, r.body, r.err)
	}

	srv.fetchWait.Store(int64(100 * time.Millisecond))
	publishLocal(t, srv, "live/empty", "video")
	if r := <-fetch("/fetch/live/empty/video"); r.status != http.StatusGatewayTimeout {
		t.Errorf("no group within the wait: %d, want 504", r.status)
	}
	if r := <-fetch("/fetch/live/local/video?group=9"); r.status != http.StatusGatewayTimeout {
		t.Errorf("group 9 not within the wait: %d, want 504", r.status)
	}
}

// TestWebFetchStreams: the frames of a group still being written go out
// as they come, and a group that breaks off cuts the response so the
// client sees it incomplete rather than a clean end.
func TestWebFetchStreams(t *testing.T) {
	ctx := testContext(t)
	srv := testServer(t, ServerConfig{})
	tw := publishLocal(t, srv, "live/cam", "video")
	gw, err := tw.AppendGroup()
	if err != nil {
		t.Fatal(err)
	}
	_ = gw.WriteFrame(frameBytes(0, 0))

	rsp := webDo(t, ctx, srv, http.MethodGet, "/fetch/live/cam/video")
	defer rsp.Body.Close()
	first := make([]byte, len(frameBytes(0, 0)))
	if _, err := io.ReadFull(rsp.Body, first); err != nil || !bytes.Equal(first, frameBytes(0, 0)) {
		t.Fatalf("first frame of an open group: %v", err)
	}
	_ = gw.WriteFrame(frameBytes(0, 1))
	second := make([]byte, len(frameBytes(0, 1)))
	if _, err := io.ReadFull(rsp.Body, second); err != nil || !bytes.Equal(second, frameBytes(0, 1)) {
		t.Fatalf("second frame, written after the response started: %v", err)
	}
	gw.Abort(errors.New("publisher gone"))
	if rest, err := io.ReadAll(rsp.Body); err == nil {
		t.Fatalf("an aborted group ended the body cleanly (%d more bytes)", len(rest))
	}
}

// TestWebLanding: any other path without a WebSocket upgrade gets a short
// page saying what this is and how to connect, with status 404.
func TestWebLanding(t *testing.T) {
	ctx := testContext(t)
	srv := testServer(t, ServerConfig{})
	host := srv.TCPAddr().String()
	for _, path := range []string{"/", "/live/room", "/fetch"} {
		rsp, body := webGet(t, ctx, srv, path)
		if rsp.StatusCode != http.StatusNotFound || !strings.HasPrefix(rsp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: %d %s", path, rsp.StatusCode, rsp.Header.Get("Content-Type"))
		}
		for _, want := range []string{
			"moqbridge MOQ Lite relay",
			"https://" + host + "/PATH",
			"moql://" + host,
			"ws://" + host + "/PATH",
			"http://" + host + "/certificate.sha256",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s: the page lacks %q:\n%s", path, want, body)
			}
		}
	}
	// The Host header is the client's: it is escaped, never markup (the
	// HTTP server refuses < and > in it already).
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a&b'c\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(conn)
	if !strings.Contains(string(raw), "moql://a&amp;b&#39;c") || strings.Contains(string(raw), "a&b'c") {
		t.Errorf("the Host header is not escaped on the page:\n%s", raw)
	}
	// The fingerprint is still served, and the WebSocket fallback still
	// upgrades on any path.
	_, fp := webGet(t, ctx, srv, "/certificate.sha256")
	want := srv.Fingerprint()
	if fp != hex.EncodeToString(want[:]) {
		t.Errorf("fingerprint %q", fp)
	}
	dialTest(t, ctx, srv, "websocket", Lite04)
}

// TestWebHTTP3: the routes answer plain HTTP/3 requests on the UDP port
// too, beside WebTransport.
func TestWebHTTP3(t *testing.T) {
	ctx := testContext(t)
	srv := testServer(t, ServerConfig{})
	publishLocal(t, srv, "live/alice", "video")
	tr := &http3.Transport{TLSClientConfig: transport.PinnedTLSConfig(srv.Fingerprint())}
	defer tr.Close()
	client := &http.Client{Transport: tr}
	get := func(path string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", srv.Addr().Port, path), nil)
		rsp, err := client.Do(req)
		if err != nil {
			t.Fatalf("HTTP/3 GET %s: %v", path, err)
		}
		defer rsp.Body.Close()
		body, _ := io.ReadAll(rsp.Body)
		return rsp.StatusCode, string(body)
	}
	if status, body := get("/announced/live"); status != http.StatusOK || body != "alice" {
		t.Errorf("HTTP/3 /announced/live: %d %q", status, body)
	}
	if status, body := get("/"); status != http.StatusNotFound || !strings.Contains(body, "moqbridge") {
		t.Errorf("HTTP/3 /: %d %q", status, body)
	}
	fp := srv.Fingerprint()
	if status, body := get("/certificate.sha256"); status != http.StatusOK || body != hex.EncodeToString(fp[:]) {
		t.Errorf("HTTP/3 /certificate.sha256: %d %q", status, body)
	}
}

// TestReloadCertificate: ReloadCertificate serves a new certificate to new
// connections (a client pinning the new fingerprint connects, one pinning
// the old one no longer does) while a session made before goes on; a pair
// that cannot be loaded keeps the certificate and says why.
func TestReloadCertificate(t *testing.T) {
	ctx := testContext(t)
	certFile, keyFile, oldFP := writeTestCert(t)
	srv := testServer(t, ServerConfig{CertFile: certFile, KeyFile: keyFile, TCP: TCPHTTPS})
	if srv.Fingerprint() != oldFP {
		t.Fatal("the server does not present the certificate of its files")
	}
	pubOrigin := moq.NewOrigin()
	defer pubOrigin.Close()
	old := dialTest(t, ctx, srv, "webtransport", Lite04, WithPublish(pubOrigin))

	newCert, newKey, newFP := writeTestCert(t)
	copyFile(t, newCert, certFile)
	copyFile(t, newKey, keyFile)
	if err := srv.ReloadCertificate(); err != nil {
		t.Fatalf("ReloadCertificate: %v", err)
	}
	if srv.Fingerprint() != newFP {
		t.Fatal("Fingerprint did not follow the reload")
	}
	if got := srv.Certificate(); transport.Fingerprint(got) != newFP {
		t.Fatal("Certificate did not follow the reload")
	}
	for _, kind := range []string{"quic", "webtransport", "websocket"} {
		u := strings.Replace(serverURL(srv, kind, ""), "ws://", "wss://", 1)
		s, err := Dial(ctx, u, WithFingerprint(newFP))
		if err != nil {
			t.Fatalf("%s pinning the new certificate: %v", kind, err)
		}
		_ = s.Close()
		if s, err := Dial(ctx, u, WithFingerprint(oldFP)); err == nil {
			_ = s.Close()
			t.Fatalf("%s pinning the old certificate still connects", kind)
		}
	}
	// The fingerprint URL (over HTTPS with the new certificate).
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: transport.PinnedTLSConfig(newFP)}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+srv.TCPAddr().String()+"/certificate.sha256", nil)
	rsp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	client.CloseIdleConnections()
	if string(body) != hex.EncodeToString(newFP[:]) {
		t.Errorf("/certificate.sha256 = %q after the reload", body)
	}

	// The session from before the reload still works both ways.
	select {
	case <-old.Done():
		t.Fatalf("the reload ended an existing session: %v", old.Err())
	default:
	}
	if err := pubOrigin.Publish("live/after", moq.NewBroadcast().Reader()); err != nil {
		t.Fatal(err)
	}
	waitAnnounced(t, ctx, srv.Origin(), "live/after")

	// A broken pair keeps the certificate.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadCertificate(); err == nil || srv.Fingerprint() != newFP {
		t.Fatalf("a broken pair: err %v, fingerprint kept %v", err, srv.Fingerprint() == newFP)
	}
	_ = os.Remove(keyFile)
	if err := srv.ReloadCertificate(); err == nil || !strings.Contains(err.Error(), keyFile) && !strings.Contains(err.Error(), certFile) {
		t.Fatalf("a missing file: %v, want an error naming it", err)
	}
	s, err := Dial(ctx, serverURL(srv, "quic", ""), WithFingerprint(newFP))
	if err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
	_ = s.Close()

	// A generated certificate cannot be reloaded.
	gen := testServer(t, ServerConfig{})
	if err := gen.ReloadCertificate(); err == nil {
		t.Error("ReloadCertificate of a generated certificate succeeded")
	}
	conf := configuredCert(t)
	given := testServer(t, ServerConfig{TLSConfig: conf})
	if err := given.ReloadCertificate(); err == nil {
		t.Error("ReloadCertificate of a ServerConfig.TLSConfig succeeded")
	}
	if given.Fingerprint() != transport.Fingerprint(conf.Certificates[0]) {
		t.Error("the fingerprint of a ServerConfig.TLSConfig is not its certificate's")
	}
	var hello tls.ClientHelloInfo
	if c, err := given.GetCertificate(&hello); err != nil || transport.Fingerprint(*c) != given.Fingerprint() {
		t.Errorf("GetCertificate: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestServerStats: Stats counts sessions by transport, their subscriptions
// and streams while they run, the frames and bytes they moved (which stay
// counted once they end), the broadcasts live and the refusals.
func TestServerStats(t *testing.T) {
	ctx := testContext(t)
	srv := testServer(t, ServerConfig{})
	pub, _, tw := publishTrack(t, ctx, srv, "quic", "live/cam", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/cam")
	sub := dialTest(t, ctx, srv, "websocket", Lite04)
	tr, err := sub.Consume("live/cam").Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	const frames = 5
	writeGroup(t, tw, 0, frames)
	payload := uint64(len(groupBytes(0, frames)))
	gr, err := tr.NextGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range frames {
		if _, err := gr.NextFrame(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Counters move as the relay's goroutines get to them: wait for what
	// must hold, then check the rest.
	waitStats := func(what string, ok func(ServerStats) bool) ServerStats {
		t.Helper()
		for {
			st := srv.Stats()
			if ok(st) {
				return st
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: %+v", what, st)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	st := waitStats("while running", func(st ServerStats) bool {
		return st.FramesSent >= frames && st.BroadcastsAnnounced == 1
	})
	want := TransportCounts{QUIC: 1, WebSocket: 1}
	if st.SessionsActive != want || st.SessionsAccepted != want || st.SessionsActive.Total() != 2 || st.SessionsRefused != 0 {
		t.Errorf("sessions: active %+v, accepted %+v, refused %d", st.SessionsActive, st.SessionsAccepted, st.SessionsRefused)
	}
	if st.FramesReceived != frames || st.FramesSent != frames {
		t.Errorf("frames received %d, sent %d, want %d each", st.FramesReceived, st.FramesSent, frames)
	}
	if st.BytesReceived < payload || st.BytesSent < payload {
		t.Errorf("bytes received %d, sent %d, want at least the %d bytes of payload each way", st.BytesReceived, st.BytesSent, payload)
	}
	if st.SubscriptionsActive != 1 || st.UpstreamSubscriptionsActive != 1 || st.StreamsActive == 0 {
		t.Errorf("subscriptions %d, upstream %d, streams %d; want 1, 1, some", st.SubscriptionsActive, st.UpstreamSubscriptionsActive, st.StreamsActive)
	}

	tr.Close()
	_ = sub.Close()
	_ = pub.Close()
	end := waitStats("after the sessions ended", func(st ServerStats) bool {
		return st.SessionsActive.Total() == 0 && st.BroadcastsAnnounced == 0
	})
	if end.SessionsAccepted != want || end.FramesReceived != frames || end.FramesSent != frames ||
		end.BytesReceived < st.BytesReceived || end.BytesSent < st.BytesSent {
		t.Errorf("the totals of ended sessions were lost: %+v, before %+v", end, st)
	}
	if end.SubscriptionsActive != 0 || end.UpstreamSubscriptionsActive != 0 || end.StreamsActive != 0 {
		t.Errorf("after the end: %+v", end)
	}

	// Refusals: no token, and a browser origin that is not allowed.
	az, _ := testAuthorizer(t)
	strict := testServer(t, ServerConfig{Auth: az, AllowedOrigins: []string{"https://app.example"}})
	for _, kind := range []string{"webtransport", "websocket"} {
		if _, err := Dial(ctx, serverURL(strict, kind, "room"), WithFingerprint(strict.Fingerprint())); err == nil {
			t.Fatalf("%s without a token was let in", kind)
		}
	}
	if _, err := dialWithOrigin(ctx, strict, "websocket", "https://evil.example"); err == nil {
		t.Fatal("a refused origin was let in")
	}
	if got := strict.Stats(); got.SessionsRefused != 3 || got.SessionsAccepted.Total() != 0 {
		t.Errorf("refused %d, accepted %d; want 3, 0", got.SessionsRefused, got.SessionsAccepted.Total())
	}
}

// testContext is a context for one test, bounded so a hang fails it.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

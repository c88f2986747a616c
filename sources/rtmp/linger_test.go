package rtmp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

// testPublisher is a gortmplib client publishing generated H.264 and AAC
// at 10 frames a second of media time, as fast as it can.
type testPublisher struct {
	c            *gortmplib.Client
	w            *gortmplib.Writer
	video, audio *gortmplib.Track
}

func newTestPublisher(ctx context.Context, t testing.TB, u *url.URL, tlsConfig *tls.Config) (*testPublisher, error) {
	t.Helper()
	sps, _ := hex.DecodeString("6742c00dd90141fb0110000003001000000303c0f142a480")
	pps, _ := hex.DecodeString("68cb83cb20")
	c := &gortmplib.Client{URL: u, Publish: true, TLSConfig: tlsConfig}
	if err := c.Initialize(ctx); err != nil {
		return nil, err
	}
	p := &testPublisher{c: c,
		video: &gortmplib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}},
		audio: &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: &mpeg4audio.AudioSpecificConfig{
			Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 2}}},
	}
	p.w = &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{p.video, p.audio}}
	if err := p.w.Initialize(); err != nil {
		c.Close()
		return nil, err
	}
	return p, nil
}

// send writes frames from..to-1 (RTMP time i×100 ms plus base), a
// keyframe every 10; every frame's first payload byte is its number.
func (p *testPublisher) send(base time.Duration, from, to int) error {
	for i := from; i < to; i++ {
		ts := base + time.Duration(i)*100*time.Millisecond
		nalType := byte(0x41)
		if i%10 == 0 {
			nalType = 0x65
		}
		if err := p.w.WriteH264(p.video, ts, ts, [][]byte{{nalType, byte(i), 0x88, 0x84}}); err != nil {
			return err
		}
		if err := p.w.WriteMPEG4Audio(p.audio, ts, []byte{0x21, byte(i), 0x10}); err != nil {
			return err
		}
	}
	return nil
}

// trackLog is what a reader saw of one track.
type trackLog struct {
	mu     sync.Mutex
	pts    []time.Duration
	ids    []byte // the number the publisher gave each frame
	discon int
	stats  sdk.TrackStats
	err    error
}

func (l *trackLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pts)
}

// follow reads the broadcast at path from its oldest group on: every
// track, to its end. It returns at once; done is closed when the
// broadcast ended and every track was read.
func follow(ctx context.Context, t testing.TB, srv *testServer, path string) (logs map[string]*trackLog, catalogs *[]int, done chan error) {
	t.Helper()
	logs = map[string]*trackLog{}
	var ntracks []int
	catalogs = &ntracks
	done = make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- sdk.Consume(ctx, srv.origin, path, sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
			if err := r.WaitTracks(ctx, 300*time.Millisecond); err != nil {
				return err
			}
			var wg sync.WaitGroup
			for _, tr := range r.Tracks() {
				sub, err := r.Subscribe(tr.Name)
				if err != nil {
					return err
				}
				l := &trackLog{}
				logs[tr.Name] = l
				wg.Go(func() {
					defer sub.Close()
					for {
						f, err := sub.ReadFrame(ctx)
						l.mu.Lock()
						if err != nil {
							l.err, l.stats = err, sub.Stats()
							l.mu.Unlock()
							return
						}
						if f.Discontinuity {
							l.discon++
						}
						l.pts = append(l.pts, f.PTS)
						id := f.Payload[1] // audio: 0x21, id, …
						if tr.Kind == sdk.KindVideo {
							id = f.Payload[5] // 4-byte length, NAL header, id, …
						}
						l.ids = append(l.ids, id)
						l.mu.Unlock()
					}
				})
			}
			close(ready)
			wg.Wait()
			ntracks = append(ntracks, len(r.Tracks()))
			return nil
		}), sdk.ConsumeOptions{Wait: 10 * time.Second})
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		t.Fatal("the reader did not subscribe")
	}
	return logs, catalogs, done
}

func waitCount(ctx context.Context, t testing.TB, l *trackLog, n int) {
	t.Helper()
	for l.count() < n {
		if ctx.Err() != nil {
			t.Fatalf("%d frames read, want %d", l.count(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLingerContinues: a publisher drops and returns with the same stream
// key within the linger window, its encoder restarted (timestamps from 0
// again). A reader subscribed all along gets every frame of both on the
// same subscriptions, without a discontinuity or a skipped group, the
// presentation times going on one frame after the first's last, and the
// catalog unchanged; when the publisher drops for good
// the broadcast ends after the linger window.
func TestLingerContinues(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	srv := startServer(t, Config{Linger: 2 * time.Second})
	u, _ := url.Parse(srv.url + "/live#cont")

	pub, err := newTestPublisher(ctx, t, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.send(0, 0, 30); err != nil {
		t.Fatal(err)
	}
	logs, catalogs, done := follow(ctx, t, srv, "live/cont")
	if len(logs) != 2 {
		t.Fatalf("%d tracks, want 2", len(logs))
	}
	for _, l := range logs {
		waitCount(ctx, t, l, 30)
	}
	pub.c.Close()
	srv.log.WaitLog(t, 5*time.Second, "rtmp: publisher gone; the broadcast waits for it to return", "path=live/cont")
	time.Sleep(300 * time.Millisecond)

	pub, err = newTestPublisher(ctx, t, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.send(0, 30, 60); err != nil { // frame numbers go on; RTMP time restarts at 3 s
		t.Fatal(err)
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: publisher returned; the broadcast continues", "path=live/cont")
	for _, l := range logs {
		waitCount(ctx, t, l, 60)
	}
	pub.c.Close()
	srv.log.WaitLog(t, 10*time.Second, "rtmp: broadcast ended: its publisher did not return", "path=live/cont")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for name, l := range logs {
		if len(l.pts) != 60 || l.discon != 0 || l.stats.Skipped != 0 || l.stats.Truncated != 0 {
			t.Errorf("%s: %d frames, %d discontinuities, %+v; want 60 and none", name, len(l.pts), l.discon, l.stats)
		}
		for i := range l.ids {
			if int(l.ids[i]) != i {
				t.Errorf("%s: frame %d is frame %d of the publishers", name, i, l.ids[i])
				break
			}
		}
		for i := 1; i < len(l.pts); i++ {
			if l.pts[i] <= l.pts[i-1] {
				t.Errorf("%s: frame %d at %v after %v", name, i, l.pts[i], l.pts[i-1])
			}
		}
		if len(l.pts) == 60 {
			// The second publisher's frames follow the first's without a
			// hole: one frame step, 100 ms (audio: on its 1024-sample grid).
			if gap := l.pts[30] - l.pts[29]; gap < 95*time.Millisecond || gap > 105*time.Millisecond {
				t.Errorf("%s: %v between the publishers' frames, want one frame step (100ms)", name, gap)
			}
		}
		if !errors.Is(l.err, io.EOF) {
			t.Errorf("%s ended with %v, want the end of the track", name, l.err)
		}
	}
	if video := logs["video0"]; video != nil && video.stats.Groups != 6 {
		t.Errorf("video: %d groups, want 6", video.stats.Groups)
	}
	if len(*catalogs) != 1 || (*catalogs)[0] != 2 {
		t.Errorf("catalog track counts at the end %v, want [2]", *catalogs)
	}
}

// TestLingerOtherKey: with a path template without the key, a publisher
// with another stream key at a lingering path does not continue it: the
// lingering broadcast ends and a new one starts.
func TestLingerOtherKey(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	srv := startServer(t, Config{PathTemplate: "{app}", Linger: 10 * time.Second})
	u, _ := url.Parse(srv.url + "/studio#first")
	pub, err := newTestPublisher(ctx, t, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.send(0, 0, 10); err != nil {
		t.Fatal(err)
	}
	_, _, done := follow(ctx, t, srv, "studio")
	pub.c.Close()
	srv.log.WaitLog(t, 5*time.Second, "rtmp: publisher gone", "path=studio")
	u, _ = url.Parse(srv.url + "/studio#second")
	pub, err = newTestPublisher(ctx, t, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.c.Close()
	select {
	case err := <-done: // the first broadcast ended
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the lingering broadcast did not end when another key published")
	}
	if strings.Contains(srv.log.String(), "publisher returned") {
		t.Error("another key continued the broadcast")
	}
}

// TestReplace: with Replace, a second publisher with the same key takes
// over: the first one's connection is closed, and the broadcast goes on
// with the second one's frames, on the same subscriptions.
func TestReplace(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	srv := startServer(t, Config{Replace: true, Linger: -1})
	u, _ := url.Parse(srv.url + "/live#r")
	first, err := newTestPublisher(ctx, t, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.c.Close()
	if err := first.send(0, 0, 20); err != nil {
		t.Fatal(err)
	}
	logs, _, done := follow(ctx, t, srv, "live/r")
	for _, l := range logs {
		waitCount(ctx, t, l, 20)
	}
	second, err := newTestPublisher(ctx, t, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: a new publisher replaces the live one", "path=live/r")
	if err := second.send(0, 20, 40); err != nil {
		t.Fatal(err)
	}
	for _, l := range logs {
		waitCount(ctx, t, l, 40)
	}
	// The first publisher's connection is closed: what it sends fails
	// sooner or later.
	deadline := time.Now().Add(5 * time.Second)
	for first.send(0, 0, 1) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the replaced publisher's connection stays open")
		}
		time.Sleep(20 * time.Millisecond)
	}
	second.c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for name, l := range logs {
		if len(l.pts) != 40 || l.discon != 0 || l.stats.Skipped != 0 {
			t.Errorf("%s: %d frames, %d discontinuities, %+v; want 40 and none", name, len(l.pts), l.discon, l.stats)
		}
	}
}

// TestKeyRules: per-path key rules allow a key at the paths their pattern
// matches only; Authorize decides on the rest (here: a token in the
// key's query), and may choose the path; its refusal is logged.
func TestKeyRules(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	srv := startServer(t, Config{
		PathTemplate: "{app}",
		KeyRules:     []KeyRule{{Pattern: "team/*", Keys: []string{"k1"}}},
		Authorize: func(req PublishRequest) (string, error) {
			if req.Query.Get("jwt") != "good" {
				return "", errors.New("bad token")
			}
			return "granted/" + req.Key, nil
		},
	})
	try := func(app, key string) error {
		u, _ := url.Parse(srv.url + "/" + app + "#" + key)
		c := &gortmplib.Client{URL: u, Publish: true}
		if err := c.Initialize(ctx); err != nil {
			return err
		}
		c.Close()
		return nil
	}
	if err := try("team/a", "k1"); err != nil {
		t.Errorf("k1 at team/a: %v", err)
	}
	srv.log.WaitLog(t, 5*time.Second, "path=team/a")
	if err := try("other", "k1"); err == nil {
		t.Error("k1 was accepted at a path its rule does not match")
	}
	srv.log.WaitLog(t, 5*time.Second, "rtmp: refused: bad token", "app=other")
	if err := try("other", "alice?jwt=good"); err != nil {
		t.Errorf("a good token was refused: %v", err)
	}
	srv.log.WaitLog(t, 5*time.Second, "path=granted/alice")
	if strings.Contains(srv.log.String(), "jwt=") {
		t.Errorf("a token reached the log:\n%s", srv.log.String())
	}
	if err := (KeyRule{Pattern: "[", Keys: []string{"x"}}).Validate(); err == nil {
		t.Error("a malformed pattern was accepted")
	}
}

// TestRTMPS: with a TLS configuration the server speaks RTMPS; a
// publisher over TLS gets its broadcast, one without TLS gets nothing.
func TestRTMPS(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	cert := selfSigned(t)
	srv := startServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	u, _ := url.Parse(strings.Replace(srv.url, "rtmp://", "rtmps://", 1) + "/live#tls")
	pub, err := newTestPublisher(ctx, t, u, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.send(0, 0, 10); err != nil {
		t.Fatal(err)
	}
	logs, _, done := follow(ctx, t, srv, "live/tls")
	for _, l := range logs {
		waitCount(ctx, t, l, 10)
	}
	pub.c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	srv.log.WaitLog(t, time.Second, "scheme=rtmps")

	plain, _ := url.Parse(srv.url + "/live#plain")
	c := &gortmplib.Client{URL: plain, Publish: true}
	if err := c.Initialize(ctx); err == nil {
		c.Close()
		t.Error("a plain RTMP client was served by the RTMPS server")
	}
}

// selfSigned returns a certificate for 127.0.0.1.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

package rtmpbench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"math/big"
	"net"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// latencyConfig is one latency run: what is published, for how long,
// and from which media time on frames are measured (gortmplib, in the
// relay, holds the first 2 s of a publish while it analyses the tracks,
// then replays them at once: those frames are late by design).
type latencyConfig struct {
	rtmpAddr string   // the relay's RTMP address
	moqURL   string   // its MOQ address, moql://…
	fp       [32]byte // its certificate
	path     string   // the broadcast: app/key
	media    *media
	length   time.Duration // media sent (at most one loop of media)
	warmup   time.Duration // frames before this media time are not measured
	speed    float64       // pace relative to real time (0: real time)
}

// latencyResult holds the per-frame figures of a run, by video frame
// index in the stream.
type latencyResult struct {
	sent      int                   // video access units published
	measured  map[int]time.Duration // publish → receive, frames from warmup on
	key       map[int]bool          // which of them are keyframes
	missing   int                   // frames from warmup on that never arrived
	corrupt   int                   // frames that arrived altered
	unmatched int                   // frames whose timestamp matches no frame sent
	sizes     map[int]int           // relayed payload size of each measured frame
	maxLate   time.Duration         // the publisher's worst delay against its schedule
}

// videoIndex maps a timestamp from the stream's first video decode time
// to a video frame index on the frame grid.
func videoIndex(pts, frameDur time.Duration) int {
	return int(math.Round(float64(pts) / float64(frameDur)))
}

var frameSeed = maphash.MakeSeed()

// measureLatency publishes cfg.media's video over RTMP into the relay
// and receives it from the relay over MOQ, in this process: for each
// video access unit the time just before it is written on the RTMP
// connection and the time the MOQ subscriber's ReadFrame returns it.
// Frames are matched by timestamp and checked byte for byte (the hang
// payload the relay makes of the access unit).
func measureLatency(ctx context.Context, cfg latencyConfig) (latencyResult, error) {
	m := cfg.media
	res := latencyResult{measured: make(map[int]time.Duration), key: make(map[int]bool), sizes: make(map[int]int)}
	// What each video frame should arrive as, by frame index.
	var first time.Duration = -1
	type want struct {
		sum  uint64
		size int
		key  bool
		pts  time.Duration
	}
	wants := make(map[int]want)
	sampleFrame := make(map[int]int) // sample index → frame index
	for i, s := range m.samples {
		if !s.video {
			continue
		}
		if first < 0 {
			first = s.dts
		}
		p := relayedPayload(s.nalus)
		idx := videoIndex(s.pts-first, m.frameDur)
		if _, dup := wants[idx]; dup {
			return res, fmt.Errorf("two video frames at index %d", idx)
		}
		wants[idx] = want{maphash.Bytes(frameSeed, p), len(p), isIDR(s.nalus), s.pts - first}
		sampleFrame[i] = idx
	}
	sentAt := make(map[int]time.Time, len(wants))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	origin := moq.NewOrigin()
	defer origin.Close()
	sess, err := protocol.Dial(ctx, cfg.moqURL, protocol.WithFingerprint(cfg.fp), protocol.WithConsume(origin),
		protocol.WithAnnounceInterest(cfg.path))
	if err != nil {
		return res, fmt.Errorf("MOQ subscriber: %w", err)
	}
	defer sess.Close()

	type arrival struct {
		at  time.Time
		pts time.Duration
		sum uint64
	}
	var arrivals []arrival
	var lastArrival atomic.Int64 // UnixNano
	lastArrival.Store(time.Now().UnixNano())
	subscribed := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		// From the oldest group: however late the subscription, no frame
		// is missed (those before warmup are not measured).
		subscribed <- subscribe(ctx, origin, cfg.path, moq.FromOldest, func(f sdk.Frame) {
			now := time.Now()
			arrivals = append(arrivals, arrival{now, f.PTS, maphash.Bytes(frameSeed, f.Payload)})
			lastArrival.Store(now.UnixNano())
		})
	})
	var pub pubStats
	pub, err = publishRTMP(ctx, cfg.rtmpAddr, path.Dir(cfg.path), path.Base(cfg.path), m, pubOptions{
		videoOnly: true, length: cfg.length, speed: cfg.speed,
		sent: func(loop, i int, _, _ time.Duration, at time.Time) {
			if loop == 0 {
				sentAt[sampleFrame[i]] = at
			}
		},
	})
	res.sent = pub.video
	res.maxLate = pub.maxLate
	if err != nil {
		cancel()
		wg.Wait()
		return res, err
	}
	// The publisher has disconnected. Its broadcast ends, at once or
	// after the relay's linger for a publisher that comes back; the run
	// is over when the track ended or nothing arrived for a second.
	var serr error
	deadline := time.After(processTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case serr = <-subscribed:
			break wait
		case <-deadline:
			serr = errors.New("MOQ subscriber: frames still arriving long after the publisher left")
			break wait
		case <-tick.C:
			if time.Since(time.Unix(0, lastArrival.Load())) > time.Second {
				break wait
			}
		}
	}
	cancel()
	wg.Wait()
	if serr != nil && !errors.Is(serr, context.Canceled) {
		return res, serr
	}
	got := make(map[int]bool)
	for _, a := range arrivals {
		idx := videoIndex(a.pts, m.frameDur)
		w, ok := wants[idx]
		sent, wasSent := sentAt[idx]
		switch {
		case !ok || !wasSent:
			res.unmatched++
			continue
		case w.sum != a.sum:
			res.corrupt++
			continue
		}
		got[idx] = true
		if w.pts >= cfg.warmup {
			res.measured[idx] = a.at.Sub(sent)
			res.key[idx] = w.key
			res.sizes[idx] = w.size
		}
	}
	for idx := range sentAt {
		if wants[idx].pts >= cfg.warmup && !got[idx] {
			res.missing++
		}
	}
	return res, nil
}

// subscribe waits for the broadcast at path in origin, subscribes to its
// video track from the group from (the oldest the relay holds, or the
// latest) and hands every frame to fn until the track ends (nil) or ctx
// ends.
func subscribe(ctx context.Context, origin *moq.Origin, path string, from moq.StartPoint, fn func(sdk.Frame)) error {
	b, err := sdk.WaitBroadcast(ctx, origin, path, processTimeout)
	if err != nil {
		return fmt.Errorf("MOQ subscriber: %s: %w", path, err)
	}
	r, err := sdk.NewBroadcastReaderFrom(b, from)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.WaitCatalog(ctx); err != nil {
		return fmt.Errorf("MOQ subscriber: %s catalog: %w", path, err)
	}
	var name string
	for _, t := range r.Tracks() {
		if t.Kind == sdk.KindVideo {
			name = t.Name
			break
		}
	}
	if name == "" {
		return fmt.Errorf("MOQ subscriber: %s has no video track", path)
	}
	tr, err := r.Subscribe(name)
	if err != nil {
		return err
	}
	defer tr.Close()
	for {
		f, err := tr.ReadFrame(ctx)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("MOQ subscriber: %s: %w", path, err)
		}
		fn(f)
	}
}

// tcpBaseline writes, paced as the publisher writes the access units, one
// message of each measured frame's size (with an 8-byte header) over a
// TCP connection on 127.0.0.1, and measures for each the time from just
// before the write to the reader having read all of it: the bare
// loopback network the RTMP hop crosses.
func tcpBaseline(ctx context.Context, m *media, sizes map[int]int) (map[int]time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	peer, err := ln.Accept() // the kernel completed the handshake
	if err != nil {
		return nil, err
	}
	defer peer.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close(); _ = peer.Close() })
	defer stop()
	return oneWay(ctx, m, sizes, c, func() (io.Reader, error) { return peer, nil })
}

// quicBaseline does what tcpBaseline does over one QUIC stream on
// 127.0.0.1 (quic-go, TLS 1.3 with a self-signed certificate, the
// default configuration): the bare network of the hop from the relay to
// the MOQ subscriber.
func quicBaseline(ctx context.Context, m *media, sizes map[int]int) (map[int]time.Duration, error) {
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"rtmpbench"}}, nil)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"rtmpbench"}}, nil)
	if err != nil {
		return nil, err
	}
	defer conn.CloseWithError(0, "")
	peer, err := ln.Accept(ctx)
	if err != nil {
		return nil, err
	}
	defer peer.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return oneWay(ctx, m, sizes, st, func() (io.Reader, error) { return peer.AcceptStream(ctx) })
}

// oneWay writes the measured frames' sizes to w paced as the publisher
// writes them (in real time, decode order), each as an 8-byte header
// (frame index, size) and that many bytes, while another goroutine reads
// them from the reader accept returns; it returns each frame's time from
// just before its write to the end of its read.
func oneWay(ctx context.Context, m *media, sizes map[int]int, w io.Writer, accept func() (io.Reader, error)) (map[int]time.Duration, error) {
	type msg struct {
		idx int
		at  time.Duration // due, from the first
	}
	var first time.Duration = -1
	var plan []msg
	for _, s := range m.samples {
		if !s.video {
			continue
		}
		if first < 0 {
			first = s.dts
		}
		idx := videoIndex(s.pts-first, m.frameDur)
		if _, ok := sizes[idx]; ok {
			plan = append(plan, msg{idx, s.dts - first})
		}
	}
	if len(plan) == 0 {
		return nil, errors.New("nothing to measure")
	}
	for i := len(plan) - 1; i >= 0; i-- {
		plan[i].at -= plan[0].at
	}
	received := make(chan error, 1)
	arrived := make(map[int]time.Time, len(plan))
	go func() {
		received <- func() error {
			r, err := accept()
			if err != nil {
				return err
			}
			buf := make([]byte, 1<<20)
			for range plan {
				var hdr [8]byte
				if _, err := io.ReadFull(r, hdr[:]); err != nil {
					return err
				}
				idx, n := int(binary.BigEndian.Uint32(hdr[:4])), int(binary.BigEndian.Uint32(hdr[4:]))
				if n > len(buf) {
					buf = make([]byte, n)
				}
				if _, err := io.ReadFull(r, buf[:n]); err != nil {
					return err
				}
				arrived[idx] = time.Now()
			}
			return nil
		}()
	}()
	sent := make(map[int]time.Time, len(plan))
	out := make([]byte, 0, 1<<20)
	start := time.Now()
	for _, p := range plan {
		if d := time.Until(start.Add(p.at)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				<-received
				return nil, ctx.Err()
			}
		}
		n := sizes[p.idx]
		out = binary.BigEndian.AppendUint32(out[:0], uint32(p.idx))
		out = binary.BigEndian.AppendUint32(out, uint32(n))
		out = append(out, make([]byte, n)...)
		sent[p.idx] = time.Now()
		if _, err := w.Write(out); err != nil {
			<-received
			return nil, err
		}
	}
	if err := <-received; err != nil {
		return nil, err
	}
	lat := make(map[int]time.Duration, len(plan))
	for idx, at := range arrived {
		lat[idx] = at.Sub(sent[idx])
	}
	return lat, nil
}

// selfSigned makes an ECDSA P-256 certificate for 127.0.0.1.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// isIDR reports whether an access unit holds an IDR slice.
func isIDR(nalus [][]byte) bool {
	for _, n := range nalus {
		if len(n) > 0 && n[0]&0x1f == 5 {
			return true
		}
	}
	return false
}

// percentile is the p-quantile (nearest rank) of d, which it sorts.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(math.Ceil(p*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

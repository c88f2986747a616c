package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/okdaichi/gomoqt/moqt"
)

// What the publisher publishes and the subscribers subscribe to, as in the
// harness (gomoqt paths start with a slash).
const (
	broadcastPath = moqt.BroadcastPath("/bench/live")
	trackName     = moqt.TrackName("video")
	trackPriority = 128
)

// The harness' dial concurrency and join timeout.
const (
	dialConcurrency = 8
	joinTimeout     = 30 * time.Second
	closeTimeout    = 5 * time.Second
)

// peerStats answers "begin", "end" and "stats": the counters of the
// harness (bench/stats.go), when they were read, and this process's CPU
// time and RSS; "end" adds the publish→receive latencies recorded since
// "begin", in nanoseconds.
type peerStats struct {
	At              int64   `json:"at_ns"` // when the counters were read, Unix ns
	CPU             int64   `json:"cpu_ns"`
	PeakRSS         uint64  `json:"rss_peak"` // since the previous request
	PublishedFrames uint64  `json:"published_frames"`
	PublishedBytes  uint64  `json:"published_bytes"`
	Frames          uint64  `json:"frames"`
	Bytes           uint64  `json:"bytes"`
	Groups          uint64  `json:"groups"`
	Incomplete      uint64  `json:"incomplete"`
	Corrupt         uint64  `json:"corrupt"`
	Latencies       []int64 `json:"latencies_ns,omitempty"`
}

// joinedMsg is the first line the peers child writes: every subscriber
// has received a frame.
type joinedMsg struct {
	Joined int `json:"joined"`
}

type counters struct {
	publishedFrames, publishedBytes atomic.Uint64
	frames, bytes                   atomic.Uint64
	groups, incomplete              atomic.Uint64
	corrupt                         atomic.Uint64
	joined                          atomic.Int64

	mu        sync.Mutex
	recording bool
	samples   []int64
}

func (c *counters) published(n int) {
	c.publishedFrames.Add(1)
	c.publishedBytes.Add(uint64(n))
}

func (c *counters) received(l Load, p []byte, seq uint64, idx int) {
	now := time.Now()
	sent, ok := l.check(p, seq, idx)
	if !ok {
		c.corrupt.Add(1)
		return
	}
	c.frames.Add(1)
	c.bytes.Add(uint64(len(p)))
	c.mu.Lock()
	if c.recording {
		c.samples = append(c.samples, int64(now.Sub(sent)))
	}
	c.mu.Unlock()
}

func (c *counters) groupEnded(complete bool) {
	if complete {
		c.groups.Add(1)
	} else {
		c.incomplete.Add(1)
	}
}

func (c *counters) stats() peerStats {
	return peerStats{
		At:              time.Now().UnixNano(),
		CPU:             int64(processCPU()),
		PeakRSS:         residentPeak(true),
		PublishedFrames: c.publishedFrames.Load(),
		PublishedBytes:  c.publishedBytes.Load(),
		Frames:          c.frames.Load(),
		Bytes:           c.bytes.Load(),
		Groups:          c.groups.Load(),
		Incomplete:      c.incomplete.Load(),
		Corrupt:         c.corrupt.Load(),
	}
}

// record turns latency recording on or off and returns what was recorded.
func (c *counters) record(on bool) []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.samples
	c.recording, c.samples = on, nil
	return s
}

type peers struct {
	l      Load
	addr   string
	fp     [32]byte
	c      counters
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	sess    []*moqt.Session
	readers []*moqt.TrackReader
}

func runPeers(args []string) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	addr := fs.String("addr", "", "relay UDP address")
	fpHex := fs.String("fingerprint", "", "hex SHA-256 of the relay certificate")
	subs := fs.Int("subs", 1, "subscribers")
	var l Load
	fs.IntVar(&l.FrameSize, "frame", 0, "frame size")
	fs.IntVar(&l.KeyframeSize, "keyframe", 0, "first frame of a group, size")
	fs.IntVar(&l.FramesPerGroup, "group", 0, "frames per group")
	fs.IntVar(&l.FPS, "fps", 0, "frames per second, 0 for as fast as the relay takes them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fp, err := hex.DecodeString(*fpHex)
	if err != nil || len(fp) != 32 {
		return fmt.Errorf("bad fingerprint %q", *fpHex)
	}
	if l.FrameSize < frameHeaderSize || l.KeyframeSize < frameHeaderSize || l.FramesPerGroup < 1 ||
		l.FrameSize > maxFrameSize || l.KeyframeSize > maxFrameSize {
		return fmt.Errorf("bad load %+v", l)
	}
	p := &peers{l: l, addr: *addr}
	copy(p.fp[:], fp)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	defer p.close()

	start, cancel := context.WithTimeout(p.ctx, joinTimeout+time.Minute)
	defer cancel()
	if err := p.startPublisher(start); err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	if err := p.startSubscribers(start, *subs); err != nil {
		return fmt.Errorf("subscribers: %w", err)
	}
	if err := p.waitJoined(start, *subs); err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(joinedMsg{Joined: *subs}); err != nil {
		return err
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var st peerStats
		switch sc.Text() {
		case "begin":
			p.c.record(true)
			st = p.c.stats()
		case "end":
			st = p.c.stats()
			st.Latencies = p.c.record(false)
		case "stats":
			st = p.c.stats()
		default:
			return fmt.Errorf("unknown command %q", sc.Text())
		}
		if err := enc.Encode(st); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (p *peers) client() *moqt.Client {
	return &moqt.Client{TLSConfig: pinnedTLS(p.fp, moqt.NextProtoMOQ), QUICConfig: quicConfig(), Logger: logger}
}

func (p *peers) keep(s *moqt.Session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return false
	}
	p.sess = append(p.sess, s)
	return true
}

// startPublisher connects a session whose own mux publishes the track; the
// relay asks it for its announcements and subscribes when the first
// subscriber asks for the track.
func (p *peers) startPublisher(ctx context.Context) error {
	mux := moqt.NewTrackMux()
	mux.PublishFunc(p.ctx, broadcastPath, func(tw *moqt.TrackWriter) {
		if tw.TrackName != trackName {
			tw.CloseWithError(moqt.TrackNotFoundErrorCode)
			return
		}
		p.publish(tw)
	})
	sess, err := p.client().DialQUIC(ctx, p.addr, "/", mux)
	if err != nil {
		return err
	}
	if !p.keep(sess) {
		_ = sess.CloseWithError(moqt.NoError, "")
		return context.Canceled
	}
	return nil
}

// publish writes the load into tw until the run ends, one group stream per
// group; a write blocks in QUIC flow control while the relay is busy.
func (p *peers) publish(tw *moqt.TrackWriter) {
	if tw.WriteInfo(moqt.Info{}) != nil {
		return
	}
	pace := newPacer(p.l)
	defer pace.stop()
	buf := make([]byte, max(p.l.FrameSize, p.l.KeyframeSize))
	frame := moqt.NewFrame(len(buf))
	for seq := uint64(0); p.ctx.Err() == nil; seq++ {
		gw, err := tw.OpenGroupAt(moqt.GroupSequence(seq))
		if err != nil {
			return
		}
		for idx := range p.l.FramesPerGroup {
			if !pace.wait(p.ctx) {
				gw.CancelWrite(moqt.PublishAbortedErrorCode)
				return
			}
			n := p.l.frameSize(idx)
			stamp(buf[:n], seq, idx, time.Now())
			frame.Reset()
			_, _ = frame.Write(buf[:n])
			if err := gw.WriteFrame(frame); err != nil {
				return
			}
			p.c.published(n)
		}
		_ = gw.Close()
	}
}

func (p *peers) startSubscribers(ctx context.Context, n int) error {
	sem := make(chan struct{}, dialConcurrency)
	errs := make(chan error, n)
	var dials sync.WaitGroup
	for range n {
		dials.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- p.addSubscriber(ctx)
		})
	}
	dials.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// addSubscriber connects a session with an empty mux, waits until the
// relay announces the broadcast and subscribes to the track.
func (p *peers) addSubscriber(ctx context.Context) error {
	sess, err := p.client().DialQUIC(ctx, p.addr, "/", moqt.NewTrackMux())
	if err != nil {
		return err
	}
	if !p.keep(sess) {
		_ = sess.CloseWithError(moqt.NoError, "")
		return context.Canceled
	}
	ar, err := sess.AcceptAnnounce("/")
	if err != nil {
		return err
	}
	defer ar.Close()
	for {
		ann, err := ar.ReceiveAnnouncement(ctx)
		if err != nil {
			return err
		}
		if ann.BroadcastPath() == broadcastPath {
			break
		}
	}
	tr, err := sess.Subscribe(broadcastPath, trackName, &moqt.TrackConfig{TrackPriority: trackPriority})
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.readers = append(p.readers, tr)
	p.mu.Unlock()
	p.wg.Go(func() { p.read(tr) })
	return nil
}

// frames are the subscribers' read buffers, pooled as the harness pools
// its bare subscribers' ones.
var frames = sync.Pool{New: func() any { return moqt.NewFrame(0) }}

// read reads every group as it arrives, each on its own goroutine, until
// the run ends.
func (p *peers) read(tr *moqt.TrackReader) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var first sync.Once
	for {
		gr, err := tr.AcceptGroup(p.ctx)
		if err != nil {
			return
		}
		wg.Go(func() {
			f := frames.Get().(*moqt.Frame)
			defer frames.Put(f)
			seq := uint64(gr.GroupSequence())
			for idx := 0; ; idx++ {
				if err := gr.ReadFrame(f); err != nil {
					if p.ctx.Err() == nil {
						p.c.groupEnded(errors.Is(err, io.EOF) && idx == p.l.FramesPerGroup)
					}
					return
				}
				first.Do(func() { p.c.joined.Add(1) })
				p.c.received(p.l, f.Body(), seq, idx)
			}
		})
	}
}

func (p *peers) waitJoined(ctx context.Context, n int) error {
	deadline := time.NewTimer(joinTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for p.c.joined.Load() < int64(n) {
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("only %d of %d subscribers received a frame within %v", p.c.joined.Load(), n, joinTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// close ends the run: subscriptions, then sessions (which ends the reads
// that do not watch the context); it gives up waiting after closeTimeout.
func (p *peers) close() {
	p.cancel()
	p.mu.Lock()
	sess, readers := p.sess, p.readers
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for _, tr := range readers {
			_ = tr.Close()
		}
		for _, s := range sess {
			_ = s.CloseWithError(moqt.NoError, "")
		}
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeTimeout):
	}
}

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/okdaichi/gomoqt/moqt"
	"github.com/okdaichi/gomoqt/quic/quicgo"
)

// The relay: gomoqt v0.9.0 has no relay of its own, only the library and
// an example relay (examples/relay/server). This is that example's design
// (one upstream subscription per track, opened when the first subscriber
// asks for it; one goroutine reads each group and writes every frame to
// every subscriber's group stream in turn; no overload policy: a
// subscriber that does not take data holds back the track, through QUIC
// flow control, down to the publisher) with what it needs to forward every
// group whole: groups keep the publisher's sequence (OpenGroupAt), a group
// stream ends with FIN when the upstream group does (or is reset when the
// upstream one is), and SUBSCRIBE_OK goes out when a subscriber is added
// rather than with its first group. The example's late-join cache, which
// keeps one frame object for every cached frame, is left out: a subscriber
// starts with the next group.

// relayStats is the harness' RelayStats.
type relayStats struct {
	CPU           int64  `json:"cpu_ns"`
	Mallocs       uint64 `json:"mallocs"`
	HeapAlloc     uint64 `json:"heap_alloc"`
	GroupsSent    uint64 `json:"groups_sent"`
	GroupsDropped uint64 `json:"groups_dropped"`
	RSS           uint64 `json:"rss"`
	PeakRSS       uint64 `json:"rss_peak"` // since the previous request
}

type readyMsg struct {
	Addr        string `json:"addr"`
	Fingerprint string `json:"fingerprint"`
}

type relay struct {
	srv  *moqt.Server
	mux  *moqt.TrackMux
	done chan struct{}

	groupsSent, groupsDropped atomic.Uint64
}

func runRelay() error {
	prof, err := startProfile("gomoqt-relay")
	if err != nil {
		return err
	}
	defer prof.stop()
	cert, fp, err := selfSigned()
	if err != nil {
		return err
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{moqt.NextProtoMOQ},
		MinVersion:   tls.VersionTLS13,
	}
	// gomoqt's own listener (quic-go's early listener, as
	// Server.ListenAndServe makes), created here to learn its port.
	ln, err := quicgo.ListenAddrEarly("127.0.0.1:0", tlsConf, quicConfig())
	if err != nil {
		return err
	}
	r := &relay{mux: moqt.NewTrackMux(), done: make(chan struct{})}
	r.srv = &moqt.Server{
		Addr:         ln.Addr().String(),
		TLSConfig:    tlsConf,
		QUICConfig:   quicConfig(),
		SetupHandler: moqt.SetupHandlerFunc(r.serveSession),
		Logger:       logger,
	}
	go func() {
		defer close(r.done)
		_ = r.srv.ServeQUICListener(ln)
	}()
	defer r.close()

	return serveControl(ln.Addr().String(), fp, prof, func() (uint64, uint64) {
		return r.groupsSent.Load(), r.groupsDropped.Load()
	})
}

// serveControl speaks the harness' relay control protocol on stdin and
// stdout: the ready line, then one stats line per "stats", until stdin
// closes. groups returns the group streams completed and reset so far.
func serveControl(addr string, fp [32]byte, prof *profiler, groups func() (sent, dropped uint64)) error {
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(readyMsg{Addr: addr, Fingerprint: hex.EncodeToString(fp[:])}); err != nil {
		return err
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "stats" {
			return fmt.Errorf("unknown command %q", sc.Text())
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		sent, dropped := groups()
		st := relayStats{
			CPU:           int64(processCPU()),
			Mallocs:       ms.Mallocs,
			HeapAlloc:     ms.HeapAlloc,
			GroupsSent:    sent,
			GroupsDropped: dropped,
			RSS:           residentBytes(),
			PeakRSS:       residentPeak(true),
		}
		if err := enc.Encode(st); err != nil {
			return err
		}
		if err := prof.snapshot(); err != nil {
			return err
		}
	}
	return sc.Err()
}

// close shuts the server down, giving up after a few seconds: the harness
// has closed every peer by then.
func (r *relay) close() {
	closed := make(chan struct{})
	go func() {
		_ = r.srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
		<-r.done
	case <-time.After(3 * time.Second):
	}
}

// serveSession accepts every session into the relay's mux and, as the
// example does, asks each peer for its announcements and serves every
// announced broadcast from that peer.
func (r *relay) serveSession(w moqt.SetupResponseWriter, req *moqt.SetupRequest) {
	sess, err := moqt.Accept(w, req, r.mux)
	if err != nil {
		return
	}
	ar, err := sess.AcceptAnnounce("/")
	if err != nil {
		return
	}
	for {
		ann, err := ar.ReceiveAnnouncement(sess.Context())
		if err != nil {
			return
		}
		r.mux.Announce(ann, &broadcastRelay{r: r, path: ann.BroadcastPath(), src: sess, tracks: make(map[moqt.TrackName]*trackRelay)})
	}
}

// broadcastRelay serves the subscribers of one broadcast announced by the
// session src.
type broadcastRelay struct {
	r    *relay
	path moqt.BroadcastPath
	src  *moqt.Session

	mu     sync.Mutex
	tracks map[moqt.TrackName]*trackRelay
}

func (b *broadcastRelay) ServeTrack(tw *moqt.TrackWriter) {
	t := b.track(tw.TrackName, tw.TrackConfig())
	if t == nil {
		tw.CloseWithError(moqt.TrackNotFoundErrorCode)
		return
	}
	if err := tw.WriteInfo(moqt.Info{}); err != nil {
		return
	}
	t.add(tw)
	select {
	case <-tw.Context().Done():
	case <-t.done:
	}
	t.remove(tw)
}

// track returns the relay of track name, subscribing upstream if there is
// none yet.
func (b *broadcastRelay) track(name moqt.TrackName, cfg *moqt.TrackConfig) *trackRelay {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.tracks[name]; ok {
		return t
	}
	src, err := b.src.Subscribe(b.path, name, cfg)
	if err != nil {
		return nil
	}
	t := &trackRelay{r: b.r, src: src, dests: make(map[*moqt.TrackWriter]struct{}), done: make(chan struct{})}
	b.tracks[name] = t
	go func() {
		t.run()
		b.mu.Lock()
		delete(b.tracks, name)
		b.mu.Unlock()
	}()
	return t
}

// trackRelay copies the groups of one upstream track to its subscribers.
type trackRelay struct {
	r    *relay
	src  *moqt.TrackReader
	done chan struct{} // closed when the upstream track ends

	mu    sync.RWMutex
	dests map[*moqt.TrackWriter]struct{}
}

func (t *trackRelay) add(tw *moqt.TrackWriter) {
	t.mu.Lock()
	t.dests[tw] = struct{}{}
	t.mu.Unlock()
}

// remove forgets tw; no group is opened on it afterwards.
func (t *trackRelay) remove(tw *moqt.TrackWriter) {
	t.mu.Lock()
	delete(t.dests, tw)
	t.mu.Unlock()
}

func (t *trackRelay) run() {
	defer close(t.done)
	defer t.src.Close()
	// One frame, reused: WriteFrame is done with it on return. Sized for
	// the largest frame up front: Frame.decode grows the payload outside
	// the buffer Frame.encode writes from, so a frame that grew while read
	// cannot be written (v0.9.0 panics).
	frame := moqt.NewFrame(maxFrameSize)
	var gws []*moqt.GroupWriter
	for {
		gr, err := t.src.AcceptGroup(context.Background())
		if err != nil {
			return
		}
		seq := gr.GroupSequence()
		gws = gws[:0]
		// Opened under the lock so that remove waits for them: a
		// subscriber's TrackWriter is closed once remove returns.
		t.mu.RLock()
		for tw := range t.dests {
			if gw, err := tw.OpenGroupAt(seq); err == nil {
				gws = append(gws, gw)
			}
		}
		t.mu.RUnlock()
		for {
			if err = gr.ReadFrame(frame); err != nil {
				break
			}
			for i, gw := range gws {
				if gw != nil && gw.WriteFrame(frame) != nil {
					gw.CancelWrite(moqt.InternalGroupErrorCode)
					t.r.groupsDropped.Add(1)
					gws[i] = nil
				}
			}
		}
		whole := errors.Is(err, io.EOF)
		for i, gw := range gws {
			switch {
			case gw == nil:
			case whole && gw.Close() == nil:
				t.r.groupsSent.Add(1)
			case whole:
				t.r.groupsDropped.Add(1)
			default:
				gw.CancelWrite(moqt.PublishAbortedErrorCode)
				t.r.groupsDropped.Add(1)
			}
			gws[i] = nil
		}
	}
}

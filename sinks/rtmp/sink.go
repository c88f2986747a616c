package rtmp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/internal/lograte"
	"github.com/moqbridge/moqbridge/internal/rtmpurl"
	"github.com/moqbridge/moqbridge/sdk"
)

// Defaults of Config.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultMaxQueueDelay  = 5 * time.Second
	DefaultMaxQueueBytes  = 32 << 20
)

// Config configures a Sink. Only URL is required.
type Config struct {
	// URL is where to publish: rtmp://HOST[:PORT]/APP/STREAM-KEY or
	// rtmps://… (see rtmpurl.Parse). The stream key never appears in logs.
	URL string

	// TLSConfig is used for rtmps:// URLs; nil verifies the server
	// against the system's roots. Set InsecureSkipVerify only to test.
	TLSConfig *tls.Config

	// Video and Audio name the tracks to send; empty picks one of each
	// kind (see Run).
	Video, Audio string

	// Backoff tunes reconnection to a server that went away or refused
	// (zero fields take sdk.DefaultBackoff: 500 ms doubling up to 10 s,
	// ±50 % jitter). A connection that published for less than 10 s
	// before it ended does not start the waits again from Min, so a
	// server that drops every publish at once is not retried in a tight
	// loop. With GiveUpAfter set, Run fails with ErrGaveUp once the
	// server has been unreachable that long (since the last connection
	// that published, or since Run started).
	Backoff sdk.Backoff

	// ConnectTimeout bounds a connection's setup (TCP, TLS, RTMP
	// handshake, connect, publish). Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// WriteTimeout bounds one write to the server; a server that takes
	// nothing for that long is taken as gone. Default DefaultWriteTimeout.
	WriteTimeout time.Duration

	// MaxQueueDelay and MaxQueueBytes bound what waits for a slow server:
	// the media time between the oldest and the newest frame queued, and
	// their bytes. Beyond either, whole GOPs are dropped. Defaults
	// DefaultMaxQueueDelay and DefaultMaxQueueBytes.
	MaxQueueDelay time.Duration
	MaxQueueBytes int

	// DialContext, if set, opens the TCP connections (say, through a
	// proxy); default a net.Dialer.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)

	// Logger receives what happens; default slog.Default().
	Logger *slog.Logger
}

// ErrSourceLost is wrapped by the error Run returns when the broadcast was
// lost rather than ended: a track ended with an error other than io.EOF or
// moq.ErrClosed (the relay or the publisher went away). Running the Sink
// again on the broadcast once it is back goes on publishing.
var ErrSourceLost = errors.New("rtmp: source lost")

// ErrGaveUp is wrapped by the error Run returns when the server stayed
// unreachable for Backoff.GiveUpAfter.
var ErrGaveUp = errors.New("rtmp: gave up reconnecting")

// Stats counts what a Sink did, over all its Runs.
type Stats struct {
	Connections uint64 // connections that published
	Frames      uint64 // frames written to the server
	Bytes       uint64 // payload bytes of those frames
	// DroppedGOPs and DroppedFrames count what was dropped because the
	// server did not take it fast enough.
	DroppedGOPs   uint64
	DroppedFrames uint64
	// Unsent counts the frames not sent for other reasons: while there
	// was no connection, before a connection's first keyframe, or
	// undecodable.
	Unsent uint64
}

// Sink publishes a broadcast to an RTMP server. It implements sdk.Sink.
type Sink struct {
	cfg Config
	url *url.URL
	log *slog.Logger

	running atomic.Bool

	connections, frames, bytes, unsent atomic.Uint64

	dropLog, badLog lograte.Limiter

	mu                         sync.Mutex
	droppedGOPs, droppedFrames uint64 // of the Runs that ended
	q                          *queue // the running Run's
}

var _ sdk.Sink = (*Sink)(nil)

// New returns a Sink with cfg, defaults filled in. It fails, with a
// permanent error (sdk.IsPermanent), when the URL is not a usable
// rtmp:// or rtmps:// URL.
func New(cfg Config) (*Sink, error) {
	u, err := rtmpurl.Parse(cfg.URL)
	if err != nil {
		return nil, sdk.Permanent(err)
	}
	cfg.Backoff = cfg.Backoff.WithDefaults()
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxQueueDelay <= 0 {
		cfg.MaxQueueDelay = DefaultMaxQueueDelay
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Sink{cfg: cfg, url: u, log: cfg.Logger.With("rtmp", rtmpurl.RedactURL(u))}, nil
}

// Stats returns the sink's counters; safe to call while Run runs.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	st := Stats{DroppedGOPs: s.droppedGOPs, DroppedFrames: s.droppedFrames}
	unsent := uint64(0)
	if s.q != nil {
		f, g, u := s.q.counters()
		st.DroppedGOPs += g
		st.DroppedFrames += f
		unsent = u
	}
	s.mu.Unlock()
	st.Connections = s.connections.Load()
	st.Frames = s.frames.Load()
	st.Bytes = s.bytes.Load()
	st.Unsent = s.unsent.Load() + unsent
	return st
}

// catalogSettle is how long the catalog must hold still before Run takes
// its tracks.
const catalogSettle = 200 * time.Millisecond

// interleaveWait bounds how long a frame waits for the other track's
// frames, so that they go out in decode-time order.
const interleaveWait = 500 * time.Millisecond

// Run publishes r to the server until the broadcast ends or ctx ends.
//
// It sends one video and one audio track: those named by Config.Video and
// Config.Audio, or else the video track with the most pixels (H.264 first
// among equals) and the first AAC, else Opus, audio track. Tracks whose
// codec cannot be sent are skipped with a warning; if none can be sent,
// Run fails with a permanent error.
//
// Frames are handed to a writer goroutine through a bounded queue, so a
// slow or absent server never holds up the broadcast: each connection
// starts at a video keyframe, a server that falls behind loses whole GOPs,
// and one that goes away or refuses is retried (Config.Backoff) while the
// broadcast is consumed, the new connection starting at a keyframe with
// its timestamps again near 0.
//
// Run returns nil when ctx ends or the broadcast ended (after what was
// queued is sent); an error wrapping ErrSourceLost when a track ended with
// an error (Run may be called again with the broadcast once it is back;
// Runs must not overlap); an error wrapping ErrGaveUp after
// Backoff.GiveUpAfter.
func (s *Sink) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("rtmp: Run called while another Run of the same Sink runs")
	}
	defer s.running.Store(false)
	log := s.log
	if p := r.Path(); p != "" {
		log = log.With("path", p)
	}
	if ok, err := r.WaitSinkTracks(ctx, catalogSettle, "rtmp", ErrSourceLost); !ok {
		return err
	}
	tracks, err := s.pick(log, r.Tracks())
	if err != nil {
		return err
	}
	names := make([]string, len(tracks))
	for i, o := range tracks {
		names[i] = o.t.Name
	}
	readers, closeReaders, err := r.SubscribeSinkTracks(ctx, names, "rtmp", ErrSourceLost)
	if err != nil {
		return err
	}
	defer closeReaders()

	q := newQueue(s.cfg.MaxQueueBytes, s.cfg.MaxQueueDelay)
	s.mu.Lock()
	s.q = q
	s.mu.Unlock()
	defer s.retire(q)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	writerCtx, stopWriter := context.WithCancel(ctx)
	defer stopWriter()
	sent := make(chan error, 1)
	go func() {
		err := s.send(writerCtx, log, q, tracks)
		if err != nil {
			cancel() // stops reading: the Run is over
		}
		sent <- err
	}()

	il := sdk.NewInterleaver(ctx, sdk.InterleaverConfig{MaxWait: interleaveWait}, readers...)
	lost := s.read(ctx, log, il, q, tracks)
	il.Close()
	q.close()
	if ctx.Err() != nil {
		stopWriter()
		return <-sent
	}
	// The broadcast ended or was lost: what is queued goes out, within a
	// write timeout.
	var werr error
	select {
	case werr = <-sent:
	case <-time.After(s.cfg.WriteTimeout):
		stopWriter()
		werr = <-sent
	}
	if werr != nil {
		return werr
	}
	if lost != nil {
		return fmt.Errorf("%w: %w", ErrSourceLost, lost)
	}
	return nil
}

// retire moves the counters of a Run's queue into the sink's.
func (s *Sink) retire(q *queue) {
	f, g, u := q.counters()
	s.mu.Lock()
	s.droppedFrames += f
	s.droppedGOPs += g
	s.q = nil
	s.mu.Unlock()
	s.unsent.Add(u)
}

// read moves the frames of il into q until every track ended or ctx
// ended; it never blocks on the server. It returns the first track that
// ended with an error (see ErrSourceLost).
func (s *Sink) read(ctx context.Context, log *slog.Logger, il *sdk.Interleaver, q *queue, tracks []*outTrack) (lost error) {
	hasVideo := tracks[0].video()
	for {
		it, err := il.Next(ctx)
		if err != nil { // every track ended (io.EOF), or ctx
			return lost
		}
		o := tracks[it.Track]
		if it.Err != nil {
			if !sdk.Ended(it.Err) && lost == nil {
				log.Warn("rtmp: track ended with an error", "track", o.t.Name, "err", it.Err)
				lost = fmt.Errorf("track %q: %w", o.t.Name, it.Err)
			}
			continue
		}
		key := it.Frame.Keyframe && (o.video() || !hasVideo)
		if q.push(item{track: it.Track, f: it.Frame, key: key}) {
			f, g, _ := q.counters()
			s.dropLog.Log(log, slog.LevelWarn, "rtmp: the server does not keep up: dropping frames up to the next keyframe",
				"dropped_gops", g, "dropped_frames", f, "queue_limit", s.cfg.MaxQueueDelay)
		}
	}
}

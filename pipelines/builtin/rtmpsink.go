package builtin

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
	rtmpsink "github.com/moqbridge/moqbridge/sinks/rtmp"
)

// RTMPSinkOptions are the options of the rtmp sink: each broadcast the
// pipeline yields published to an RTMP server (YouTube, Twitch, another
// RTMP server), reconnecting while the server comes and goes.
type RTMPSinkOptions struct {
	// URL is where to publish: rtmp://HOST[:PORT]/APP/STREAM-KEY or
	// rtmps://… (required). It may hold {path}, the broadcast path
	// ("live/cam"), and {name}, its last segment ("cam"), so that one sink
	// of a "live/*" pipeline publishes each broadcast under its own key:
	// rtmp://host/live/{name}. The stream key never appears in logs or
	// errors; keep it out of the file with ${VAR}.
	URL string `yaml:"url"`
	// Video names the video track to send (default: the one with the
	// most pixels, H.264 first among equals).
	Video string `yaml:"video"`
	// Audio names the audio track to send (default: the first AAC track,
	// else the first Opus one).
	Audio string `yaml:"audio"`
	// Backoff spaces the reconnections to a server that went away or
	// refused.
	Backoff BackoffOptions `yaml:"backoff"`
	// MaxQueueDelay bounds the media time queued for a slow server;
	// beyond it whole GOPs are dropped and counted (default 5s).
	MaxQueueDelay time.Duration `yaml:"max_queue_delay"`
	// MaxQueueBytes bounds the bytes queued for a slow server, likewise
	// (default 32MiB).
	MaxQueueBytes pipelines.ByteSize `yaml:"max_queue_bytes"`
}

// Validate implements pipelines.Validator.
func (o *RTMPSinkOptions) Validate() error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, fieldErr("url", "required: rtmp://HOST[:PORT]/APP/STREAM-KEY or rtmps://…, which may hold {path} and {name}"))
	} else if err := checkTemplate(o.URL, isSinkURLPlaceholder); err != nil {
		errs = append(errs, &pipelines.FieldError{Field: "url", Err: err})
	} else if err := validateRTMPURL(expandSinkURL(o.URL, "live/stream")); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, o.Backoff.validate("backoff")...)
	if o.MaxQueueDelay <= 0 {
		errs = append(errs, fieldErr("max_queue_delay", "must be positive, got %v", o.MaxQueueDelay))
	}
	if o.MaxQueueBytes <= 0 {
		errs = append(errs, fieldErr("max_queue_bytes", "must be positive, got %d", o.MaxQueueBytes))
	}
	return errors.Join(errs...)
}

func isSinkURLPlaceholder(name string) (bool, string) {
	return name == "path" || name == "name", "{path}, {name}"
}

// expandSinkURL fills {path} and {name} in with the broadcast path, each
// segment escaped for a URL path.
func expandSinkURL(tmpl, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.NewReplacer("{path}", strings.Join(segs, "/"), "{name}", segs[len(segs)-1]).Replace(tmpl)
}

// RTMPSink is the rtmp sink kind: it publishes each broadcast to an RTMP
// server. Its sinks implement pipelines.StatsReporter.
func RTMPSink() pipelines.SinkKind {
	return pipelines.SinkKind{
		Name:    "rtmp",
		Summary: "publishes each broadcast to an RTMP server (rtmp:// or rtmps://), reconnecting with backoff",
		Options: func() any {
			return &RTMPSinkOptions{
				Backoff:       defaultBackoff(),
				MaxQueueDelay: rtmpsink.DefaultMaxQueueDelay,
				MaxQueueBytes: rtmpsink.DefaultMaxQueueBytes,
			}
		},
		New: func(env pipelines.SinkEnv, opts any) (sdk.Sink, error) {
			o, err := optionsOf[RTMPSinkOptions]("rtmp", opts)
			if err != nil {
				return nil, err
			}
			if err := o.Validate(); err != nil {
				return nil, sdk.Permanent(err)
			}
			s := &RTMPSinkAdapter{}
			sink, err := rtmpsink.New(rtmpsink.Config{
				URL:           expandSinkURL(o.URL, env.Path),
				Video:         o.Video,
				Audio:         o.Audio,
				Backoff:       o.Backoff.sdk(),
				MaxQueueDelay: o.MaxQueueDelay,
				MaxQueueBytes: int(o.MaxQueueBytes),
				DialContext:   s.dial,
				Logger:        env.Logger,
			})
			if err != nil {
				return nil, err
			}
			s.sink = sink
			return s, nil
		},
	}
}

// RTMPSinkAdapter is the sink the rtmp kind makes: a sinks/rtmp Sink that
// also reports its counters as pipelines.SinkCounters.
type RTMPSinkAdapter struct {
	sink *rtmpsink.Sink

	mu sync.Mutex
	// open is the TCP connection to the server, nil between
	// connections; publishedBefore is the sink's count of connections
	// that published when it was dialled: it has published itself once
	// the count went past that.
	open            net.Conn
	publishedBefore uint64
}

var (
	_ sdk.Sink                = (*RTMPSinkAdapter)(nil)
	_ pipelines.StatsReporter = (*RTMPSinkAdapter)(nil)
)

// Run implements sdk.Sink (see sinks/rtmp's Sink.Run).
func (s *RTMPSinkAdapter) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	return s.sink.Run(ctx, r)
}

// Stats returns the sink's own counters.
func (s *RTMPSinkAdapter) Stats() rtmpsink.Stats { return s.sink.Stats() }

// Counters implements pipelines.StatsReporter: Reconnects are the
// connections that published after the first, DroppedFrames and
// DroppedGroups what a slow server made the sink drop (groups are GOPs),
// and Connected says whether the connection open now has published.
func (s *RTMPSinkAdapter) Counters() pipelines.SinkCounters {
	st := s.sink.Stats()
	c := pipelines.SinkCounters{DroppedFrames: st.DroppedFrames, DroppedGroups: st.DroppedGOPs}
	if st.Connections > 1 {
		c.Reconnects = st.Connections - 1
	}
	s.mu.Lock()
	c.Connected = s.open != nil && st.Connections > s.publishedBefore
	s.mu.Unlock()
	return c
}

// dial opens the sink's TCP connections, noting which is open for
// Counters.
func (s *RTMPSinkAdapter) dial(ctx context.Context, network, address string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	c := &trackedConn{Conn: nc, s: s}
	before := s.sink.Stats().Connections
	s.mu.Lock()
	s.open, s.publishedBefore = c, before
	s.mu.Unlock()
	return c, nil
}

// trackedConn clears the adapter's open connection when it closes.
type trackedConn struct {
	net.Conn
	s    *RTMPSinkAdapter
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		if c.s.open == c {
			c.s.open = nil
		}
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

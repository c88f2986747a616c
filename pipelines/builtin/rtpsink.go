package builtin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
	rtpsink "github.com/moqbridge/moqbridge/sinks/rtp"
)

// RTPSinkOptions are the options of the rtp sink: the broadcast sent as
// RTP over UDP (unicast or multicast) to a destination, with the session
// description (SDP) that ffplay, ffmpeg, GStreamer and VLC open.
type RTPSinkOptions struct {
	// Dest is where the video goes, HOST:PORT (required); the audio goes
	// to PORT+2, the RTCP of each to its port + 1. A multicast address
	// sends to a group.
	Dest string `yaml:"dest"`
	// SDPFile is where the session description is written, relative to
	// the config file's directory, whose directory must exist (default:
	// none written).
	SDPFile string `yaml:"sdp_file"`
	// TTL is the multicast TTL (IPv4) or hop limit (IPv6), 1 to 255
	// (default 1: the local network).
	TTL int `yaml:"ttl"`
	// MTU is the largest UDP payload sent, RTP header included (default
	// 1200).
	MTU int `yaml:"mtu"`
	// Video names the video track to send (default: the one with the most
	// pixels, H.264 first among equals).
	Video string `yaml:"video"`
	// Audio names the audio track to send (default: the first AAC or Opus
	// one, else G.711).
	Audio string `yaml:"audio"`
	// MaxDelay is how far behind live sending may stay (for 3 s) before
	// it skips to the latest video keyframe (default 500ms).
	MaxDelay time.Duration `yaml:"max_delay"`
}

// Validate implements pipelines.Validator. The directory of a relative
// sdp_file is checked by ValidateDir, which knows the config file's
// directory; an absolute one's here.
func (o *RTPSinkOptions) Validate() error {
	var errs []error
	if o.Dest == "" {
		errs = append(errs, fieldErr("dest", "required: HOST:PORT the video is sent to (the audio to PORT+2), e.g. 127.0.0.1:5004 or 239.0.0.1:5004"))
	} else if err := checkDest(o.Dest); err != nil {
		errs = append(errs, &pipelines.FieldError{Field: "dest", Err: err})
	}
	if o.TTL < 1 || o.TTL > 255 {
		errs = append(errs, fieldErr("ttl", "want 1 to 255, got %d", o.TTL))
	}
	if o.MTU < rtpsink.MinMTU || o.MTU > rtpsink.MaxMTU {
		errs = append(errs, fieldErr("mtu", "want %d to %d bytes, got %d", rtpsink.MinMTU, rtpsink.MaxMTU, o.MTU))
	}
	if o.MaxDelay <= 0 {
		errs = append(errs, fieldErr("max_delay", "must be positive, got %v", o.MaxDelay))
	}
	if o.SDPFile != "" && filepath.IsAbs(o.SDPFile) {
		if err := checkSDPDir(o.SDPFile); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ValidateDir implements pipelines.DirValidator: Validate, with a
// relative sdp_file resolved against dir, the config file's directory,
// whose own directory must exist.
func (o *RTPSinkOptions) ValidateDir(dir string) error {
	err := o.Validate()
	if err != nil || o.SDPFile == "" || filepath.IsAbs(o.SDPFile) {
		return err
	}
	return checkSDPDir(resolve(dir, o.SDPFile))
}

// checkSDPDir reports, at "sdp_file", a name whose directory does not
// exist, or that is a directory.
func checkSDPDir(name string) error {
	if st, err := os.Stat(name); err == nil && st.IsDir() {
		return fieldErr("sdp_file", "%s is a directory", name)
	}
	parent := filepath.Dir(name)
	st, err := os.Stat(parent)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fieldErr("sdp_file", "the directory %s does not exist", parent)
	case err != nil:
		return &pipelines.FieldError{Field: "sdp_file", Err: err}
	case !st.IsDir():
		return fieldErr("sdp_file", "%s is not a directory", parent)
	}
	return nil
}

// checkDest checks a destination's form without resolving a host name:
// HOST:PORT, a port from 1, an IP address that can be sent to.
func checkDest(dest string) error {
	host, port, err := net.SplitHostPort(dest)
	if err != nil || host == "" {
		return fmt.Errorf("%q: want HOST:PORT, e.g. 127.0.0.1:5004, 239.0.0.1:5004 or [::1]:5004", dest)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("%q: the port must be a number from 1 to 65535", dest)
	}
	if p+3 > 65535 {
		return fmt.Errorf("%q: the audio and RTCP ports (up to %d) would pass 65535", dest, p+3)
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		return fmt.Errorf("%q: %s is not an address to send to", dest, host)
	}
	return nil
}

// RTPSink is the rtp sink kind: it sends the pipeline's broadcast as RTP.
// Its sinks implement pipelines.StatsReporter. A destination sends one
// broadcast at a time: in a pipeline of many broadcasts ("from: live/*"),
// the first to start holds it, and the sinks of the others wait (their
// Run fails, transiently, naming the broadcast that holds it) rather than
// mix their packets into the same ports.
func RTPSink() pipelines.SinkKind {
	dests := &destinations{byDest: map[string]string{}}
	return pipelines.SinkKind{
		Name:    "rtp",
		Summary: "sends each broadcast as RTP over UDP (unicast or multicast) with its SDP, for ffplay, ffmpeg, GStreamer, VLC",
		Options: func() any {
			return &RTPSinkOptions{TTL: rtpsink.DefaultTTL, MTU: rtpsink.DefaultMTU, MaxDelay: rtpsink.DefaultMaxDelay}
		},
		New: func(env pipelines.SinkEnv, opts any) (sdk.Sink, error) {
			o, err := optionsOf[RTPSinkOptions]("rtp", opts)
			if err != nil {
				return nil, err
			}
			if err := o.ValidateDir(env.Dir); err != nil {
				return nil, sdk.Permanent(err)
			}
			cfg := rtpsink.Config{
				Dest:     o.Dest,
				TTL:      o.TTL,
				MTU:      o.MTU,
				Video:    o.Video,
				Audio:    o.Audio,
				MaxDelay: o.MaxDelay,
				Logger:   env.Logger,
			}
			if o.SDPFile != "" {
				cfg.SDPFile = resolve(env.Dir, o.SDPFile)
			}
			sink, err := rtpsink.New(cfg)
			if err != nil {
				return nil, err
			}
			return &RTPSinkAdapter{sink: sink, dests: dests, dest: o.Dest, path: env.Path}, nil
		},
	}
}

// RTPSinkAdapter is the sink the rtp kind makes: a sinks/rtp Sink that
// also reports its counters as pipelines.SinkCounters.
type RTPSinkAdapter struct {
	sink    *rtpsink.Sink
	running atomic.Bool
	// dests is the kind's table of destinations in use; dest and path
	// this sink's.
	dests      *destinations
	dest, path string
}

var (
	_ sdk.Sink                = (*RTPSinkAdapter)(nil)
	_ pipelines.StatsReporter = (*RTPSinkAdapter)(nil)
)

// Run implements sdk.Sink (see sinks/rtp's Sink.Run).
func (s *RTPSinkAdapter) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	release, err := s.dests.claim(s.dest, s.path)
	if err != nil {
		return err
	}
	defer release()
	s.running.Store(true)
	defer s.running.Store(false)
	return s.sink.Run(ctx, r)
}

// Stats returns the sink's own counters.
func (s *RTPSinkAdapter) Stats() rtpsink.Stats { return s.sink.Stats() }

// Counters implements pipelines.StatsReporter: DroppedFrames and
// DroppedGroups are what the sink skipped to stay near live (groups are
// GOPs); Connected says it is sending (UDP has no connection: a Run is
// under way and has sent packets).
func (s *RTPSinkAdapter) Counters() pipelines.SinkCounters {
	st := s.sink.Stats()
	return pipelines.SinkCounters{
		DroppedFrames: st.DroppedFrames,
		DroppedGroups: st.DroppedGOPs,
		Connected:     s.running.Load() && st.Packets > 0,
	}
}

// destinations records which broadcast each destination of an rtp kind's
// sinks is sending.
type destinations struct {
	mu     sync.Mutex
	byDest map[string]string
}

// claim takes dest for the broadcast at path until release is called; it
// fails while another broadcast holds dest.
func (d *destinations) claim(dest, path string) (release func(), err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if other, ok := d.byDest[dest]; ok {
		return nil, fmt.Errorf("rtp: %s is sending the broadcast %s; an rtp sink sends one broadcast at a time (give each broadcast a pipeline with its own dest)", dest, other)
	}
	d.byDest[dest] = path
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.byDest, dest)
	}, nil
}

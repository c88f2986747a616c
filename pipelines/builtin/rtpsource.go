package builtin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtp"
)

// RTPSourceOptions are the options of the rtp source: the RTP media a
// session description (SDP) announces — what ffmpeg, GStreamer, an IP
// camera or an encoder sends — received over UDP and published as one
// broadcast at the pipeline's path.
type RTPSourceOptions struct {
	// SDPFile is the session description, relative to the config file's
	// directory (ffmpeg writes it with -sdp_file). It is read again each
	// time the source starts, so a sender's new description is taken at
	// the next restart. Exactly one of sdp_file and sdp is set.
	SDPFile string `yaml:"sdp_file"`
	// SDP is the session description itself, inline (a YAML block
	// scalar: sdp: |).
	SDP string `yaml:"sdp"`
	// Listen overrides where each m= line's media is received, in order:
	// HOST:PORT, or HOST to keep the SDP's port (default: the SDP's
	// addresses). RTCP is received on the port + 1.
	Listen []string `yaml:"listen"`
	// ReorderWindow is how long a packet after a gap waits for the
	// missing ones before they count as lost (default 50ms): the latency
	// added when packets are lost or reordered, none otherwise.
	ReorderWindow time.Duration `yaml:"reorder_window"`
	// Timeout ends the broadcast when no RTP packet came for this long
	// after the first (default 10s); the source then restarts and waits
	// for the sender on the same ports, and a returning sender publishes
	// again.
	Timeout time.Duration `yaml:"timeout"`
	// TrackWait is how long after the first packet the tracks are held
	// back while a media's configuration is not known yet (H.264 or H.265
	// parameter sets sent in band, an AV1, VP8 or VP9 keyframe), so that
	// every track starts in the same catalog (default 2s).
	TrackWait time.Duration `yaml:"track_wait"`
}

// Validate implements pipelines.Validator. An inline sdp is parsed here;
// an sdp_file is read and parsed by ValidateDir, which knows the config
// file's directory (an absolute one here too).
func (o *RTPSourceOptions) Validate() error {
	var errs []error
	switch {
	case o.SDPFile == "" && o.SDP == "":
		errs = append(errs, fieldErr("sdp_file", "either sdp_file (the path of a session description) or sdp (one inline) is required"))
	case o.SDPFile != "" && o.SDP != "":
		errs = append(errs, fieldErr("sdp", "sdp_file and sdp exclude each other: set one"))
	}
	for i, l := range o.Listen {
		if err := checkListen(l); err != nil {
			errs = append(errs, &pipelines.FieldError{Field: fmt.Sprintf("listen[%d]", i), Err: err})
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"reorder_window", o.ReorderWindow}, {"timeout", o.Timeout}, {"track_wait", o.TrackWait}} {
		if d.v <= 0 {
			errs = append(errs, fieldErr(d.field, "must be positive, got %v", d.v))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	switch {
	case o.SDP != "":
		if err := o.checkSDP("sdp", []byte(o.SDP)); err != nil {
			errs = append(errs, err)
		}
	case filepath.IsAbs(o.SDPFile):
		if err := o.checkSDPFile(o.SDPFile); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ValidateDir implements pipelines.DirValidator: Validate, with a
// relative sdp_file resolved against dir, the config file's directory,
// read and parsed.
func (o *RTPSourceOptions) ValidateDir(dir string) error {
	err := o.Validate()
	if err != nil || o.SDPFile == "" || filepath.IsAbs(o.SDPFile) {
		return err
	}
	return o.checkSDPFile(resolve(dir, o.SDPFile))
}

// checkSDPFile reports, at "sdp_file", a name that is not a readable
// regular file holding a session description the source takes.
func (o *RTPSourceOptions) checkSDPFile(name string) error {
	st, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fieldErr("sdp_file", "%s does not exist", name)
	case err != nil:
		return &pipelines.FieldError{Field: "sdp_file", Err: err}
	case !st.Mode().IsRegular():
		return fieldErr("sdp_file", "%s is not a regular file", name)
	}
	text, err := os.ReadFile(name)
	if err != nil {
		return &pipelines.FieldError{Field: "sdp_file", Err: err}
	}
	if err := o.checkSDP("sdp_file", text); err != nil {
		var fe *pipelines.FieldError
		if errors.As(err, &fe) && fe.Field == "sdp_file" {
			fe.Err = fmt.Errorf("%s: %w", name, fe.Err)
		}
		return err
	}
	return nil
}

// checkSDP parses a session description as the source will, with the
// listen overrides, reporting what it refuses (a payload format it does
// not decode, a transport other than RTP over UDP) at field; more listen
// addresses than media are reported at "listen".
func (o *RTPSourceOptions) checkSDP(field string, text []byte) error {
	src, err := rtp.New(rtp.Config{SDP: string(text)})
	if err != nil {
		return &pipelines.FieldError{Field: field, Err: errors.New(strings.TrimPrefix(err.Error(), "rtp: "))}
	}
	if n := len(src.Session().Medias); len(o.Listen) > n {
		return fieldErr("listen", "%d addresses for the %d media of the session description", len(o.Listen), n)
	}
	return nil
}

// checkListen checks a listen override: HOST:PORT or HOST, the host an IP
// address (empty in ":PORT": the SDP's address).
func checkListen(l string) error {
	host, port, err := net.SplitHostPort(l)
	if err != nil {
		host, port = l, ""
	}
	if host == "" && port == "" {
		return errors.New("empty: want HOST:PORT, or HOST to keep the SDP's port")
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: the host must be an IP address (HOST:PORT, [IPv6]:PORT)", l)
		}
	}
	if port != "" {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("%q: the port must be a number from 0 to 65535", l)
		}
	}
	return nil
}

// RTPSource is the rtp source kind: the RTP media an SDP announces,
// received over UDP (unicast or multicast) into the broadcast at the
// pipeline's path.
func RTPSource() pipelines.SourceKind {
	return pipelines.SourceKind{
		Name:    "rtp",
		Summary: "RTP over UDP described by an SDP (ffmpeg, GStreamer, IP cameras, encoders; unicast or multicast)",
		Options: func() any {
			return &RTPSourceOptions{ReorderWindow: rtp.DefaultReorderWindow, Timeout: rtp.DefaultTimeout, TrackWait: rtp.DefaultTrackWait}
		},
		NewSource: func(env pipelines.SourceEnv, opts any) (sdk.Source, error) {
			o, err := optionsOf[RTPSourceOptions]("rtp", opts)
			if err != nil {
				return nil, err
			}
			return NewRTPSource(env, o)
		},
	}
}

// RTPSourceAdapter is the source the rtp kind makes: a sources/rtp Source
// that logs what it received and dropped each time its Run ends, and
// reports it to the metrics (pipelines.SourceStatsReporter).
type RTPSourceAdapter struct {
	src *rtp.Source
	log *slog.Logger
}

var (
	_ sdk.Source                    = (*RTPSourceAdapter)(nil)
	_ pipelines.SourceStatsReporter = (*RTPSourceAdapter)(nil)
)

// NewRTPSource makes the rtp kind's source of env's pipeline: the
// options are checked again (the SDP file may have changed since the
// configuration was loaded), with permanent errors.
func NewRTPSource(env pipelines.SourceEnv, o *RTPSourceOptions) (*RTPSourceAdapter, error) {
	if err := o.ValidateDir(env.Dir); err != nil {
		return nil, sdk.Permanent(err)
	}
	cfg := rtp.Config{
		SDP:           o.SDP,
		Listen:        append([]string(nil), o.Listen...),
		ReorderWindow: o.ReorderWindow,
		Timeout:       o.Timeout,
		TrackWait:     o.TrackWait,
		Logger:        env.Logger,
	}
	if o.SDPFile != "" {
		cfg.SDPFile = resolve(env.Dir, o.SDPFile)
	}
	src, err := rtp.New(cfg)
	if err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.Default()
	}
	return &RTPSourceAdapter{src: src, log: log}, nil
}

// Run implements sdk.Source: it receives until ctx ends (nil) or the
// sender was silent for the timeout (an error wrapping sdk.ErrInputIdle:
// the supervisor runs a new source at once, which waits for the sender on
// the same ports). The sockets are closed when it returns.
func (s *RTPSourceAdapter) Run(ctx context.Context, w *sdk.BroadcastWriter) error {
	err := s.src.Run(ctx, w)
	s.logStats()
	return err
}

// Source is the sources/rtp Source: its Session, Addrs and Stats.
func (s *RTPSourceAdapter) Source() *rtp.Source { return s.src }

// SourceCounters implements pipelines.SourceStatsReporter: the counters
// of every media summed. DroppedFrames are the access units damaged by a
// loss and those skipped (before a keyframe, mostly after a loss).
func (s *RTPSourceAdapter) SourceCounters() pipelines.SourceCounters {
	var c pipelines.SourceCounters
	for _, st := range s.src.Stats() {
		c.InputPackets += st.Packets
		c.InputBytes += st.Bytes
		c.LostPackets += st.Lost
		c.DuplicatePackets += st.Duplicates
		c.LatePackets += st.Late
		c.InvalidPackets += st.Invalid
		c.DroppedFrames += st.Damaged + st.Skipped
		c.SenderRestarts += st.Restarts
	}
	return c
}

// logStats logs each media's counters, at warning level when packets were
// lost or invalid (access units skipped alone are those before the first
// keyframe of a sender joined mid-stream).
func (s *RTPSourceAdapter) logStats() {
	for i, st := range s.src.Stats() {
		if st.Packets == 0 && st.Invalid == 0 {
			continue
		}
		level := slog.LevelInfo
		if st.Lost+st.Damaged+st.Invalid > 0 {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "rtp: media received", "media", s.src.Session().Medias[i].Describe(),
			"packets", st.Packets, "lost", st.Lost, "late", st.Late, "duplicates", st.Duplicates, "invalid", st.Invalid,
			"damaged", st.Damaged, "skipped", st.Skipped, "frames", st.Frames, "restarts", st.Restarts, "sender_reports", st.SenderReports)
	}
}

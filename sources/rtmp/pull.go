package rtmp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/bluenviron/gortmplib"

	"github.com/moqbridge/moqbridge/internal/rtmpurl"
	"github.com/moqbridge/moqbridge/sdk"
)

// PullConfig configures a Pull.
type PullConfig struct {
	// URL is the stream to play: rtmp://host[:port]/app/key or rtmps://…
	// (the last path segment is the stream key, a query goes with it; see
	// internal/rtmpurl). The key never appears in logs.
	URL string
	// TLS configures rtmps:// connections (nil: the system roots).
	TLS *tls.Config
	// Backoff spaces the reconnections (zero fields take
	// sdk.DefaultBackoff); its GiveUpAfter ends Run with the last error.
	Backoff sdk.Backoff
	// SetupTimeout and ReadTimeout: as in Config (0 takes the defaults).
	SetupTimeout, ReadTimeout time.Duration
	// Logger receives a line per connection, loss and reconnection;
	// default slog.Default().
	Logger *slog.Logger
}

// Pull plays a remote RTMP stream into a broadcast: an sdk.Source. When
// the connection fails or the server ends the stream, it reconnects with
// backoff, and the broadcast continues as when a publisher returns within
// the linger window (same tracks, the clock going on).
type Pull struct {
	cfg PullConfig
	u   *url.URL
	log *slog.Logger
}

// NewPull checks cfg's URL and returns a Pull; a URL that is not rtmp://
// or rtmps:// with an application and a stream key is a permanent error.
func NewPull(cfg PullConfig) (*Pull, error) {
	u, err := rtmpurl.Parse(cfg.URL)
	if err != nil {
		return nil, sdk.Permanent(err)
	}
	if cfg.SetupTimeout <= 0 {
		cfg.SetupTimeout = DefaultSetupTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	cfg.Backoff = cfg.Backoff.WithDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Pull{cfg: cfg, u: u, log: cfg.Logger.With("source", "rtmp pull", "url", rtmpurl.RedactURL(u))}, nil
}

// Run plays the stream into w until ctx ends (nil), the backoff gives up
// (the last error) or a permanent error.
func (p *Pull) Run(ctx context.Context, w *sdk.BroadcastWriter) error {
	st := &stream{w: w}
	attempt := 0
	var failingSince time.Time
	for {
		began := time.Now()
		err := p.play(ctx, st)
		if ctx.Err() != nil {
			return nil
		}
		if sdk.IsPermanent(err) {
			return err
		}
		if time.Since(began) >= p.cfg.Backoff.Max || st.played {
			attempt, failingSince = 0, time.Time{}
		}
		st.played = false
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if g := p.cfg.Backoff.GiveUpAfter; g > 0 && time.Since(failingSince) >= g {
			return fmt.Errorf("rtmp pull: giving up after %v: %w", g, err)
		}
		wait := p.cfg.Backoff.Wait(attempt)
		attempt++
		p.log.Warn("rtmp pull: connection lost, reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// play makes one connection and plays media from it until it fails.
func (p *Pull) play(ctx context.Context, st *stream) error {
	var bc *budgetConn
	c := &gortmplib.Client{URL: p.u, TLSConfig: p.cfg.TLS,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			bc = newBudgetConn(nc, setupBudget)
			return bc, nil
		}}
	setupCtx, cancel := context.WithTimeout(ctx, p.cfg.SetupTimeout)
	defer cancel()
	if err := c.Initialize(setupCtx); err != nil {
		return fmt.Errorf("rtmp pull: connecting: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()

	_ = bc.SetDeadline(time.Now().Add(p.cfg.SetupTimeout))
	r, analysis, _, err := readTracks(c)
	if err != nil {
		return fmt.Errorf("rtmp pull: reading the tracks: %w", err)
	}
	// The tracks of the connection before are continued by this one's
	// (or leave the catalog), its clock goes on.
	st.reserveTracks()
	st.clock.resume()
	pub := &publish{st: st, log: p.log}
	if err := pub.setup(r); err != nil {
		return fmt.Errorf("rtmp pull: %w", err)
	}
	p.log.Info("rtmp pull: playing", "codecs", codecNames(r.Tracks()), "analysis", analysis)
	err = readMedia(r, pub, bc, p.cfg.ReadTimeout)
	if errors.Is(err, net.ErrClosed) && ctx.Err() != nil {
		return nil
	}
	return err
}

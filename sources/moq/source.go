package moq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/internal/redact"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

// Config configures a Source.
type Config struct {
	// URL is the remote relay: moql://HOST:PORT, https://HOST:PORT/PATH,
	// ws(s)://…, or http://HOST:PORT/ for a development relay.
	URL string
	// Broadcast is the path of the remote broadcast.
	Broadcast string
	// Dial are the connection's options: protocol.WithFingerprint,
	// WithRootCAs, WithVersions, … (a token goes into the URL's jwt
	// query parameter). Reconnection follows Backoff.
	Dial []protocol.DialOption
	// Backoff is how the first connection is retried and how the relay is
	// reconnected (zero fields take sdk.DefaultBackoff).
	Backoff sdk.Backoff
	// Cache bounds what each local track keeps (zero fields take moq's
	// defaults, a relay's cache).
	Cache moq.CacheConfig
	// Logger receives the source's logs (nil: slog.Default()).
	Logger *slog.Logger
}

// Source mirrors one remote broadcast into the local Origin. It is an
// sdk.Source; Publish is the same without remuxing.
type Source struct {
	cfg Config
	log *slog.Logger
}

// NewSource checks cfg and returns its Source; a malformed URL or path is
// a permanent error.
func NewSource(cfg Config) (*Source, error) {
	if err := CheckURL(cfg.URL); err != nil {
		return nil, err
	}
	cfg.Broadcast = moq.CleanPath(cfg.Broadcast)
	if err := moq.ValidatePath(cfg.Broadcast); err != nil || cfg.Broadcast == "" {
		return nil, sdk.Permanent(fmt.Errorf("moq source: broadcast %q: %w", cfg.Broadcast, errOr(err, moq.ErrInvalidPath)))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Source{cfg: cfg, log: log.With("url", redact.Token(cfg.URL), "broadcast", cfg.Broadcast)}, nil
}

func errOr(err, or error) error {
	if err != nil {
		return err
	}
	return or
}

// Publish mirrors the remote broadcast at path in origin until ctx ends
// (nil) or the relay cannot be reconnected. The local broadcast enters
// origin once the remote one is announced, and stays until Publish
// returns, across losses of the remote broadcast and of the relay. Its
// tracks, groups and frames are the remote ones, forwarded as they arrive.
func (s *Source) Publish(ctx context.Context, origin *moq.Origin, path string) error {
	if err := moq.ValidatePath(moq.CleanPath(path)); err != nil {
		return sdk.Permanent(fmt.Errorf("moq source: publish at %q: %w", path, err))
	}
	return s.run(ctx, func(ctx context.Context, local *moq.BroadcastReader) error {
		if err := origin.Publish(path, local); err != nil {
			return fmt.Errorf("moq source: publish at %q: %w", path, err)
		}
		<-ctx.Done()
		return nil
	})
}

// Run is the sdk.Source: it mirrors the remote broadcast into w, writing
// its tracks and frames again (see the package doc), until ctx ends or the
// relay cannot be reconnected.
func (s *Source) Run(ctx context.Context, w *sdk.BroadcastWriter) error {
	return s.run(ctx, func(ctx context.Context, local *moq.BroadcastReader) error {
		return copyMedia(ctx, local, w, s.log)
	})
}

// run connects, waits for the remote broadcast and runs use on its local
// mirror until use returns, ctx ends (nil) or the client stops.
func (s *Source) run(ctx context.Context, use func(ctx context.Context, local *moq.BroadcastReader) error) error {
	r, err := connect(ctx, s.cfg.URL, s.cfg.Broadcast, s.cfg.Dial, s.cfg.Backoff, s.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer r.close()
	m := newMirror(r, s.cfg.Broadcast, s.cfg.Cache, s.log)
	defer m.close()
	if r.waitBroadcast(ctx, s.cfg.Broadcast) == nil {
		if ctx.Err() != nil {
			return nil
		}
		return r.stopped()
	}
	s.log.Info("moq source: mirroring the remote broadcast")
	useCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	used := make(chan error, 1)
	go func() { used <- use(useCtx, m.local.Reader()) }()
	select {
	case err := <-used:
		if ctx.Err() != nil {
			return nil
		}
		return err
	case <-r.client.Done():
		cancel()
		<-used
		return r.stopped()
	}
}

// DefaultReturnGrace is how long a PrefixSource keeps a broadcast lost
// with the connection once the relay is back, for it to be announced
// again.
const DefaultReturnGrace = 5 * time.Second

// PrefixConfig configures a PrefixSource.
type PrefixConfig struct {
	// URL, Dial, Backoff, Cache and Logger are as in Config.
	URL     string
	Dial    []protocol.DialOption
	Backoff sdk.Backoff
	Cache   moq.CacheConfig
	Logger  *slog.Logger
	// Prefix is the remote prefix whose broadcasts are mirrored ("":
	// every broadcast of the relay).
	Prefix string
	// PathTemplate makes the local path of a remote broadcast: {path} is
	// its remote path, {name} that path relative to Prefix (default
	// "{path}").
	PathTemplate string
	// ReturnGrace is how long a broadcast lost with the connection may
	// take to be announced again once the relay is back before its local
	// mirror ends (default DefaultReturnGrace).
	ReturnGrace time.Duration
}

// PrefixSource mirrors every broadcast announced under a remote prefix, each
// at its own local path. It is an sdk.Listener; Publish is the same
// without remuxing.
type PrefixSource struct {
	cfg PrefixConfig
	log *slog.Logger
}

// NewPrefixSource checks cfg and returns its PrefixSource; a malformed URL,
// prefix or template is a permanent error.
func NewPrefixSource(cfg PrefixConfig) (*PrefixSource, error) {
	if err := CheckURL(cfg.URL); err != nil {
		return nil, err
	}
	cfg.Prefix = moq.CleanPath(cfg.Prefix)
	if cfg.Prefix != "" {
		if err := moq.ValidatePath(cfg.Prefix); err != nil {
			return nil, sdk.Permanent(fmt.Errorf("moq source: prefix %q: %w", cfg.Prefix, err))
		}
	}
	if cfg.PathTemplate == "" {
		cfg.PathTemplate = "{path}"
	}
	if !strings.Contains(cfg.PathTemplate, "{path}") && !strings.Contains(cfg.PathTemplate, "{name}") {
		return nil, sdk.Permanent(fmt.Errorf("moq source: path template %q: it must contain {path} or {name}, or every broadcast would get the same path", cfg.PathTemplate))
	}
	if cfg.ReturnGrace <= 0 {
		cfg.ReturnGrace = DefaultReturnGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &PrefixSource{cfg: cfg, log: log.With("url", redact.Token(cfg.URL), "prefix", cfg.Prefix)}, nil
}

// LocalPath is where the remote broadcast at remote is mirrored.
func (s *PrefixSource) LocalPath(remote string) (string, error) {
	name := remote
	if s.cfg.Prefix != "" && moq.HasPathPrefix(remote, s.cfg.Prefix) {
		name = moq.PathSuffix(remote, s.cfg.Prefix)
	}
	p := moq.CleanPath(strings.NewReplacer("{path}", remote, "{name}", name).Replace(s.cfg.PathTemplate))
	if err := moq.ValidatePath(p); err != nil || p == "" {
		return "", fmt.Errorf("moq source: local path for %q: %w", remote, errOr(err, moq.ErrInvalidPath))
	}
	return p, nil
}

// Publish mirrors every remote broadcast under the prefix into origin at
// its LocalPath until ctx ends (nil) or the relay cannot be reconnected.
func (s *PrefixSource) Publish(ctx context.Context, origin *moq.Origin) error {
	return s.run(ctx, func(ctx context.Context, path string, local *moq.BroadcastReader) {
		if err := origin.Publish(path, local); err != nil {
			s.log.Warn("moq source: cannot publish a mirrored broadcast", "path", path, "err", err)
		}
	})
}

// Run is the sdk.Listener: every remote broadcast under the prefix becomes
// a broadcast started through p at its LocalPath, its tracks and frames
// written again (see the package doc), and ends when the remote one does.
func (s *PrefixSource) Run(ctx context.Context, p *sdk.Publisher) error {
	return s.run(ctx, func(ctx context.Context, path string, local *moq.BroadcastReader) {
		b, err := p.Start(path)
		if err != nil {
			s.log.Warn("moq source: cannot start a mirrored broadcast", "path", path, "err", err)
			return
		}
		defer b.End()
		if err := copyMedia(ctx, local, b.Writer(), s.log.With("path", path)); err != nil {
			s.log.Warn("moq source: mirrored broadcast failed", "path", path, "err", err)
		}
	})
}

// mirrored is a remote broadcast being mirrored.
type mirrored struct {
	m *mirror
	// Since the relay announced its end: whether it is gone, since when,
	// and in which session. It ends for good once that session has been
	// live for trackEndGrace after it (the relay ended it: a relay that
	// shuts down may announce the end of its broadcasts first), or once a
	// newer session has been live for ReturnGrace without it.
	gone   bool
	goneAt time.Time
	goneIn *protocol.Session
}

// deadline is when e ends unless it is announced again, given the current
// session cur, made at curSince; false while there is none.
func (e *mirrored) deadline(cur *protocol.Session, curSince time.Time, returnGrace time.Duration) (time.Time, bool) {
	switch {
	case !e.gone || cur == nil:
		return time.Time{}, false
	case cur == e.goneIn:
		return e.goneAt.Add(trackEndGrace), true
	}
	from := e.goneAt
	if curSince.After(from) {
		from = curSince
	}
	return from.Add(returnGrace), true
}

// run follows the relay's announcements under the prefix: each broadcast
// announced gets a mirror, handed to attach on its own goroutine (attach
// returns at the latest when the mirror ends), until ctx ends or the
// client stops.
func (s *PrefixSource) run(ctx context.Context, attach func(ctx context.Context, path string, local *moq.BroadcastReader)) error {
	r, err := connect(ctx, s.cfg.URL, s.cfg.Prefix, s.cfg.Dial, s.cfg.Backoff, s.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer r.close()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	mirrors := make(map[string]*mirrored)
	defer func() {
		cancel()
		for _, e := range mirrors {
			e.m.close()
		}
		wg.Wait()
	}()

	ann := r.consume.Announced(s.cfg.Prefix)
	anns := make(chan moq.Announcement)
	wg.Go(func() {
		defer ann.Close()
		for {
			a, err := ann.Next(ctx)
			if err != nil {
				return
			}
			select {
			case anns <- a:
			case <-ctx.Done():
				return
			}
		}
	})
	sess, changed := r.client.Session()
	sessSince := time.Now()
	check := time.NewTimer(time.Hour)
	check.Stop()
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.client.Done():
			return r.stopped()
		case a := <-anns:
			e := mirrors[a.Path]
			switch {
			case a.Active && e != nil:
				e.gone = false // back: its tracks subscribe again by themselves
			case a.Active:
				path, err := s.LocalPath(a.Path)
				if err != nil {
					s.log.Warn("moq source: not mirroring a broadcast", "remote", a.Path, "err", err)
					continue
				}
				m := newMirror(r, a.Path, s.cfg.Cache, s.log)
				mirrors[a.Path] = &mirrored{m: m}
				s.log.Info("moq source: mirroring a broadcast", "remote", a.Path, "path", path)
				wg.Go(func() { attach(ctx, path, m.local.Reader()) })
			case e != nil:
				e.gone, e.goneAt, e.goneIn = true, time.Now(), sess
			}
		case <-changed:
			sess, changed = r.client.Session()
			sessSince = time.Now()
		case <-check.C:
			now := time.Now()
			for path, e := range mirrors {
				if d, ok := e.deadline(sess, sessSince, s.cfg.ReturnGrace); ok && !d.After(now) && sess.Err() == nil {
					e.m.close()
					delete(mirrors, path)
					s.log.Info("moq source: mirrored broadcast ended", "remote", path)
				}
			}
		}
		// Wake up at the next deadline.
		check.Stop()
		if sess != nil && sess.Err() != nil {
			continue // ending: decide once the client says what follows
		}
		var next time.Time
		for _, e := range mirrors {
			if d, ok := e.deadline(sess, sessSince, s.cfg.ReturnGrace); ok && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
		if !next.IsZero() {
			check.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// copyMedia writes the media of the broadcast local into w: the tracks of
// its catalog as they appear, and their frames, until ctx ends or local
// ends (nil), or w fails.
func copyMedia(ctx context.Context, local *moq.BroadcastReader, w *sdk.BroadcastWriter, log *slog.Logger) error {
	r, err := sdk.NewBroadcastReaderFrom(local, moq.FromLatest)
	if err != nil {
		return err
	}
	defer r.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := r.WaitCatalog(ctx); err != nil {
		if ctx.Err() != nil || errors.Is(err, moq.ErrClosed) {
			return nil
		}
		return err
	}
	failed := make(chan error, 1)
	added := make(map[string]bool)
	for {
		changed := r.Changed()
		var fresh []sdk.Track
		for _, t := range r.Tracks() {
			if !added[t.Name] {
				// Written again in the legacy container.
				t.Container, t.Init, t.Timescale = "", nil, 0
				fresh = append(fresh, t)
			}
		}
		if len(fresh) > 0 {
			tws, err := w.AddTracks(fresh...)
			if err != nil {
				return err
			}
			for i, tw := range tws {
				added[fresh[i].Name] = true
				tr, err := r.Subscribe(fresh[i].Name)
				if err != nil {
					log.Warn("moq source: cannot read a mirrored track", "track", fresh[i].Name, "err", err)
					continue
				}
				wg.Go(func() {
					defer tr.Close()
					if err := copyFrames(ctx, tr, tw); err != nil && ctx.Err() == nil {
						select {
						case failed <- err:
						default:
						}
					}
				})
			}
		}
		select {
		case <-changed:
		case <-local.Done():
			return nil
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		}
	}
}

// copyFrames writes the frames of tr into tw until tr ends. A frame w
// refuses (a timestamp out of range) is skipped.
func copyFrames(ctx context.Context, tr *sdk.TrackReader, tw *sdk.TrackWriter) error {
	for {
		f, err := tr.ReadFrame(ctx)
		if err != nil {
			return nil // the track ended; the broadcast's end ends the copy
		}
		if err := tw.WriteFrame(f); err != nil && errors.Is(err, moq.ErrClosed) {
			return err
		}
	}
}

package rtmp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/bluenviron/gortmplib"
)

// errReconfigure ends a connection whose H.264 or H.265 parameter sets
// changed (an Annex B track's encoder was reconfigured): the next one
// announces the new ones, starting at the keyframe that brought them.
var errReconfigure = errors.New("rtmp: the parameter sets changed")

// stableAfter is how long a connection must have lasted for the backoff
// to start again from Backoff.Min after it ends.
const stableAfter = 10 * time.Second

// send runs the connections to the server, one after the other, until ctx
// ends, the queue is closed and drained, or the server stayed unreachable
// for Backoff.GiveUpAfter. It is the queue's only reader.
func (s *Sink) send(ctx context.Context, log *slog.Logger, q *queue, tracks []*outTrack) error {
	var carry *item // the keyframe the next connection starts at
	failures := 0
	down := time.Now() // since when nothing could be published
	resumed := false
	for {
		began := time.Now()
		published, err := s.session(ctx, log, q, tracks, &carry, resumed)
		if errors.Is(err, errReconfigure) {
			// The queue stays live: what follows the keyframe carried
			// over goes out on the next connection.
			failures, down, resumed = 0, time.Now(), true
			log.Info("rtmp: the parameter sets changed; reconnecting to announce them")
			continue
		}
		q.setLive(false)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errQueueClosed):
			return nil
		case published:
			down, resumed = time.Now(), true
			if time.Since(began) >= stableAfter {
				failures = 0 // else a server that drops every publish at once is not retried in a tight loop
			}
		}
		if q.isClosed() {
			return nil // the broadcast ended: nothing left to send
		}
		failures++
		if g := s.cfg.Backoff.GiveUpAfter; g > 0 && time.Since(down) >= g {
			return fmt.Errorf("%w after %s without a connection: %w", ErrGaveUp, time.Since(down).Round(time.Second), err)
		}
		wait := s.cfg.Backoff.Wait(failures - 1)
		if published {
			log.Warn("rtmp: connection lost; reconnecting", "in", wait.Round(time.Millisecond), "err", err)
		} else {
			log.Warn("rtmp: cannot publish; retrying", "in", wait.Round(time.Millisecond), "attempt", failures, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-q.done: // the broadcast ended meanwhile
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// connect opens a connection and gets the server to accept the publish,
// within Config.ConnectTimeout.
func (s *Sink) connect(ctx context.Context) (*gortmplib.Client, error) {
	var patched *fcPublishConn
	dial := dialer(s.cfg.DialContext)
	c := &gortmplib.Client{URL: s.url, Publish: true, TLSConfig: s.cfg.TLSConfig,
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			nc, err := dial(ctx, network, address)
			patched, _ = nc.(*fcPublishConn)
			return nc, err
		}}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	if err := c.Initialize(cctx); err != nil {
		if errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("no answer within %s: %w", s.cfg.ConnectTimeout, err)
		}
		return nil, err
	}
	if patched != nil {
		patched.done = true // the setup is over: reads go through unchanged
	}
	return c, nil
}

// session runs one connection: connect and publish, then write the
// queued frames from a keyframe on until a write fails, ctx ends or the
// queue is drained after its end. published reports whether the
// connection got as far as announcing its tracks.
func (s *Sink) session(ctx context.Context, log *slog.Logger, q *queue, tracks []*outTrack, carry **item, resumed bool) (published bool, err error) {
	c, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	nc := c.NetConn()
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	log.Info("rtmp: connected")
	q.setLive(true)

	var (
		w   *gortmplib.Writer
		gts []*gortmplib.Track
		clk *clock
	)
	for {
		var it item
		if *carry != nil {
			it, *carry = **carry, nil
		} else if it, err = q.pop(ctx); err != nil {
			return published, err
		}
		o := tracks[it.track]
		u, err := o.prepare(&it.f)
		if err != nil {
			s.unsent.Add(1)
			s.badLog.Log(log, slog.LevelWarn, "rtmp: frame not sent: "+err.Error(), "track", o.t.Name)
			continue
		}
		if w == nil {
			if !it.key {
				s.unsent.Add(1)
				continue
			}
			if gts, err = codecsOf(tracks); err != nil {
				s.unsent.Add(1) // an Annex B track without parameter sets yet
				continue
			}
			w = &gortmplib.Writer{Conn: c, Tracks: gts}
			_ = nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if err := w.Initialize(); err != nil {
				return false, fmt.Errorf("announcing the tracks: %w", err)
			}
			clk = newClock(tracks)
			published = true
			s.connections.Add(1)
			msg := "rtmp: publishing"
			if resumed {
				msg = "rtmp: reconnected; publishing from a keyframe"
			}
			log.Info(msg, "codecs", codecList(tracks), "flv", flavour(tracks))
		} else if u.newConfig {
			*carry = &it
			return published, errReconfigure
		} else if it.gap {
			clk.restart(tracks)
		}
		dts := clk.decodeTime(it.track, o, &it.f, u.nalus)
		p, d, ok := clk.times(it.track, it.f.PTS, dts)
		if !ok {
			s.unsent.Add(1)
			continue
		}
		_ = nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if err := o.write(w, gts[it.track], u, p, d); err != nil {
			return published, err
		}
		s.frames.Add(1)
		s.bytes.Add(uint64(len(it.f.Payload)))
	}
}

// codecsOf returns gortmplib's tracks for the sink's, in the same order.
func codecsOf(tracks []*outTrack) ([]*gortmplib.Track, error) {
	gts := make([]*gortmplib.Track, len(tracks))
	for i, o := range tracks {
		c, err := o.gortmplibCodec()
		if err != nil {
			return nil, err
		}
		gts[i] = &gortmplib.Track{Codec: c}
	}
	return gts, nil
}

// codecList names the codecs sent, for logs.
func codecList(tracks []*outTrack) string {
	names := make([]string, len(tracks))
	for i, o := range tracks {
		names[i] = o.codec.String()
	}
	return strings.Join(names, ",")
}

// flavour says whether the tags are legacy FLV or Enhanced RTMP (which
// gortmplib uses for any codec legacy FLV lacks).
func flavour(tracks []*outTrack) string {
	for _, o := range tracks {
		if !o.codec.legacy() {
			return "enhanced"
		}
	}
	return "legacy"
}

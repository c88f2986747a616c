package rtmp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"time"

	"github.com/moqbridge/moqbridge/sdk"
)

// errLive reports a publish refused because another client of this server
// publishes at the path (and replacing is off).
var errLive = errors.New("a publisher is already live at this path")

// stream is one broadcast this server publishes, outliving the connections
// that feed it: when its publisher drops, it lingers (Config.Linger) and a
// publisher that returns with the same stream key continues it, into the
// same tracks with the same clock, so that MOQ subscribers stay subscribed
// and see group sequences and timestamps go on.
//
// The fields below mu-guarded are owned by Server.mu; the media fields
// (clock, tracks, reserved, played) by the connection that owns the
// stream (owner), handed from one owner to the next under Server.mu.
type stream struct {
	path string
	key  string
	pub  *sdk.Publisher // what started b (Config.Route may pick one per publish)
	// linger is how long it waits for its publisher to return
	// (Config.Linger, or its route's).
	linger time.Duration
	b      *sdk.Broadcast // nil for a pulled stream, whose Source is run on a writer
	w      *sdk.BroadcastWriter

	// Guarded by Server.mu.
	owner     *owner      // the connection feeding it; nil while it lingers
	lingerGen int         // bumped to cancel a pending linger timer
	handover  bool        // a new publisher replaces the owner: release keeps it
	timer     *time.Timer // ends it when its publisher does not return

	clock    clock
	tracks   []*liveTrack // the tracks of the current (or last) connection
	reserved []*liveTrack // earlier tracks kept for tracks configured at their first keyframe
	played   bool         // a frame was written (a Pull resets it per connection)
}

// liveTrack is a track of a stream with the clock state that keeps its
// decode times monotonic across connections.
type liveTrack struct {
	w  *sdk.TrackWriter
	tc *trackClock
}

// streamPolicy is how a publish treats its stream: the linger of a new
// one, and whether it takes over from a live publisher.
type streamPolicy struct {
	linger  time.Duration
	replace bool
}

// owner is a connection feeding a stream; released is closed once it let
// go of the stream.
type owner struct {
	conn     net.Conn
	released chan struct{}
}

// ended reports whether the broadcast ended without this server ending it
// (the Publisher closed).
func (st *stream) ended() bool {
	select {
	case <-st.b.Done():
		return true
	default:
		return false
	}
}

// acquire makes nc the publisher of the stream at path: a new broadcast,
// or the lingering one when the same key returns (resumed is then true).
// A stream fed by another connection is refused with errLive, or, with
// Config.Replace, taken over once that connection let go of it.
func (s *Server) acquire(ctx context.Context, p *sdk.Publisher, policy streamPolicy, path, key string, nc net.Conn) (st *stream, o *owner, resumed bool, err error) {
	o = &owner{conn: nc, released: make(chan struct{})}
	for {
		s.mu.Lock()
		st = s.streams[path]
		if st != nil && st.owner == nil && (st.key != key || st.pub != p || st.ended()) {
			// Lingering for another key or route, or ended meanwhile: it
			// ends now and the new publisher starts afresh.
			s.dropLocked(st)
			s.mu.Unlock()
			st.b.End()
			continue
		}
		switch {
		case st == nil:
			b, err := p.Start(path)
			if err != nil {
				s.mu.Unlock()
				return nil, nil, false, err
			}
			st = &stream{path: path, key: key, pub: p, linger: policy.linger, b: b, w: b.Writer(), owner: o}
			s.streams[path] = st
			s.mu.Unlock()
			return st, o, false, nil
		case st.owner == nil:
			st.lingerGen++
			if st.timer != nil {
				st.timer.Stop()
			}
			st.owner = o
			st.clock.resume()
			s.mu.Unlock()
			return st, o, true, nil
		case !policy.replace, st.pub != p:
			// Another route's broadcast is never taken over.
			s.mu.Unlock()
			return nil, nil, false, errLive
		}
		old := st.owner
		st.handover = true
		s.mu.Unlock()
		s.log.Info("rtmp: a new publisher replaces the live one", "path", path,
			"old", old.conn.RemoteAddr().String(), "new", nc.RemoteAddr().String())
		_ = old.conn.Close()
		select {
		case <-old.released:
		case <-ctx.Done():
			return nil, nil, false, ctx.Err()
		}
	}
}

// release lets go of a stream its owner o fed. The broadcast lingers for
// Config.Linger, waiting for its publisher to return; it ends at once when
// lingering is off or endNow (the server stops, the publish never got its
// media flowing).
func (s *Server) release(st *stream, o *owner, endNow bool) {
	s.mu.Lock()
	if st.owner != o {
		s.mu.Unlock()
		return
	}
	st.owner = nil
	st.reserveTracks()
	close(o.released)
	if st.handover && !st.ended() {
		st.handover = false // the replacing publisher takes it
		s.mu.Unlock()
		return
	}
	if st.linger <= 0 || endNow || st.ended() {
		s.dropLocked(st)
		s.mu.Unlock()
		st.b.End()
		return
	}
	st.lingerGen++
	gen := st.lingerGen
	st.timer = time.AfterFunc(st.linger, func() { s.lingerEnded(st, gen) })
	s.mu.Unlock()
	s.log.Info("rtmp: publisher gone; the broadcast waits for it to return", "path", st.path, "linger", st.linger)
}

// lingerEnded ends a stream whose publisher did not return in time.
func (s *Server) lingerEnded(st *stream, gen int) {
	s.mu.Lock()
	if s.streams[st.path] != st || st.owner != nil || st.lingerGen != gen {
		s.mu.Unlock()
		return
	}
	s.dropLocked(st)
	s.mu.Unlock()
	st.b.End()
	s.log.Info("rtmp: broadcast ended: its publisher did not return", "path", st.path, "linger", st.linger)
}

// dropLocked forgets st (s.mu held); the caller ends its broadcast.
func (s *Server) dropLocked(st *stream) {
	if st.timer != nil {
		st.timer.Stop()
	}
	st.lingerGen++
	if s.streams[st.path] == st {
		delete(s.streams, st.path)
	}
}

// endLingering ends every stream still lingering (when the server stops).
func (s *Server) endLingering() {
	s.mu.Lock()
	var ending []*stream
	for _, st := range s.streams {
		if st.owner == nil {
			s.dropLocked(st)
			ending = append(ending, st)
		}
	}
	s.mu.Unlock()
	for _, st := range ending {
		st.b.End()
	}
}

// reserveTracks keeps the tracks of the connection that fed the stream for
// the next one to continue (takeEarlier), or to close (closeReserved).
func (st *stream) reserveTracks() {
	st.reserved = append(st.tracks, st.reserved...)
	st.tracks = nil
}

// takeEarlier returns the earlier track that t continues: one of the
// stream's reserved tracks describing the same media (codec, decoder
// configuration, size, sample rate, channels). Reserved tracks of the same
// codec family that do not match are closed (they leave the catalog): the
// new publisher's track replaces them.
func (st *stream) takeEarlier(t sdk.Track) *liveTrack {
	for i, lt := range st.reserved {
		if sameMedia(lt.w.Track(), t) {
			st.reserved = append(st.reserved[:i], st.reserved[i+1:]...)
			return lt
		}
	}
	return nil
}

// closeReserved closes the reserved tracks for which keep reports false.
func (st *stream) closeReserved(keep func(sdk.Track) bool) {
	kept := st.reserved[:0]
	for _, lt := range st.reserved {
		if keep(lt.w.Track()) {
			kept = append(kept, lt)
		} else {
			_ = lt.w.Close()
		}
	}
	clear(st.reserved[len(kept):])
	st.reserved = kept
}

// sameMedia reports whether two tracks describe the same media, so that
// frames of one can continue the other's track.
func sameMedia(a, b sdk.Track) bool {
	return a.Kind == b.Kind && a.Codec == b.Codec && bytes.Equal(a.DecoderConfig, b.DecoderConfig) &&
		a.Width == b.Width && a.Height == b.Height && a.SampleRate == b.SampleRate && a.Channels == b.Channels
}

package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// serveAnnounce answers the peer's ANNOUNCE_INTEREST with the broadcasts of
// the publish moq.Origin under the requested prefix, then with live changes,
// until either side ends the stream.
func (s *Session) serveAnnounce(str transport.Stream, r *wire.Reader) {
	body, err := r.ReadMessage(s.limits.MaxMessageSize)
	if err != nil {
		s.reject(str, codeFor(err), fmt.Errorf("announce interest: %w", err))
		return
	}
	interest, err := wire.DecodeAnnounceInterest(s.version, body)
	if err != nil {
		s.reject(str, codeFor(err), fmt.Errorf("announce interest: %w", err))
		return
	}
	if err := s.checkPath("announce prefix", interest.Prefix); err != nil {
		s.reject(str, codeFor(err), err)
		return
	}
	if !s.perm.overlaps(s.perm.Subscribe, interest.Prefix) {
		s.reject(str, wire.CodeUnauthorized, fmt.Errorf("announce interest in %q is outside the session's subscribe permissions", interest.Prefix))
		return
	}

	s.noteInterest(r, s.localPath(interest.Prefix), true)
	defer s.noteInterest(r, "", false)

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// The peer ends its interest with FIN or a reset; nothing else may
	// follow the interest message.
	peerDone := make(chan struct{})
	s.spawn(func() {
		defer close(peerDone)
		defer cancel()
		_, _ = r.ReadMessage(s.limits.MaxMessageSize)
	})
	defer func() {
		str.CancelRead(uint64(wire.CodeCancel))
		<-peerDone
	}()

	fullPrefix := s.localPath(interest.Prefix)
	var ann *moq.AnnouncementReader
	if s.publish != nil {
		ann = s.publish.Announced(fullPrefix)
		defer ann.Close()
	}
	// told holds the suffixes the peer currently believes active, so that
	// what goes on the wire alternates active/ended per path whatever the
	// moq.Origin reports.
	told := make(map[string]bool)
	visible := func(a moq.Announcement) (string, bool) {
		if !moq.HasPathPrefix(a.Path, fullPrefix) {
			return "", false
		}
		rel := moq.PathSuffix(a.Path, s.perm.Root)
		if !s.perm.may(s.perm.Subscribe, rel) {
			return "", false
		}
		return moq.PathSuffix(a.Path, fullPrefix), true
	}

	var buf []byte
	if s.version <= Lite02 {
		// Lite01/02 open with ANNOUNCE_INIT listing what is active now.
		var init wire.AnnounceInit
		if ann != nil {
			for {
				a, ok, err := ann.TryNext()
				if err != nil || !ok {
					break
				}
				suffix, vis := visible(a)
				if !vis || !a.Active || s.isOwn(a.Broadcast) || told[suffix] {
					continue
				}
				told[suffix] = true
				init.Suffixes = append(init.Suffixes, suffix)
			}
		}
		if _, err := str.Write(wire.AppendAnnounceInit(nil, s.version, init)); err != nil {
			return
		}
	}
	if ann == nil {
		<-ctx.Done()
		_ = str.Close()
		return
	}
	for {
		a, err := ann.Next(ctx)
		if err != nil {
			break
		}
		suffix, vis := visible(a)
		if !vis {
			continue
		}
		if a.Active {
			if told[suffix] || s.isOwn(a.Broadcast) {
				continue
			}
			told[suffix] = true
		} else {
			if !told[suffix] {
				continue
			}
			delete(told, suffix)
		}
		buf = wire.AppendAnnounce(buf[:0], s.version, wire.Announce{Active: a.Active, Suffix: suffix})
		if _, err := str.Write(buf); err != nil {
			return
		}
	}
	_ = str.Close()
}

// overlaps reports whether interest in prefix can see anything the list
// allows: prefix lies under an allowed prefix, or an allowed prefix lies
// under it (then the announcements are filtered per path).
func (p Permissions) overlaps(list []string, prefix string) bool {
	if list == nil {
		return true
	}
	for _, allowed := range list {
		if moq.HasPathPrefix(prefix, allowed) || moq.HasPathPrefix(allowed, prefix) {
			return true
		}
	}
	return false
}

// isOwn reports whether b was learned from this very session, so it is not
// announced back to the peer that published it.
func (s *Session) isOwn(b *moq.BroadcastReader) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.own[b]
	return ok
}

// runAnnounceSubscriber asks the peer for its broadcasts under prefix and
// mirrors them into the consume moq.Origin for as long as the stream lives.
func (s *Session) runAnnounceSubscriber(prefix string) {
	str, err := s.conn.OpenStream(s.ctx)
	if err != nil {
		return
	}
	stop := context.AfterFunc(s.ctx, func() {
		str.CancelRead(uint64(wire.CodeCancel))
		str.CancelWrite(uint64(wire.CodeCancel))
	})
	defer stop()
	msg := wire.AppendStreamType(nil, wire.StreamAnnounce)
	msg = wire.AppendAnnounceInterest(msg, s.version, wire.AnnounceInterest{Prefix: prefix})
	if _, err := str.Write(msg); err != nil {
		return
	}
	active := make(map[string]bool) // wire paths announced on this stream
	defer func() {
		for p := range active {
			s.removeRemote(p)
		}
	}()
	r := wire.NewReader(str)
	fail := func(code ErrorCode, err error) {
		s.log.Warn("moq announce stream failed", "code", code.String(), "err", err)
		s.stats.rejected.Add(1)
		str.CancelRead(uint64(code))
		str.CancelWrite(uint64(code))
	}
	if s.version <= Lite02 {
		body, err := r.ReadMessage(s.limits.MaxMessageSize)
		if err != nil {
			var se *StreamError
			switch {
			case errors.Is(err, io.EOF) || s.ctx.Err() != nil:
			case errors.As(err, &se) && se.Remote:
				// The peer refused the interest (a token without
				// subscribe rights there): nothing to answer.
				s.log.Debug("moq announce interest refused", "prefix", prefix, "err", err)
			default:
				fail(codeFor(err), fmt.Errorf("announce init: %w", err))
			}
			return
		}
		init, err := wire.DecodeAnnounceInit(s.version, body)
		if err != nil {
			fail(codeFor(err), fmt.Errorf("announce init: %w", err))
			return
		}
		for _, suffix := range init.Suffixes {
			p := moq.JoinPath(prefix, suffix)
			if err := s.addRemote(p); err != nil {
				fail(codeFor(err), err)
				return
			}
			active[p] = true
		}
	}
	for {
		body, err := r.ReadMessage(s.limits.MaxMessageSize)
		if err != nil {
			if !errors.Is(err, io.EOF) && s.ctx.Err() == nil {
				s.log.Debug("moq announce stream ended", "err", err)
			}
			_ = str.Close()
			return
		}
		a, err := wire.DecodeAnnounce(s.version, body)
		if err != nil {
			fail(codeFor(err), fmt.Errorf("announce: %w", err))
			return
		}
		p := moq.JoinPath(prefix, a.Suffix)
		if a.Active {
			// A repeated active is tolerated: the newer announcement
			// replaces the older broadcast.
			if err := s.addRemote(p); err != nil {
				fail(codeFor(err), err)
				return
			}
			active[p] = true
		} else if active[p] {
			delete(active, p)
			s.removeRemote(p)
		}
	}
}

// addRemote publishes a broadcast the peer announced at wirePath into the
// consume moq.Origin; its tracks are subscribed upstream on first demand.
func (s *Session) addRemote(wirePath string) error {
	if err := s.checkPath("announced path", wirePath); err != nil {
		return err
	}
	if !s.perm.may(s.perm.Publish, wirePath) {
		return coded(wire.CodeUnauthorized, "announce of %q is outside the session's publish permissions", wirePath)
	}
	local := s.localPath(wirePath)
	b := s.newRemoteBroadcast(wirePath)
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		_ = b.Close()
		return nil
	}
	old := s.remote[local]
	s.remote[local] = b
	s.own[b.Reader()] = struct{}{}
	s.mu.Unlock()
	if old != nil {
		s.forget(old, nil)
	}
	if err := s.consume.Publish(local, b.Reader()); err != nil {
		s.log.Warn("moq cannot publish announced broadcast", "path", local, "err", err)
	} else if active, err := s.consume.Consume(local); err == nil && active != b.Reader() {
		// The moq.Origin queued it behind the broadcast live at the path; it
		// goes live when that one ends.
		s.log.Info("moq broadcast waiting as backup", "path", local)
	}
	return nil
}

// removeRemote ends the broadcast the peer announced at wirePath. It leaves
// the consume moq.Origin at once, so no new reader finds it, but its tracks end
// by their own subscriptions: a publisher that finished FINs them, one that
// vanished has them reset, and closing the broadcast first would make both
// look finished to the readers. Whatever is still open after
// trackEndGrace, or when the session ends, is closed then.
func (s *Session) removeRemote(wirePath string) {
	local := s.localPath(wirePath)
	s.mu.Lock()
	b := s.remote[local]
	delete(s.remote, local)
	s.mu.Unlock()
	if b == nil {
		return
	}
	s.consume.Unpublish(local, b.Reader())
	idle := b.RequestsIdle()
	select {
	case <-idle:
		// Nothing subscribed: nothing to wait for (and a peer that
		// toggles announcements leaves no goroutines behind).
		s.forget(b, nil)
		return
	default:
	}
	s.spawn(func() {
		timer := time.NewTimer(trackEndGrace)
		defer timer.Stop()
		select {
		case <-idle:
			s.forget(b, nil)
		case <-timer.C:
			s.forget(b, nil)
		case <-s.ctx.Done():
			s.forget(b, s.Err())
		}
	})
}

// forget closes a remote broadcast, with err when it was lost, and drops it
// from the echo filter.
func (s *Session) forget(b *moq.BroadcastWriter, err error) {
	if err != nil {
		_ = b.CloseWithError(err)
	} else {
		_ = b.Close()
	}
	s.mu.Lock()
	delete(s.own, b.Reader())
	s.mu.Unlock()
}

// newRemoteBroadcast makes a broadcast whose tracks are fetched from the
// peer on demand: N local readers of a track share one upstream SUBSCRIBE.
func (s *Session) newRemoteBroadcast(wirePath string) *moq.BroadcastWriter {
	b := moq.NewBroadcastWithCache(s.cache)
	b.HandleRequests(func(t *moq.TrackWriter) { s.runUpstream(wirePath, t) })
	return b
}

// Consume returns the peer's broadcast at the root-relative path without
// waiting for an announcement; tracks are subscribed on first demand. A
// track the peer does not have ends with an error when subscribed. Calls
// for one path share one broadcast, which ends with the session.
func (s *Session) Consume(path string) *moq.BroadcastReader {
	path = moq.CleanPath(path)
	s.mu.Lock()
	if b, ok := s.consumed[path]; ok {
		s.mu.Unlock()
		return b.Reader()
	}
	b := s.newRemoteBroadcast(path)
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		_ = b.Close()
		return b.Reader()
	}
	s.consumed[path] = b
	s.mu.Unlock()
	return b.Reader()
}

// noteInterest records that the peer asked for announcements under prefix
// on the stream read by r (add), or that it stopped.
func (s *Session) noteInterest(r *wire.Reader, prefix string, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.interests == nil { // a session built by hand, as the fuzz targets do
		s.interests = make(map[*wire.Reader]string)
		s.interestCh = make(chan struct{})
	}
	if add {
		s.interests[r] = prefix
	} else {
		delete(s.interests, r)
	}
	close(s.interestCh)
	s.interestCh = make(chan struct{})
}

// PeerInterests returns the prefixes under which the peer has asked for
// this session's announcements (the root as ""), and a channel closed when
// they change. A relay asks under the prefixes a client may publish to, so
// a broadcast outside all of them never reaches it.
func (s *Session) PeerInterests() ([]string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.interestCh == nil {
		s.interestCh = make(chan struct{})
	}
	list := make([]string, 0, len(s.interests))
	for _, p := range s.interests {
		list = append(list, p)
	}
	slices.Sort(list)
	return slices.Compact(list), s.interestCh
}

// ErrNotWanted reports that the peer has not asked for the announcements of
// a path: a broadcast published there is not seen by it.
var ErrNotWanted = errors.New("moq: the peer does not ask for this path")

// interestGrace is how long after a session starts WaitWanted waits for the
// peer's announce interests: a relay asks for them as soon as the session
// is up.
const interestGrace = 2 * time.Second

// WaitWanted waits until the peer has asked for announcements under a
// prefix that covers path, so that a broadcast published there reaches it.
// If no such interest has arrived two seconds after the session started,
// it returns an error wrapping ErrNotWanted that lists the prefixes the
// peer did ask for. A relay that refuses a client's broadcasts (outside
// the token's put claim) shows it this way: MOQ Lite has no message that
// refuses an announcement.
func (s *Session) WaitWanted(ctx context.Context, path string) error {
	path = moq.CleanPath(path)
	deadline := time.NewTimer(time.Until(s.started.Add(interestGrace)))
	defer deadline.Stop()
	for {
		prefixes, changed := s.PeerInterests()
		for _, p := range prefixes {
			if moq.HasPathPrefix(path, p) {
				return nil
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			if len(prefixes) == 0 {
				return fmt.Errorf("%w %q: it asked for no announcements at all", ErrNotWanted, path)
			}
			return fmt.Errorf("%w %q: it asks only for broadcasts under %s", ErrNotWanted, path, quoteList(prefixes))
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return s.Err()
		}
	}
}

// quoteList writes prefixes as "a/", "b/".
func quoteList(prefixes []string) string {
	var b strings.Builder
	for i, p := range prefixes {
		if i > 0 {
			b.WriteString(", ")
		}
		if p == "" {
			b.WriteString("the root")
		} else {
			fmt.Fprintf(&b, "%q", p+"/")
		}
	}
	return b.String()
}

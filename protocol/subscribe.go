package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// upstreamSub is one SUBSCRIBE this session sent to the peer; incoming
// group streams carrying its id are written into track.
type upstreamSub struct {
	track *moq.TrackWriter
	ctx   context.Context // cancelled when the subscription ends
	// streams are the group streams being received, stopped when the
	// subscription ends (one watch for all, not one per stream).
	streams streamSet
}

// trackEndGrace bounds how long group streams may still arrive after the
// publisher has FINed a subscription (streams are independent, so the FIN
// can overtake the last groups).
const trackEndGrace = 2 * time.Second

// runUpstream subscribes to track t of the peer's broadcast at wirePath and
// feeds t until no local reader is left, the broadcast ends, or the peer
// ends the subscription.
func (s *Session) runUpstream(wirePath string, t *moq.TrackWriter) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	us := &upstreamSub{track: t, ctx: ctx}
	stopWatch := context.AfterFunc(ctx, func() { us.streams.end(wire.CodeCancel) })
	defer stopWatch()
	s.mu.Lock()
	id := s.nextSubID
	s.nextSubID++
	s.upstream[id] = us
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.upstream, id)
		s.mu.Unlock()
	}()

	str, err := s.conn.OpenStream(ctx)
	if err != nil {
		t.CloseWithError(fmt.Errorf("moq subscribe %s/%s: %w", wirePath, t.Name(), err))
		return
	}
	msg := wire.AppendStreamType(nil, wire.StreamSubscribe)
	sub := wire.Subscribe{ID: id, Broadcast: wirePath, Track: t.Name(), Priority: t.Priority(), Ordered: true}
	if t.RequestedFrom() == moq.FromOldest {
		// From group 0: the peer starts at the oldest group it still
		// has (Lite03 and later carry it; older peers start at their
		// latest group).
		sub.Start = wire.BoundAt(0)
	}
	msg = wire.AppendSubscribe(msg, s.version, sub)
	if _, err := str.Write(msg); err != nil {
		t.CloseWithError(fmt.Errorf("moq subscribe %s/%s: %w", wirePath, t.Name(), err))
		return
	}
	s.stats.subsMade.Add(1)

	respErr := make(chan error, 1)
	s.spawn(func() { respErr <- s.readSubscribeResponses(str) })

	unsubscribe := func() {
		_ = str.Close()
		str.CancelRead(uint64(wire.CodeCancel))
		<-respErr
	}
	select {
	case <-t.Unused():
		unsubscribe()
		_ = t.Close()
	case <-t.Done():
		unsubscribe()
	case <-s.ctx.Done():
		<-respErr
		t.CloseWithError(context.Cause(s.ctx))
	case err := <-respErr:
		if errors.Is(err, io.EOF) {
			// The publisher finished the track; let its last groups land.
			s.awaitLastGroups(us)
			_ = t.Close()
			_ = str.Close()
			return
		}
		var se *StreamError
		if errors.As(err, &se) && se.Code == uint64(wire.CodeNotFound) {
			err = fmt.Errorf("%w: %s/%s", moq.ErrNotFound, wirePath, t.Name())
		}
		str.CancelWrite(uint64(wire.CodeCancel))
		t.CloseWithError(fmt.Errorf("moq subscribe %s/%s: %w", wirePath, t.Name(), err))
	}
}

// trackEndQuiet is the least time awaitLastGroups waits, after the
// subscription's FIN, for group streams that have not arrived yet.
const trackEndQuiet = 100 * time.Millisecond

// awaitLastGroups returns once the group streams of a subscription the
// publisher has finished have landed. Streams are independent, so the FIN
// of the subscription can overtake the last groups' streams, which then
// arrive after it: it waits until the streams that arrived are done and
// none has arrived for a quiet spell (trackEndQuiet, or two round trips
// when the peer reports a longer one), within trackEndGrace in all.
func (s *Session) awaitLastGroups(us *upstreamSub) {
	quiet := trackEndQuiet
	if _, rtt := s.Bandwidth(); 2*time.Duration(rtt)*time.Millisecond > quiet {
		quiet = 2 * time.Duration(rtt) * time.Millisecond
	}
	grace := time.NewTimer(trackEndGrace)
	defer grace.Stop()
	for {
		select {
		case <-us.streams.drained():
		case <-grace.C:
			return
		case <-s.ctx.Done():
			return
		}
		seen := us.streams.added()
		wait := time.NewTimer(quiet)
		select {
		case <-wait.C:
		case <-grace.C:
			wait.Stop()
			return
		case <-s.ctx.Done():
			wait.Stop()
			return
		}
		if us.streams.added() == seen {
			return
		}
	}
}

// readSubscribeResponses reads SUBSCRIBE_OK and whatever follows it until
// the publisher ends the stream; io.EOF means it finished the track.
func (s *Session) readSubscribeResponses(str transport.Stream) error {
	r := wire.NewReader(str)
	r.SetBudget(s.mem)
	defer r.Release()
	first := true
	for {
		typ := wire.ResponseOK
		if s.version >= Lite03 {
			t, err := r.ReadVarint()
			if err != nil {
				return err
			}
			typ = t
		}
		body, err := r.ReadMessage(s.limits.MaxMessageSize)
		if err != nil {
			if errors.Is(err, io.EOF) && s.version >= Lite03 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		switch {
		case typ == wire.ResponseOK:
			if _, err := wire.DecodeSubscribeOK(s.version, body); err != nil {
				return coded(wire.CodeDecode, "subscribe ok: %w", err)
			}
		case typ == wire.ResponseDrop && !first:
			if d, err := wire.DecodeSubscribeDrop(s.version, body); err == nil {
				s.log.Debug("moq publisher dropped groups", "start", d.Start, "end", d.End, "code", d.Code)
			}
		default:
			return coded(wire.CodeUnexpectedMessage, "subscribe response type %d", typ)
		}
		first = false
	}
}

// groupOrderWait bounds how long a group stream waits for the stream opened
// before it to create its group: long enough to absorb goroutine scheduling,
// short enough that a peer stalling one stream's header cannot hold back
// the groups behind it.
const groupOrderWait = 100 * time.Millisecond

// receiveGroup reads one group stream from the peer into the track of the
// subscription it names. The relay drains every group at network speed: the
// frames go into the track without waiting for any reader. after is closed
// once the previous stream created its group; created is closed once this
// one has (or has given up).
//
// The session registered str in s.recv, which stops it when the session
// ends; receiveGroup removes it when done.
func (s *Session) receiveGroup(str transport.ReceiveStream, after <-chan struct{}, created chan struct{}) {
	isCreated := false
	markCreated := func() {
		if !isCreated {
			isCreated = true
			close(created)
		}
	}
	defer markCreated()
	defer s.recv.remove(str)
	r := wire.NewReader(str)
	r.SetBudget(s.mem)
	defer r.Release()
	reject := func(code ErrorCode, err error) {
		s.stats.rejected.Add(1)
		level := slog.LevelDebug
		if code == wire.CodeBoundsExceeded {
			level = slog.LevelWarn
		}
		s.limitLog.Log(s.log, level, "moq group stream rejected", "code", code.String(), "err", err)
		str.CancelRead(uint64(code))
	}
	typ, err := r.ReadByte()
	if err != nil {
		return
	}
	if typ != wire.UniGroup {
		reject(wire.CodeUnexpectedStream, fmt.Errorf("unknown uni stream type %#x", typ))
		return
	}
	body, err := r.ReadMessage(s.limits.MaxMessageSize)
	if err != nil {
		reject(codeFor(err), fmt.Errorf("group header: %w", err))
		return
	}
	hdr, err := wire.DecodeGroup(body)
	if err != nil {
		reject(codeFor(err), fmt.Errorf("group header: %w", err))
		return
	}
	s.mu.Lock()
	us := s.upstream[hdr.SubscribeID]
	s.mu.Unlock()
	if us == nil {
		// Like the reference subscriber: stop groups of unknown or finished
		// subscriptions without fuss.
		str.CancelRead(uint64(wire.CodeCancel))
		return
	}
	if !us.streams.add(str) {
		return
	}
	defer us.streams.remove(str)
	select {
	case <-after:
	default:
		wait := time.NewTimer(groupOrderWait)
		select {
		case <-after:
		case <-wait.C:
		case <-us.ctx.Done():
		}
		wait.Stop()
	}
	g, err := us.track.CreateGroup(hdr.Sequence)
	markCreated()
	if err != nil {
		code := wire.CodeCancel
		if errors.Is(err, moq.ErrDuplicate) {
			code = wire.CodeDuplicate
		}
		reject(code, fmt.Errorf("group %d: %w", hdr.Sequence, err))
		return
	}
	defer g.DoneReceiving()
	var received uint64 // payload bytes of the group so far
	for {
		// A relay reads no further ahead of its fastest subscriber than
		// the track's ingest slack (see paceIngest).
		us.track.PaceIngest(us.ctx)
		size, err := r.ReadVarint()
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = g.Close()
				s.stats.groupsReceived.Add(1)
				return
			}
			g.Abort(fmt.Errorf("moq group %d: %w", hdr.Sequence, err))
			return
		}
		if size > uint64(s.limits.MaxFrameSize) {
			g.Abort(fmt.Errorf("moq group %d: frame of %d bytes exceeds the limit", hdr.Sequence, size))
			reject(wire.CodeBoundsExceeded, fmt.Errorf("frame of %d bytes exceeds the %d-byte limit", size, s.limits.MaxFrameSize))
			return
		}
		if received += size; received > uint64(s.limits.MaxGroupSize) {
			g.Abort(fmt.Errorf("moq group %d: more than %d bytes", hdr.Sequence, s.limits.MaxGroupSize))
			reject(wire.CodeBoundsExceeded, fmt.Errorf("group %d of more than the %d-byte limit", hdr.Sequence, s.limits.MaxGroupSize))
			return
		}
		p, err := s.readFrame(r, g, int(size))
		if err != nil {
			g.Abort(fmt.Errorf("moq group %d: %w", hdr.Sequence, err))
			var we wireCoded
			switch {
			case errors.As(err, &we):
				reject(we.code, err)
			case !errors.As(err, new(*StreamError)):
				reject(wire.CodeWrongSize, fmt.Errorf("frame shorter than its size: %w", err))
			}
			return
		}
		expired, err := g.WriteReceived(p)
		if err != nil {
			str.CancelRead(uint64(wire.CodeCancel))
			return
		}
		s.stats.framesReceived.Add(1)
		if expired {
			// The cache let the group go for its budget or age while it
			// was still arriving: no reader joins it any more, and
			// receiving on would hold its frames outside every budget.
			g.Abort(fmt.Errorf("moq group %d: %w", hdr.Sequence, moq.ErrGroupDropped))
			reject(wire.CodeOld, fmt.Errorf("group %d still arriving after the cache let it go", hdr.Sequence))
			return
		}
	}
}

// readFrame reads a frame payload of n bytes from r into a group's memory.
// A frame that is already in r's buffer is copied at once. Otherwise memory
// follows the bytes that arrive: nothing until the first payload bytes are
// here, then frameStartSize, doubling as more arrive, up to n; while the
// frame is incomplete that memory counts against the session's buffer
// budgets. A budget error carries wire.CodeBoundsExceeded.
func (s *Session) readFrame(r *wire.Reader, g *moq.GroupWriter, n int) ([]byte, error) {
	if n <= r.Buffered() {
		p := g.AllocFrame(n)
		_ = r.ReadFull(p) // cannot fail: the bytes are buffered
		return p, nil
	}
	var f moq.FrameBuffer
	defer func() { s.mem.Release(f.Cap()) }()
	for f.Len() < n {
		if f.Len() == f.Cap() {
			// The first memory waits for the first bytes; later it
			// doubles what has arrived.
			if f.Len() == 0 {
				if err := r.Fill(); err != nil {
					return nil, unexpectedEOF(err)
				}
			}
			want := min(n, max(moq.FrameStartSize, 2*f.Len()))
			if err := s.mem.Reserve(want - f.Cap()); err != nil {
				return nil, fmt.Errorf("frame of %d bytes: %w", n, err)
			}
			g.GrowFrame(&f, want)
		}
		m, err := r.Read(f.Spare())
		f.Advance(m)
		if err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	return g.FinishFrame(&f), nil
}

// unexpectedEOF converts io.EOF into io.ErrUnexpectedEOF for reads of an
// item that had begun.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// streamSet holds the receive streams to stop when something ends (a
// session, a subscription), so that a stream needs no context watch of its
// own: a relay receives a stream per group.
type streamSet struct {
	mu    sync.Mutex
	strs  map[transport.ReceiveStream]struct{}
	ended bool
	code  ErrorCode
	idle  chan struct{} // closed when the set becomes empty, if someone waits
	adds  uint64        // streams ever added
}

// added returns how many streams were ever added.
func (ss *streamSet) added() uint64 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.adds
}

// add registers str. After end it stops str at once and returns false.
func (ss *streamSet) add(str transport.ReceiveStream) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		str.CancelRead(uint64(ss.code))
		return false
	}
	if ss.strs == nil {
		ss.strs = make(map[transport.ReceiveStream]struct{})
	}
	ss.strs[str] = struct{}{}
	ss.adds++
	return true
}

func (ss *streamSet) remove(str transport.ReceiveStream) {
	ss.mu.Lock()
	delete(ss.strs, str)
	if len(ss.strs) == 0 && ss.idle != nil {
		close(ss.idle)
		ss.idle = nil
	}
	ss.mu.Unlock()
}

// drained returns a channel closed once no stream is registered.
func (ss *streamSet) drained() <-chan struct{} {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.strs) == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if ss.idle == nil {
		ss.idle = make(chan struct{})
	}
	return ss.idle
}

// end stops every registered stream, and every later one, with code.
func (ss *streamSet) end(code ErrorCode) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return
	}
	ss.ended, ss.code = true, code
	for str := range ss.strs {
		str.CancelRead(uint64(code))
	}
}

package transport

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// qmuxSeeds are well-formed messages of both dialects, and cut or
// corrupted variants of them, for the fuzz targets below.
func qmuxSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, d := range []qmuxDialect{dialectLegacy, dialectQMux00} {
		seeds = append(seeds,
			appendStreamFrame(nil, d, 0, []byte("hello"), false),
			appendStreamFrame(nil, d, 2, bytes.Repeat([]byte{7}, 300), true),
			appendStreamFrame(nil, d, 1<<40, nil, true),
			appendResetStream(nil, d, 4, 11, 9),
			appendStopSending(nil, d, 3, 0),
			appendClose(nil, d, true, 404, "gone \xff away"),
		)
	}
	seeds = append(seeds,
		appendTransportParams(nil, transportParams{MaxData: 1 << 20, MaxStreamDataBidiLocal: 1 << 10, MaxStreamsBidi: 100, MaxStreamsUni: 100}),
		appendClose(nil, dialectQMux00, false, errCodeFlowControl, "flow"),
		appendValueFrame(nil, ftMaxData, 1<<30),
		appendValueFrame(nil, ftMaxStreamsUni, 64),
		appendValueFrame(nil, ftStreamsBlockedBidi, 8),
		appendValueFrame(nil, ftDataBlocked, 5),
		appendStreamValueFrame(nil, ftMaxStreamData, 0, 1<<20),
		appendStreamValueFrame(nil, ftStreamDataBlocked, 4, 3),
		append(appendStreamFrame(nil, dialectQMux00, 0, []byte("a"), false), appendStreamFrame(nil, dialectQMux00, 4, []byte("b"), true)...),
		[]byte{0x0c, 0x00, 0x05, 'x'},                                                  // STREAM with an offset, no length
		[]byte{0x31, 0x03, 1, 2, 3},                                                    // DATAGRAM with a length
		[]byte{0x0a, 0x00, 0x80, 0x10, 0x00, 0x00, 'x'},                                // length beyond the message
		[]byte{0xff, 0x51, 0x53, 0x30, 0x0d, 0x0a, 0x0d, 0x0a, 0x04, 0x08, 0x02, 0x40}, // parameters cut
		mustHexF(f, jsClientParams),
	)
	for _, s := range seeds[:len(seeds):len(seeds)] {
		if len(s) > 1 {
			seeds = append(seeds, s[:len(s)/2], s[:1])
		}
	}
	return seeds
}

func mustHexF(f *testing.F, s string) []byte {
	f.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzQMuxDecode: decoding any message in either dialect returns frames or
// a *frameError, never panics, and every decoded frame stays inside the
// message. A STREAM frame re-encodes to a message that decodes to the same
// stream, data and FIN, and close reasons are valid UTF-8.
func FuzzQMuxDecode(f *testing.F) {
	for _, s := range qmuxSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, d := range []qmuxDialect{dialectLegacy, dialectQMux00} {
			var frames []*qmuxFrame
			err := decodeMessage(d, msg, func(fr *qmuxFrame) error {
				frames = append(frames, fr)
				return nil
			})
			if err != nil {
				if fe, ok := errors.AsType[*frameError](err); !ok || fe.reason == "" {
					t.Fatalf("%s: % x: error %v is not a frame error with a reason", d, msg, err)
				}
			}
			for _, fr := range frames {
				checkFrame(t, d, msg, fr)
			}
		}
	})
}

func checkFrame(t *testing.T, d qmuxDialect, msg []byte, fr *qmuxFrame) {
	t.Helper()
	switch fr.kind {
	case fkStream:
		if len(fr.data) > len(msg) {
			t.Fatalf("%s: % x: %d bytes of stream data in a %d-byte message", d, msg, len(fr.data), len(msg))
		}
		if fr.id > maxVarint {
			return // not encodable; the session refuses it as a stream it never saw
		}
		again := appendStreamFrame(nil, d, fr.id, fr.data, fr.fin)
		var back []*qmuxFrame
		if err := decodeMessage(d, again, func(f *qmuxFrame) error {
			back = append(back, f)
			return nil
		}); err != nil || len(back) != 1 {
			t.Fatalf("%s: re-encoded STREAM % x: %d frames, %v", d, again, len(back), err)
		}
		if b := back[0]; b.kind != fkStream || b.id != fr.id || b.fin != fr.fin || !bytes.Equal(b.data, fr.data) {
			t.Fatalf("%s: STREAM id %d fin %v %d bytes came back as id %d fin %v %d bytes",
				d, fr.id, fr.fin, len(fr.data), b.id, b.fin, len(b.data))
		}
	case fkClose:
		if !utf8.ValidString(fr.reason) {
			t.Fatalf("%s: % x: close reason %q is not valid UTF-8", d, msg, fr.reason)
		}
	case 0:
		t.Fatalf("%s: % x: a frame of no kind", d, msg)
	}
}

// FuzzWSSessionFrames feeds a sequence of messages, as a peer sends them,
// through a WebSocket session's frame handling (no socket: the frames go
// straight to the state machine) in either dialect, then has the
// application read every stream. Whatever the peer sends, the session
// never panics, never buffers more unread bytes than its limits allow (per
// stream and in all), never holds more than a chunk of slack per stream
// beyond them, and never keeps more streams than it lets the peer open.
func FuzzWSSessionFrames(f *testing.F) {
	for _, s := range qmuxSeeds(f) {
		f.Add(false, s)
		f.Add(true, append(appendTransportParams(nil, transportParams{MaxData: 1 << 16}), s...))
	}
	// Many one-byte frames on a stream nobody reads.
	var tiny []byte
	for i := range 200 {
		tiny = append(tiny, appendStreamFrame(nil, dialectQMux00, uint64(i%3)*4, []byte{byte(i)}, false)...)
	}
	f.Add(true, append(appendTransportParams(nil, transportParams{}), tiny...))
	f.Fuzz(func(t *testing.T, qmux00 bool, data []byte) {
		d := dialectLegacy
		if qmux00 {
			d = dialectQMux00
		}
		s := fuzzWSSession(d)
		defer s.end()
		s.mu.Lock()
		defer s.mu.Unlock()
		// A qmux-00 message may hold several frames, so the whole input is
		// one message there; a legacy message holds one frame, so the
		// input is cut into messages at a length byte before each.
		msgs := [][]byte{data}
		if d == dialectLegacy {
			msgs = nil
			for len(data) > 0 {
				n := min(int(data[0]), len(data)-1)
				msgs = append(msgs, data[1:1+n])
				data = data[1+n:]
			}
		}
		for _, msg := range msgs {
			if s.closeErr != nil {
				break
			}
			err := decodeMessage(s.d, msg, s.handleFrameLocked)
			if _, full := errors.AsType[*bufferFullError](err); full {
				continue // the socket would wait for the application to read
			}
			if err != nil && s.closeErr == nil {
				v := asViolation(err)
				s.closeLocked(v, appendClose(nil, s.d, false, v.Code, v.Reason), 0)
			}
			checkWSBounds(t, s)
		}
		// The application reads whatever it was given.
		p := make([]byte, 1000)
		for _, st := range s.streams {
			for st.canRecv && st.buffered > 0 && st.recvErr == nil {
				if st.readLocked(p) == 0 {
					t.Fatalf("stream %d: %d bytes buffered but none read", st.id, st.buffered)
				}
			}
		}
		if s.closeErr == nil && s.buffered != 0 {
			t.Fatalf("%d bytes still buffered after every stream was read", s.buffered)
		}
	})
}

// fuzzWSSession is a WebSocket server session without a socket or
// goroutines, with small limits so that inputs of a few kB reach them.
func fuzzWSSession(d qmuxDialect) *fuzzSession {
	s := &wsSession{
		d:      d,
		server: true,
		limits: wsLimits{
			params: transportParams{
				MaxData: 4 << 10, MaxStreamDataBidiLocal: 1 << 10, MaxStreamDataBidiRemote: 1 << 10,
				MaxStreamDataUni: 1 << 10, MaxStreamsBidi: 4, MaxStreamsUni: 4,
			},
			legacyStreamBuffer: 1 << 10, legacySessionBuffer: 4 << 10, legacyMaxStreams: 4,
		},
		wake:    make(chan struct{}, 1),
		streams: make(map[uint64]*wsStream),
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.sockCtx, s.sockCancel = context.WithCancel(context.Background())
	if d == dialectLegacy {
		s.peerMaxStreams = [2]uint64{^uint64(0), ^uint64(0)}
		s.peerLimit = [2]uint64{s.limits.legacyMaxStreams, s.limits.legacyMaxStreams}
	} else {
		s.peerLimit = [2]uint64{s.limits.params.MaxStreamsBidi, s.limits.params.MaxStreamsUni}
		s.recvMax = s.limits.params.MaxData
	}
	return &fuzzSession{s}
}

type fuzzSession struct{ *wsSession }

// end releases what closeLocked started (its kill timer) and the contexts.
func (s *fuzzSession) end() {
	s.mu.Lock()
	if s.killTimer != nil {
		s.killTimer.Stop()
	}
	s.mu.Unlock()
	s.cancel(nil)
	s.sockCancel()
	for _, st := range s.streams {
		if st.sendCancel != nil {
			st.sendCancel(nil)
		}
	}
}

// checkWSBounds asserts what a peer can make the session hold.
func checkWSBounds(t *testing.T, s *fuzzSession) {
	t.Helper()
	l := s.limits
	perStream, total := l.legacyStreamBuffer, l.legacySessionBuffer
	if s.d == dialectQMux00 {
		perStream = int(max(l.params.MaxStreamDataBidiLocal, l.params.MaxStreamDataBidiRemote, l.params.MaxStreamDataUni))
		total = int(l.params.MaxData)
	}
	if s.buffered > total {
		t.Fatalf("%d unread bytes buffered, limit %d", s.buffered, total)
	}
	held, sum := 0, 0
	for _, st := range s.streams {
		if st.buffered > perStream {
			t.Fatalf("stream %d: %d unread bytes buffered, limit %d", st.id, st.buffered, perStream)
		}
		sum += st.buffered
		for _, b := range st.bufs {
			held += cap(b)
		}
	}
	if sum != s.buffered {
		t.Fatalf("streams buffer %d bytes, the session counts %d", sum, s.buffered)
	}
	if slack := len(s.streams) * recvChunkMax; held > s.buffered+slack {
		t.Fatalf("%d bytes buffered hold %d bytes of memory in %d streams", s.buffered, held, len(s.streams))
	}
	for dir := range 2 {
		if s.nextPeer[dir] > s.peerLimit[dir] {
			t.Fatalf("the peer opened %d streams of kind %d, limit %d", s.nextPeer[dir], dir, s.peerLimit[dir])
		}
	}
}

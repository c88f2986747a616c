package transport

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/quic-go/quic-go/quicvarint"
)

// This file holds the frame codec of the WebSocket fallback transport: QUIC
// style frames, one per WebSocket binary message, in the two dialects spoken
// by @moq/qmux 0.0.6. The session built on top of it is in qmuxsession.go.

// qmuxDialect selects the frame encoding of a WebSocket session.
type qmuxDialect uint8

const (
	// dialectLegacy is the "webtransport" subprotocol: one raw type byte,
	// no flow control, no transport parameters.
	dialectLegacy qmuxDialect = iota
	// dialectQMux00 is the "qmux-00" subprotocol: draft-ietf-quic-qmux-00
	// frames with varint types, transport parameters and flow control.
	dialectQMux00
)

func (d qmuxDialect) String() string {
	if d == dialectQMux00 {
		return subprotoQMux00
	}
	return subprotoLegacy
}

// WebSocket subprotocol names and prefixes.
const (
	subprotoLegacy = "webtransport"
	subprotoQMux00 = "qmux-00"
	prefixLegacy   = subprotoLegacy + "."
	prefixQMux00   = subprotoQMux00 + "."
)

// maxStreamPayload is the largest STREAM frame payload either end accepts in
// one WebSocket message: 16384 bytes minus 24 bytes of frame overhead. The
// browser side closes the connection on anything larger.
const maxStreamPayload = 16384 - 24

// wsReadLimit bounds one incoming WebSocket message. It leaves room for the
// largest STREAM frame plus headers, and for close reasons.
const wsReadLimit = 32 << 10

// maxCloseReason bounds the reason of an outgoing close frame.
const maxCloseReason = 1024

// maxVarint is the largest value a QUIC varint can carry.
const maxVarint = 1<<62 - 1

// Frame type values. The legacy dialect uses the same numbers as single raw
// bytes for the subset it knows.
const (
	ftResetStream        = 0x04
	ftStopSending        = 0x05
	ftStream             = 0x08 // 0x08–0x0f: bit 0x04 OFF, 0x02 LEN, 0x01 FIN
	ftMaxData            = 0x10
	ftMaxStreamData      = 0x11
	ftMaxStreamsBidi     = 0x12
	ftMaxStreamsUni      = 0x13
	ftDataBlocked        = 0x14
	ftStreamDataBlocked  = 0x15
	ftStreamsBlockedBidi = 0x16
	ftStreamsBlockedUni  = 0x17
	ftConnectionClose    = 0x1c
	ftApplicationClose   = 0x1d
	ftDatagram           = 0x30
	ftDatagramLen        = 0x31
	// ftTransportParams is QX_TRANSPORT_PARAMETERS, sent first by both ends
	// in the qmux-00 dialect; on the wire ff 51 53 30 0d 0a 0d 0a.
	ftTransportParams = 0x3f5153300d0a0d0a

	legacyStream    = 0x08
	legacyStreamFin = 0x09
)

// QUIC transport error codes used when closing a qmux-00 connection
// because of the peer's behaviour (RFC 9000 §20.1).
const (
	errCodeNoError            = 0x00
	errCodeInternal           = 0x01
	errCodeFlowControl        = 0x03
	errCodeStreamLimit        = 0x04
	errCodeStreamState        = 0x05
	errCodeFinalSize          = 0x06
	errCodeFrameEncoding      = 0x07
	errCodeTransportParameter = 0x08
	errCodeProtocolViolation  = 0x0a
)

// Transport parameter ids carried in QX_TRANSPORT_PARAMETERS.
const (
	tpInitialMaxData                 = 0x04
	tpInitialMaxStreamDataBidiLocal  = 0x05
	tpInitialMaxStreamDataBidiRemote = 0x06
	tpInitialMaxStreamDataUni        = 0x07
	tpInitialMaxStreamsBidi          = 0x08
	tpInitialMaxStreamsUni           = 0x09
)

// transportParams are the qmux-00 flow-control limits one end grants the
// other. Absent parameters are 0, as in QUIC.
type transportParams struct {
	MaxData                 uint64
	MaxStreamDataBidiLocal  uint64 // streams opened by the sender of these parameters
	MaxStreamDataBidiRemote uint64 // streams opened by the receiver
	MaxStreamDataUni        uint64 // unidirectional streams opened by the receiver
	MaxStreamsBidi          uint64
	MaxStreamsUni           uint64
}

// frameKind classifies a decoded frame.
type frameKind uint8

const (
	fkStream frameKind = iota + 1
	fkResetStream
	fkStopSending
	fkClose
	fkMaxData
	fkMaxStreamData
	fkMaxStreams
	fkDataBlocked
	fkStreamDataBlocked
	fkStreamsBlocked
	fkTransportParams
	fkIgnored // DATAGRAM and unknown qmux-00 frame types
)

// qmuxFrame is one decoded frame; which fields are set depends on kind.
type qmuxFrame struct {
	kind      frameKind
	id        uint64 // stream frames
	data      []byte // STREAM payload, aliasing the message
	fin       bool
	hasOffset bool
	offset    uint64
	code      uint64 // RESET_STREAM, STOP_SENDING, close
	appClose  bool   // close: application (0x1d, legacy) rather than transport (0x1c)
	reason    string // close
	value     uint64 // MAX_* and *_BLOCKED values, RESET_STREAM final size
	uni       bool   // MAX_STREAMS, STREAMS_BLOCKED
	params    transportParams
}

// frameError is a malformed frame: the connection is closed with
// FRAME_ENCODING_ERROR (or TRANSPORT_PARAMETER_ERROR for parameters).
type frameError struct {
	code   uint64
	reason string
}

func (e *frameError) Error() string { return "qmux: " + e.reason }

func malformed(format string, args ...any) error {
	return &frameError{code: errCodeFrameEncoding, reason: fmt.Sprintf(format, args...)}
}

// varintReader parses QUIC varints from a message, recording the first error.
type varintReader struct {
	b   []byte
	err error
}

func (r *varintReader) varint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n, err := quicvarint.Parse(r.b)
	if err != nil {
		r.err = malformed("truncated %s", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *varintReader) bytes(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = malformed("truncated %s", what)
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

// decodeMessage calls fn for each frame of one binary WebSocket message. A
// legacy message carries exactly one frame; a qmux-00 message normally does
// too, but frames are self-delimiting there, so several are accepted. An
// unknown qmux-00 frame type ends the message (its length is unknown), as
// the browser side does.
func decodeMessage(d qmuxDialect, msg []byte, fn func(*qmuxFrame) error) error {
	if len(msg) == 0 {
		return malformed("empty message")
	}
	if d == dialectLegacy {
		f, err := decodeLegacy(msg)
		if err != nil {
			return err
		}
		return fn(f)
	}
	r := &varintReader{b: msg}
	for len(r.b) > 0 {
		f := decodeQMux00(r)
		if r.err != nil {
			return r.err
		}
		if f.kind == fkIgnored {
			return nil
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func decodeLegacy(msg []byte) (*qmuxFrame, error) {
	r := &varintReader{b: msg[1:]}
	f := &qmuxFrame{}
	switch msg[0] {
	case legacyStream, legacyStreamFin:
		f.kind = fkStream
		f.id = r.varint("stream id")
		f.data = r.b
		f.fin = msg[0] == legacyStreamFin
	case ftResetStream:
		f.kind = fkResetStream
		f.id = r.varint("stream id")
		f.code = r.varint("error code")
	case ftStopSending:
		f.kind = fkStopSending
		f.id = r.varint("stream id")
		f.code = r.varint("error code")
	case ftApplicationClose:
		f.kind = fkClose
		f.appClose = true
		f.code = r.varint("error code")
		f.reason = strings.ToValidUTF8(string(r.b), "\uFFFD")
	default:
		return nil, malformed("unknown frame type %#x", msg[0])
	}
	return f, r.err
}

func decodeQMux00(r *varintReader) *qmuxFrame {
	f := &qmuxFrame{}
	typ := r.varint("frame type")
	switch {
	case typ >= ftStream && typ <= ftStream|0x07:
		f.kind = fkStream
		f.id = r.varint("stream id")
		if typ&0x04 != 0 {
			f.hasOffset = true
			f.offset = r.varint("stream offset")
		}
		if typ&0x02 != 0 {
			f.data = r.bytes(r.varint("stream length"), "stream data")
		} else {
			f.data = r.b
			r.b = nil
		}
		f.fin = typ&0x01 != 0
	case typ == ftResetStream:
		f.kind = fkResetStream
		f.id = r.varint("stream id")
		f.code = r.varint("error code")
		f.value = r.varint("final size")
	case typ == ftStopSending:
		f.kind = fkStopSending
		f.id = r.varint("stream id")
		f.code = r.varint("error code")
	case typ == ftConnectionClose || typ == ftApplicationClose:
		// Both carry the frame-type field, as @moq/qmux encodes them.
		f.kind = fkClose
		f.appClose = typ == ftApplicationClose
		f.code = r.varint("error code")
		r.varint("frame type")
		f.reason = strings.ToValidUTF8(string(r.bytes(r.varint("reason length"), "reason")), "\uFFFD")
	case typ == ftMaxData:
		f.kind = fkMaxData
		f.value = r.varint("maximum data")
	case typ == ftMaxStreamData:
		f.kind = fkMaxStreamData
		f.id = r.varint("stream id")
		f.value = r.varint("maximum stream data")
	case typ == ftMaxStreamsBidi || typ == ftMaxStreamsUni:
		f.kind = fkMaxStreams
		f.uni = typ == ftMaxStreamsUni
		f.value = r.varint("maximum streams")
	case typ == ftDataBlocked:
		f.kind = fkDataBlocked
		f.value = r.varint("limit")
	case typ == ftStreamDataBlocked:
		f.kind = fkStreamDataBlocked
		f.id = r.varint("stream id")
		f.value = r.varint("limit")
	case typ == ftStreamsBlockedBidi || typ == ftStreamsBlockedUni:
		f.kind = fkStreamsBlocked
		f.uni = typ == ftStreamsBlockedUni
		f.value = r.varint("limit")
	case typ == ftTransportParams:
		f.kind = fkTransportParams
		body := r.bytes(r.varint("parameters length"), "transport parameters")
		if r.err == nil {
			p, err := decodeTransportParams(body)
			if err != nil {
				r.err = err
			}
			f.params = p
		}
	case typ == ftDatagramLen:
		f.kind = fkIgnored
		r.bytes(r.varint("datagram length"), "datagram")
	default: // DATAGRAM without length, and unknown types
		f.kind = fkIgnored
		r.b = nil
	}
	return f
}

// decodeTransportParams parses (id, length, value) triples. Unknown ids are
// skipped; a known one must hold exactly one varint, except that an empty
// value leaves the default, as the browser side does.
func decodeTransportParams(b []byte) (transportParams, error) {
	var p transportParams
	r := &varintReader{b: b}
	for len(r.b) > 0 && r.err == nil {
		id := r.varint("parameter id")
		val := r.bytes(r.varint("parameter length"), "parameter value")
		if r.err != nil || len(val) == 0 {
			continue
		}
		var dst *uint64
		switch id {
		case tpInitialMaxData:
			dst = &p.MaxData
		case tpInitialMaxStreamDataBidiLocal:
			dst = &p.MaxStreamDataBidiLocal
		case tpInitialMaxStreamDataBidiRemote:
			dst = &p.MaxStreamDataBidiRemote
		case tpInitialMaxStreamDataUni:
			dst = &p.MaxStreamDataUni
		case tpInitialMaxStreamsBidi:
			dst = &p.MaxStreamsBidi
		case tpInitialMaxStreamsUni:
			dst = &p.MaxStreamsUni
		default:
			continue
		}
		v, n, err := quicvarint.Parse(val)
		if err != nil || n != len(val) {
			return p, &frameError{code: errCodeTransportParameter, reason: fmt.Sprintf("transport parameter %#x is not one varint", id)}
		}
		*dst = v
	}
	if r.err != nil {
		return p, &frameError{code: errCodeTransportParameter, reason: r.err.(*frameError).reason}
	}
	return p, nil
}

// appendTransportParams encodes a QX_TRANSPORT_PARAMETERS frame. All six
// parameters are written, in id order, with minimal varints; zero values are
// omitted as @moq/qmux does (absent means 0).
func appendTransportParams(b []byte, p transportParams) []byte {
	var body []byte
	for _, kv := range [...]struct{ id, v uint64 }{
		{tpInitialMaxData, p.MaxData},
		{tpInitialMaxStreamDataBidiLocal, p.MaxStreamDataBidiLocal},
		{tpInitialMaxStreamDataBidiRemote, p.MaxStreamDataBidiRemote},
		{tpInitialMaxStreamDataUni, p.MaxStreamDataUni},
		{tpInitialMaxStreamsBidi, p.MaxStreamsBidi},
		{tpInitialMaxStreamsUni, p.MaxStreamsUni},
	} {
		if kv.v == 0 {
			continue
		}
		v := min(kv.v, maxVarint)
		body = quicvarint.Append(body, kv.id)
		body = quicvarint.Append(body, uint64(quicvarint.Len(v)))
		body = quicvarint.Append(body, v)
	}
	b = quicvarint.Append(b, ftTransportParams)
	b = quicvarint.Append(b, uint64(len(body)))
	return append(b, body...)
}

// appendStreamFrame encodes a STREAM frame: legacy 0x08/0x09 id payload;
// qmux-00 0x0a/0x0b id length payload.
func appendStreamFrame(b []byte, d qmuxDialect, id uint64, data []byte, fin bool) []byte {
	if d == dialectLegacy {
		if fin {
			b = append(b, legacyStreamFin)
		} else {
			b = append(b, legacyStream)
		}
		b = quicvarint.Append(b, id)
		return append(b, data...)
	}
	typ := uint64(ftStream | 0x02)
	if fin {
		typ |= 0x01
	}
	b = quicvarint.Append(b, typ)
	b = quicvarint.Append(b, id)
	b = quicvarint.Append(b, uint64(len(data)))
	return append(b, data...)
}

// appendResetStream encodes RESET_STREAM; the legacy dialect has no final size.
func appendResetStream(b []byte, d qmuxDialect, id, code, finalSize uint64) []byte {
	b = appendType(b, d, ftResetStream)
	b = quicvarint.Append(b, id)
	b = quicvarint.Append(b, min(code, maxVarint))
	if d == dialectQMux00 {
		b = quicvarint.Append(b, finalSize)
	}
	return b
}

// appendStopSending encodes STOP_SENDING.
func appendStopSending(b []byte, d qmuxDialect, id, code uint64) []byte {
	b = appendType(b, d, ftStopSending)
	b = quicvarint.Append(b, id)
	return quicvarint.Append(b, min(code, maxVarint))
}

// appendClose encodes a connection close. The legacy dialect only knows
// APPLICATION_CLOSE (code, reason = rest). In qmux-00 both 0x1c (transport
// error) and 0x1d (application) carry code, frame type, reason length and
// reason, matching @moq/qmux.
func appendClose(b []byte, d qmuxDialect, app bool, code uint64, reason string) []byte {
	reason = truncateUTF8(reason, maxCloseReason)
	code = min(code, maxVarint)
	if d == dialectLegacy {
		b = append(b, ftApplicationClose)
		b = quicvarint.Append(b, code)
		return append(b, reason...)
	}
	typ := uint64(ftConnectionClose)
	if app {
		typ = ftApplicationClose
	}
	b = quicvarint.Append(b, typ)
	b = quicvarint.Append(b, code)
	b = quicvarint.Append(b, 0) // frame type that caused the close: unknown
	b = quicvarint.Append(b, uint64(len(reason)))
	return append(b, reason...)
}

// appendValueFrame encodes the qmux-00 frames made of a type and one value
// (MAX_DATA, MAX_STREAMS, DATA_BLOCKED, STREAMS_BLOCKED).
func appendValueFrame(b []byte, typ, v uint64) []byte {
	b = quicvarint.Append(b, typ)
	return quicvarint.Append(b, min(v, maxVarint))
}

// appendStreamValueFrame encodes MAX_STREAM_DATA and STREAM_DATA_BLOCKED.
func appendStreamValueFrame(b []byte, typ, id, v uint64) []byte {
	b = quicvarint.Append(b, typ)
	b = quicvarint.Append(b, id)
	return quicvarint.Append(b, min(v, maxVarint))
}

func appendType(b []byte, d qmuxDialect, typ byte) []byte {
	if d == dialectLegacy {
		return append(b, typ)
	}
	return quicvarint.Append(b, uint64(typ))
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// qmuxError reports that a WebSocket session ended because of a transport
// error (a qmux-00 CONNECTION_CLOSE, or a protocol violation detected
// locally), as opposed to an application close, which is a *SessionError.
type qmuxError struct {
	Code   uint64
	Reason string
	Remote bool
}

func (e *qmuxError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by peer"
	}
	return fmt.Sprintf("websocket session closed %s with transport error %#x: %s", who, e.Code, e.Reason)
}

// violation builds the local error that closes a session for a peer's
// protocol error.
func violation(code uint64, format string, args ...any) error {
	return &qmuxError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// asViolation converts decoding errors into session-closing errors.
func asViolation(err error) *qmuxError {
	if fe, ok := errors.AsType[*frameError](err); ok {
		return &qmuxError{Code: fe.code, Reason: fe.reason}
	}
	if qe, ok := errors.AsType[*qmuxError](err); ok {
		return qe
	}
	return &qmuxError{Code: errCodeProtocolViolation, Reason: err.Error()}
}

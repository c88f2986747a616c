package wire

import (
	"fmt"
	"strconv"
)

// Version is a MOQ Lite version code as carried in SETUP.
type Version uint64

// The MOQ Lite versions this package encodes.
const (
	// Lite01 is moq-lite-01, negotiated through the legacy SETUP handshake.
	Lite01 Version = 0xff0dad01
	// Lite02 is moq-lite-02, negotiated through the legacy SETUP handshake.
	Lite02 Version = 0xff0dad02
	// Lite03 is moq-lite-03, selected by the ALPN "moq-lite-03".
	Lite03 Version = 0xff0dad03
	// Lite04 is moq-lite-04, selected by the ALPN "moq-lite-04".
	Lite04 Version = 0xff0dad04
)

// ALPNLegacy is the ALPN (or WebTransport protocol) that selects the legacy
// SETUP handshake, in which Lite01 or Lite02 is negotiated in-band.
const ALPNLegacy = "moql"

const (
	alpnLite03 = "moq-lite-03"
	alpnLite04 = "moq-lite-04"
)

// String returns the version's name, such as "moq-lite-04", or the code in
// hexadecimal ("0xff00000e") for any other version.
func (v Version) String() string {
	switch v {
	case Lite01:
		return "moq-lite-01"
	case Lite02:
		return "moq-lite-02"
	case Lite03:
		return alpnLite03
	case Lite04:
		return alpnLite04
	}
	return "0x" + strconv.FormatUint(uint64(v), 16)
}

// ALPN returns the ALPN or WebTransport protocol that selects v directly:
// "moq-lite-04" or "moq-lite-03". It returns "" for Lite01 and Lite02, which
// are reached through SETUP under ALPNLegacy, and for unknown versions.
func (v Version) ALPN() string {
	switch v {
	case Lite03:
		return alpnLite03
	case Lite04:
		return alpnLite04
	}
	return ""
}

// VersionFromALPN returns the version an ALPN or WebTransport protocol
// selects directly ("moq-lite-04" or "moq-lite-03"). It reports false for
// anything else, including ALPNLegacy.
func VersionFromALPN(s string) (Version, bool) {
	switch s {
	case alpnLite04:
		return Lite04, true
	case alpnLite03:
		return Lite03, true
	}
	return 0, false
}

// supported reports whether v is one of Lite01 to Lite04.
func (v Version) supported() bool {
	return v >= Lite01 && v <= Lite04
}

// legacy reports whether v is Lite01 or Lite02.
func (v Version) legacy() bool {
	return v == Lite01 || v == Lite02
}

// mustSupport panics unless v is one of Lite01 to Lite04 and defined is true
// (the message exists in v). It guards the Append functions, which have no
// error result.
func mustSupport(msg string, v Version, defined bool) {
	if !v.supported() || !defined {
		panic(fmt.Sprintf("wire: %s is not defined in version %s", msg, v))
	}
}

// checkVersion returns an error wrapping ErrInvalid unless v is one of Lite01
// to Lite04 and defined is true. It guards the Decode functions.
func checkVersion(msg string, v Version, defined bool) error {
	if !v.supported() || !defined {
		return fmt.Errorf("%s: not defined in version %s: %w", msg, v, ErrInvalid)
	}
	return nil
}

// StreamType identifies a bidirectional stream; it is the first varint
// written on the stream.
type StreamType uint64

// Bidirectional stream types.
const (
	// StreamSession is a session stream; only older drafts used it.
	StreamSession StreamType = 0
	// StreamAnnounce carries ANNOUNCE_INTEREST and the announcements.
	StreamAnnounce StreamType = 1
	// StreamSubscribe carries SUBSCRIBE and its responses.
	StreamSubscribe StreamType = 2
	// StreamFetch carries FETCH (Lite03 and later).
	StreamFetch StreamType = 3
	// StreamProbe carries PROBE messages (Lite03 and later).
	StreamProbe StreamType = 4
	// StreamGoaway carries GOAWAY (Lite04).
	StreamGoaway StreamType = 5
	// StreamClientCompat opens the legacy SETUP handshake (CLIENT_SETUP).
	StreamClientCompat StreamType = 0x20
	// StreamServerCompat introduces the SERVER_SETUP reply.
	StreamServerCompat StreamType = 0x21
)

// String returns the stream type's name, such as "subscribe", or its value
// in hexadecimal for an unknown type.
func (t StreamType) String() string {
	switch t {
	case StreamSession:
		return "session"
	case StreamAnnounce:
		return "announce"
	case StreamSubscribe:
		return "subscribe"
	case StreamFetch:
		return "fetch"
	case StreamProbe:
		return "probe"
	case StreamGoaway:
		return "goaway"
	case StreamClientCompat:
		return "client-compat"
	case StreamServerCompat:
		return "server-compat"
	}
	return "0x" + strconv.FormatUint(uint64(t), 16)
}

// UniGroup is the type of a unidirectional group stream. It is written and
// read as one raw byte, not as a varint.
const UniGroup byte = 0x00

// AppendStreamType appends the bidirectional stream type t as a varint.
func AppendStreamType(b []byte, t StreamType) []byte {
	return AppendVarint(b, uint64(t))
}

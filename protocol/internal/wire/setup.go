package wire

import (
	"encoding/binary"
	"fmt"
)

// Limits applied when decoding the legacy SETUP messages.
const (
	// MaxSetupVersions is the most versions a CLIENT_SETUP may offer.
	MaxSetupVersions = 64
	// MaxSetupParams is the most parameters a SETUP message may carry.
	MaxSetupParams = 64
)

// Parameter is one SETUP parameter in the key-value-pair layout of
// moq-transport draft 14: an even Key carries the varint Value, an odd Key
// carries Bytes. The field the key's parity does not select is ignored on
// encode and left zero on decode.
type Parameter struct {
	Key   uint64
	Value uint64
	Bytes []byte
}

// ClientSetup is the CLIENT_SETUP message that opens the legacy handshake
// through which Lite01 and Lite02 are negotiated. Versions lists the
// offered version codes in order of preference; codes of other protocols
// (such as moq-transport-14, 0xff00000e) may appear among them.
type ClientSetup struct {
	Versions []Version
	Params   []Parameter
}

// ServerSetup is the SERVER_SETUP reply selecting one of the offered
// versions.
type ServerSetup struct {
	Version Version
	Params  []Parameter
}

// AppendClientSetup appends the varint type 0x20, the big-endian u16 size
// and the CLIENT_SETUP body. It panics if the body exceeds 65535 bytes.
func AppendClientSetup(b []byte, m ClientSetup) []byte {
	b = AppendStreamType(b, StreamClientCompat)
	b, start := beginSetup(b)
	b = AppendVarint(b, uint64(len(m.Versions)))
	for _, v := range m.Versions {
		b = AppendVarint(b, uint64(v))
	}
	b = appendParams(b, m.Params)
	return endSetup(b, start)
}

// AppendServerSetup appends the varint type 0x21, the big-endian u16 size
// and the SERVER_SETUP body. It panics if the body exceeds 65535 bytes.
func AppendServerSetup(b []byte, m ServerSetup) []byte {
	b = AppendStreamType(b, StreamServerCompat)
	b, start := beginSetup(b)
	b = AppendVarint(b, uint64(m.Version))
	b = appendParams(b, m.Params)
	return endSetup(b, start)
}

// DecodeClientSetup decodes a CLIENT_SETUP body: the bytes counted by the u16
// size that follows the type. More than MaxSetupVersions versions, more than
// MaxSetupParams parameters or a repeated parameter key is an error wrapping
// ErrInvalid.
func DecodeClientSetup(body []byte) (ClientSetup, error) {
	p := newParser("client setup", body)
	var m ClientSetup
	if n := p.count("version count", MaxSetupVersions); n > 0 {
		m.Versions = make([]Version, 0, min(n, p.d.Remaining()))
		for range n {
			m.Versions = append(m.Versions, Version(p.varint("version")))
		}
	}
	m.Params = decodeParams(&p)
	if err := p.finish(); err != nil {
		return ClientSetup{}, err
	}
	return m, nil
}

// DecodeServerSetup decodes a SERVER_SETUP body: the bytes counted by the u16
// size that follows the type. The selected version is returned as sent;
// checking it against the offer is the caller's business.
func DecodeServerSetup(body []byte) (ServerSetup, error) {
	p := newParser("server setup", body)
	var m ServerSetup
	m.Version = Version(p.varint("version"))
	m.Params = decodeParams(&p)
	if err := p.finish(); err != nil {
		return ServerSetup{}, err
	}
	return m, nil
}

// beginSetup reserves the u16 size of a SETUP message.
func beginSetup(b []byte) ([]byte, int) {
	return append(b, 0, 0), len(b)
}

// endSetup writes the u16 size of the body appended since beginSetup.
func endSetup(b []byte, start int) []byte {
	n := len(b) - start - 2
	if n > 0xffff {
		panic(fmt.Sprintf("wire: setup body of %d bytes exceeds 65535", n))
	}
	binary.BigEndian.PutUint16(b[start:], uint16(n))
	return b
}

// appendParams appends a parameter count and the parameters, all varint
// parameters (even keys) first and then all byte parameters (odd keys),
// each group in its original order.
func appendParams(b []byte, params []Parameter) []byte {
	b = AppendVarint(b, uint64(len(params)))
	for _, prm := range params {
		if prm.Key%2 == 0 {
			b = AppendVarint(b, prm.Key)
			b = AppendVarint(b, prm.Value)
		}
	}
	for _, prm := range params {
		if prm.Key%2 == 1 {
			b = AppendVarint(b, prm.Key)
			b = AppendVarint(b, uint64(len(prm.Bytes)))
			b = append(b, prm.Bytes...)
		}
	}
	return b
}

// decodeParams decodes a parameter count and the parameters in wire order.
// Byte values are copied out of the body.
func decodeParams(p *parser) []Parameter {
	n := p.count("parameter count", MaxSetupParams)
	if n == 0 {
		return nil
	}
	params := make([]Parameter, 0, min(n, p.d.Remaining()))
	for range n {
		var prm Parameter
		prm.Key = p.varint("parameter key")
		if p.err != nil {
			return nil
		}
		for _, seen := range params {
			if seen.Key == prm.Key {
				p.fail("parameter key", fmt.Errorf("%w: duplicate key %d", ErrInvalid, prm.Key))
				return nil
			}
		}
		if prm.Key%2 == 0 {
			prm.Value = p.varint("parameter value")
		} else if v := p.bytes("parameter value"); len(v) > 0 {
			prm.Bytes = append([]byte(nil), v...)
		}
		params = append(params, prm)
	}
	return params
}

// SessionInfo is the only message of the Lite01/Lite02 session stream (the
// stream that carried SETUP). BitrateBps is the sender's estimated bitrate
// in bits per second, 0 if unknown.
type SessionInfo struct {
	BitrateBps uint64
}

// AppendSessionInfo appends a length-prefixed SESSION_INFO message.
func AppendSessionInfo(b []byte, m SessionInfo) []byte {
	b, start := beginMessage(b)
	b = AppendVarint(b, m.BitrateBps)
	return endMessage(b, start)
}

// DecodeSessionInfo decodes a SESSION_INFO body.
func DecodeSessionInfo(body []byte) (SessionInfo, error) {
	p := newParser("session info", body)
	m := SessionInfo{BitrateBps: p.varint("bitrate")}
	if err := p.finish(); err != nil {
		return SessionInfo{}, err
	}
	return m, nil
}

// Goaway is the single message of a Lite04 GOAWAY stream (type 0x05): the
// sender is shutting the session down and suggests URI, possibly empty, to
// reconnect to.
type Goaway struct {
	URI string
}

// AppendGoaway appends a length-prefixed GOAWAY message (without the stream
// type).
func AppendGoaway(b []byte, m Goaway) []byte {
	b, start := beginMessage(b)
	b = AppendString(b, m.URI)
	return endMessage(b, start)
}

// DecodeGoaway decodes a GOAWAY body.
func DecodeGoaway(body []byte) (Goaway, error) {
	p := newParser("goaway", body)
	m := Goaway{URI: p.string("uri")}
	if err := p.finish(); err != nil {
		return Goaway{}, err
	}
	return m, nil
}

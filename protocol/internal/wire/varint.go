package wire

import (
	"fmt"
	"unicode/utf8"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/moqbridge/moqbridge/moq"
)

// MaxVarint is the largest value a QUIC varint can carry, 2^62-1.
const MaxVarint = quicvarint.Max

// AppendVarint appends v as a minimally encoded QUIC varint. It panics if v
// exceeds MaxVarint.
func AppendVarint(b []byte, v uint64) []byte {
	return quicvarint.Append(b, v)
}

// VarintLen returns the number of bytes AppendVarint writes for v: 1, 2, 4
// or 8. It panics if v exceeds MaxVarint.
func VarintLen(v uint64) int {
	return quicvarint.Len(v)
}

// AppendString appends s as a varint byte length followed by its bytes.
func AppendString(b []byte, s string) []byte {
	b = AppendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendBool appends v as one byte, 0x01 for true and 0x00 for false.
func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// beginMessage reserves one byte for the length of a message whose body the
// caller appends next, and returns the extended slice and the position of
// the reserved byte for endMessage.
func beginMessage(b []byte) ([]byte, int) {
	return append(b, 0), len(b)
}

// endMessage writes the length of the body appended since beginMessage
// returned start. Bodies of 64 bytes or more need a longer varint, so the
// body is shifted right to make room; this allocates only if b must grow.
func endMessage(b []byte, start int) []byte {
	n := len(b) - start - 1
	l := VarintLen(uint64(n))
	if l == 1 {
		b[start] = byte(n)
		return b
	}
	b = append(b, make([]byte, l-1)...)
	copy(b[start+l:], b[start+1:start+1+n])
	quicvarint.Append(b[start:start], uint64(n))
	return b
}

// Decoder walks the fields of one message body held in memory. The zero
// value decodes an empty body. A Decoder never allocates except for the
// strings it returns.
type Decoder struct {
	buf []byte
	off int
}

// NewDecoder returns a Decoder positioned at the start of body.
func NewDecoder(body []byte) Decoder {
	return Decoder{buf: body}
}

// Remaining returns the number of bytes not yet decoded.
func (d *Decoder) Remaining() int {
	return len(d.buf) - d.off
}

// Varint decodes a QUIC varint. It returns ErrShort if the body ends
// inside it.
func (d *Decoder) Varint() (uint64, error) {
	v, n, err := quicvarint.Parse(d.buf[d.off:])
	if err != nil {
		return 0, ErrShort
	}
	d.off += n
	return v, nil
}

// U8 decodes one raw byte.
func (d *Decoder) U8() (uint8, error) {
	if d.off >= len(d.buf) {
		return 0, ErrShort
	}
	v := d.buf[d.off]
	d.off++
	return v, nil
}

// Bool decodes one byte that must be 0x00 (false) or 0x01 (true); any other
// value is an error wrapping ErrInvalid.
func (d *Decoder) Bool() (bool, error) {
	v, err := d.U8()
	if err != nil {
		return false, err
	}
	switch v {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("%w: bool 0x%02x", ErrInvalid, v)
}

// String decodes a varint length followed by that many bytes of UTF-8. The
// length is bounded by the bytes remaining in the body (ErrShort beyond),
// and invalid UTF-8 is an error wrapping ErrInvalid.
func (d *Decoder) String() (string, error) {
	p, err := d.bytes()
	if err != nil {
		return "", err
	}
	if !utf8.Valid(p) {
		return "", fmt.Errorf("%w: string is not UTF-8", ErrInvalid)
	}
	return string(p), nil
}

// bytes decodes a varint length followed by that many bytes and returns
// them without copying; the result aliases the body.
func (d *Decoder) bytes() ([]byte, error) {
	n, err := d.Varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(d.Remaining()) {
		return nil, ErrShort
	}
	p := d.buf[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return p, nil
}

// Done returns ErrTrailing if bytes remain in the body.
func (d *Decoder) Done() error {
	if d.off != len(d.buf) {
		return fmt.Errorf("%w: %d bytes", ErrTrailing, len(d.buf)-d.off)
	}
	return nil
}

// parser decodes the fields of one message, remembering the first error
// together with the message and field it occurred in, so decoders read as a
// list of fields.
type parser struct {
	d   Decoder
	msg string
	err error
}

func newParser(msg string, body []byte) parser {
	return parser{d: NewDecoder(body), msg: msg}
}

func (p *parser) fail(field string, err error) {
	if p.err == nil {
		p.err = fieldError(p.msg, field, err)
	}
}

func (p *parser) varint(field string) uint64 {
	if p.err != nil {
		return 0
	}
	v, err := p.d.Varint()
	if err != nil {
		p.fail(field, err)
	}
	return v
}

func (p *parser) u8(field string) uint8 {
	if p.err != nil {
		return 0
	}
	v, err := p.d.U8()
	if err != nil {
		p.fail(field, err)
	}
	return v
}

func (p *parser) bool(field string) bool {
	if p.err != nil {
		return false
	}
	v, err := p.d.Bool()
	if err != nil {
		p.fail(field, err)
	}
	return v
}

func (p *parser) string(field string) string {
	if p.err != nil {
		return ""
	}
	v, err := p.d.String()
	if err != nil {
		p.fail(field, err)
	}
	return v
}

// path decodes a string and normalises it with CleanPath.
func (p *parser) path(field string) string {
	return moq.CleanPath(p.string(field))
}

func (p *parser) bytes(field string) []byte {
	if p.err != nil {
		return nil
	}
	v, err := p.d.bytes()
	if err != nil {
		p.fail(field, err)
	}
	return v
}

// count decodes an entry count that must not exceed limit.
func (p *parser) count(field string, limit uint64) int {
	n := p.varint(field)
	if p.err == nil && n > limit {
		p.fail(field, fmt.Errorf("%w: %d entries, at most %d allowed", ErrInvalid, n, limit))
		return 0
	}
	return int(n)
}

// finish returns the first error, or ErrTrailing if bytes remain.
func (p *parser) finish() error {
	if p.err != nil {
		return p.err
	}
	if err := p.d.Done(); err != nil {
		return fmt.Errorf("%s: %w", p.msg, err)
	}
	return nil
}

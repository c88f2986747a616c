package fmp4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/moqbridge/moqbridge/internal/mp4"
)

// FormatError reports malformed input at a byte offset of the stream (or,
// for errors inside a box, the offset of the offending box or field).
type FormatError struct {
	Offset int64
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("fmp4: at byte %d: %s", e.Offset, e.Msg)
}

func formatErr(off int64, format string, args ...any) error {
	return &FormatError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// DefaultMaxBoxSize bounds the size of a box read into memory (moov, moof,
// the mdat of a fragment).
const DefaultMaxBoxSize = mp4.DefaultMaxBoxSize

// BoxHeader is the header of a top-level box.
type BoxHeader = mp4.Header

// BoxReader splits a byte stream into top-level ISO BMFF boxes: call Next
// for a header, then Body or Skip before the next call to Next. It is
// internal/mp4's Reader with the errors of this package: a *FormatError
// for malformed input.
type BoxReader struct{ r *mp4.Reader }

// NewBoxReader returns a BoxReader on r. Bodies larger than maxBody (0
// means DefaultMaxBoxSize) are refused by Body; Skip accepts any size.
func NewBoxReader(r io.Reader, maxBody int64) *BoxReader {
	return &BoxReader{r: mp4.NewReader(r, maxBody)}
}

// Offset returns the number of bytes consumed so far.
func (b *BoxReader) Offset() int64 { return b.r.Offset() }

// Next returns the header of the next box, skipping what remains of the
// previous one. It returns io.EOF at a clean end of stream (between boxes)
// and a *FormatError for a truncated or invalid header.
func (b *BoxReader) Next() (BoxHeader, error) {
	h, err := b.r.Next()
	return h, fromMP4(err)
}

// Body reads the body of the current box. It fails with a *FormatError if
// the body is larger than the limit or the stream ends inside it.
func (b *BoxReader) Body() ([]byte, error) {
	body, err := b.r.Body()
	return body, fromMP4(err)
}

// Skip discards the rest of the current box, seeking when the reader can.
func (b *BoxReader) Skip() error { return fromMP4(b.r.Skip()) }

// fromMP4 gives an error of internal/mp4 the form of this package's: a
// *FormatError for malformed input, an "fmp4: at byte …" error wrapping
// the cause for a failed read.
func fromMP4(err error) error {
	e, ok := err.(*mp4.Error)
	if !ok {
		return err
	}
	if e.Err != nil {
		if e.Msg == "seek" {
			return fmt.Errorf("fmp4: seek: %w", e.Err)
		}
		return fmt.Errorf("fmp4: at byte %d: %s: %w", e.Offset, e.Msg, e.Err)
	}
	return &FormatError{Offset: e.Offset, Msg: e.Msg}
}

// readErr turns a read error into a *FormatError for a truncation and
// wraps any other error.
func readErr(off int64, what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &FormatError{Offset: off, Msg: "stream ends inside " + what}
	}
	return fmt.Errorf("fmp4: at byte %d: reading %s: %w", off, what, err)
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// walk calls fn for every box in b, whose first byte is at stream offset
// base (see mp4.Walk); fn gets the body and its offset.
func walk(b []byte, base int64, fn func(typ string, body []byte, off int64) error) error {
	return fromMP4(mp4.Walk(b, base, func(bx mp4.Box) error {
		return fn(bx.Type, bx.Body, bx.BodyOffset())
	}))
}

// find returns the body and offset of the first child box of type typ.
func find(b []byte, base int64, typ string) ([]byte, int64, bool, error) {
	bx, ok, err := mp4.Find(b, base, typ)
	return bx.Body, bx.BodyOffset(), ok, fromMP4(err)
}

// reader is a bounds-checked big-endian field reader over a box body.
type reader struct {
	b    []byte
	pos  int
	base int64
	what string
	err  error
}

func (r *reader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || len(r.b)-r.pos < n {
		r.err = formatErr(r.base+int64(r.pos), "%s truncated", r.what)
		return false
	}
	return true
}

func (r *reader) u8() uint8 {
	if !r.need(1) {
		return 0
	}
	v := r.b[r.pos]
	r.pos++
	return v
}

func (r *reader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.b[r.pos:])
	r.pos += 2
	return v
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b[r.pos:])
	r.pos += 4
	return v
}

func (r *reader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b[r.pos:])
	r.pos += 8
	return v
}

func (r *reader) skip(n int) {
	if r.need(n) {
		r.pos += n
	}
}

func (r *reader) bytes(n int) []byte {
	if !r.need(n) {
		return nil
	}
	v := r.b[r.pos : r.pos+n]
	r.pos += n
	return v
}

func (r *reader) left() int { return len(r.b) - r.pos }

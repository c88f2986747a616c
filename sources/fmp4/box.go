package fmp4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
const DefaultMaxBoxSize = 64 << 20

// BoxHeader is the header of a top-level box.
type BoxHeader struct {
	Type string
	// Offset is the position of the box's first byte in the stream.
	Offset int64
	// Size is the whole box size, header included; -1 when the box
	// extends to the end of the stream (size field 0).
	Size int64
	// HeaderLen is 8, or 16 for a 64-bit size.
	HeaderLen int
}

// BodySize returns the size of the body, -1 when it runs to the end.
func (h BoxHeader) BodySize() int64 {
	if h.Size < 0 {
		return -1
	}
	return h.Size - int64(h.HeaderLen)
}

// BoxReader splits a byte stream into top-level ISO BMFF boxes: call Next
// for a header, then Body or Skip before the next call to Next.
type BoxReader struct {
	r       io.Reader
	off     int64 // bytes consumed
	max     int64
	pending int64 // body bytes of the current box not yet consumed; -1 = to EOF
	cur     BoxHeader
	hdr     [16]byte
}

// NewBoxReader returns a BoxReader on r. Bodies larger than maxBody (0
// means DefaultMaxBoxSize) are refused by Body; Skip accepts any size.
func NewBoxReader(r io.Reader, maxBody int64) *BoxReader {
	if maxBody <= 0 {
		maxBody = DefaultMaxBoxSize
	}
	return &BoxReader{r: r, max: maxBody}
}

// Offset returns the number of bytes consumed so far.
func (b *BoxReader) Offset() int64 { return b.off }

// Next returns the header of the next box, skipping what remains of the
// previous one. It returns io.EOF at a clean end of stream (between boxes)
// and a *FormatError for a truncated or invalid header.
func (b *BoxReader) Next() (BoxHeader, error) {
	if b.pending != 0 {
		if err := b.Skip(); err != nil {
			return BoxHeader{}, err
		}
	}
	start := b.off
	n, err := io.ReadFull(b.r, b.hdr[:8])
	b.off += int64(n)
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return BoxHeader{}, io.EOF
		}
		return BoxHeader{}, readErr(start, "box header", err)
	}
	h := BoxHeader{Type: boxType(b.hdr[4:8]), Offset: start, HeaderLen: 8}
	size := uint64(binary.BigEndian.Uint32(b.hdr[:4]))
	switch size {
	case 0:
		h.Size = -1
	case 1:
		n, err := io.ReadFull(b.r, b.hdr[8:16])
		b.off += int64(n)
		if err != nil {
			return BoxHeader{}, readErr(start, "64-bit size of box "+quote(h.Type), err)
		}
		h.HeaderLen = 16
		size = binary.BigEndian.Uint64(b.hdr[8:16])
		if size < 16 || size > 1<<62 {
			return BoxHeader{}, formatErr(start, "box %s has invalid size %d", quote(h.Type), size)
		}
		h.Size = int64(size)
	default:
		if size < 8 {
			return BoxHeader{}, formatErr(start, "box %s has invalid size %d", quote(h.Type), size)
		}
		h.Size = int64(size)
	}
	b.cur = h
	b.pending = h.BodySize()
	return h, nil
}

// Body reads the body of the current box. It fails with a *FormatError if
// the body is larger than the limit or the stream ends inside it.
func (b *BoxReader) Body() ([]byte, error) {
	h := b.cur
	if b.pending == 0 {
		return []byte{}, nil
	}
	if b.pending < 0 {
		// To the end of the stream, within the limit.
		body, err := io.ReadAll(io.LimitReader(b.r, b.max+1))
		b.off += int64(len(body))
		b.pending = 0
		if err != nil {
			return nil, readErr(b.off, "body of box "+quote(h.Type), err)
		}
		if int64(len(body)) > b.max {
			return nil, formatErr(h.Offset, "box %s runs to the end of the stream beyond the %d-byte limit", quote(h.Type), b.max)
		}
		return body, nil
	}
	if b.pending > b.max {
		return nil, formatErr(h.Offset, "box %s of %d bytes exceeds the %d-byte limit", quote(h.Type), h.Size, b.max)
	}
	body := make([]byte, b.pending)
	n, err := io.ReadFull(b.r, body)
	b.off += int64(n)
	b.pending = 0
	if err != nil {
		return nil, readErr(b.off, fmt.Sprintf("box %s (offset %d, %d bytes)", quote(h.Type), h.Offset, h.Size), err)
	}
	return body, nil
}

// Skip discards the rest of the current box, seeking when the reader can.
func (b *BoxReader) Skip() error {
	h := b.cur
	if b.pending == 0 {
		return nil
	}
	if b.pending < 0 {
		n, err := io.Copy(io.Discard, b.r)
		b.off += n
		b.pending = 0
		if err != nil {
			return readErr(b.off, "body of box "+quote(h.Type), err)
		}
		return nil
	}
	if s, ok := b.r.(io.Seeker); ok {
		end, err := s.Seek(0, io.SeekEnd)
		if err == nil && end >= b.off+b.pending {
			if _, err := s.Seek(b.off+b.pending, io.SeekStart); err != nil {
				return fmt.Errorf("fmp4: seek: %w", err)
			}
			b.off += b.pending
			b.pending = 0
			return nil
		}
		if err == nil {
			_, _ = s.Seek(b.off, io.SeekStart)
			return formatErr(h.Offset, "box %s of %d bytes is truncated (stream ends at %d)", quote(h.Type), h.Size, end)
		}
		// Not seekable (a pipe): read through.
	}
	n, err := io.CopyN(io.Discard, b.r, b.pending)
	b.off += n
	b.pending = 0
	if err != nil {
		return readErr(b.off, fmt.Sprintf("box %s (offset %d, %d bytes)", quote(h.Type), h.Offset, h.Size), err)
	}
	return nil
}

// readErr turns a read error into a *FormatError for a truncation and
// wraps any other error.
func readErr(off int64, what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &FormatError{Offset: off, Msg: "stream ends inside " + what}
	}
	return fmt.Errorf("fmp4: at byte %d: reading %s: %w", off, what, err)
}

// boxType returns a printable box type.
func boxType(b []byte) string { return string(b) }

func quote(s string) string { return fmt.Sprintf("%q", s) }

// walk calls fn for every box in b, whose first byte is at stream offset
// base. A box with size 0 extends to the end of b.
func walk(b []byte, base int64, fn func(typ string, body []byte, off int64) error) error {
	pos := 0
	for pos < len(b) {
		rest := b[pos:]
		off := base + int64(pos)
		if len(rest) < 8 {
			return formatErr(off, "truncated box header (%d bytes left)", len(rest))
		}
		size := uint64(binary.BigEndian.Uint32(rest))
		typ := boxType(rest[4:8])
		hdr := uint64(8)
		switch size {
		case 0:
			size = uint64(len(rest))
		case 1:
			if len(rest) < 16 {
				return formatErr(off, "truncated 64-bit box header of %s", quote(typ))
			}
			size = binary.BigEndian.Uint64(rest[8:])
			hdr = 16
		}
		if size < hdr || size > uint64(len(rest)) {
			return formatErr(off, "box %s has size %d, %d bytes available", quote(typ), size, len(rest))
		}
		if err := fn(typ, rest[hdr:size], off+int64(hdr)); err != nil {
			return err
		}
		pos += int(size)
	}
	return nil
}

// find returns the body and offset of the first child box of type typ.
func find(b []byte, base int64, typ string) ([]byte, int64, bool, error) {
	var body []byte
	var off int64
	found := false
	err := walk(b, base, func(t string, bb []byte, o int64) error {
		if !found && t == typ {
			body, off, found = bb, o, true
		}
		return nil
	})
	return body, off, found, err
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

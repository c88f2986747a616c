package mp4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Error reports malformed input at a byte offset (for errors inside a
// box, the offset of the offending box or field), or, when Err is set, a
// read of the input that failed there for another reason.
type Error struct {
	Offset int64
	Msg    string
	// Err is the cause of a failed read (not a format error); nil for
	// malformed input.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("mp4: at byte %d: %s: %v", e.Offset, e.Msg, e.Err)
	}
	return fmt.Sprintf("mp4: at byte %d: %s", e.Offset, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error for malformed input at off.
func Errorf(off int64, format string, args ...any) error {
	return &Error{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// DefaultMaxBoxSize bounds the size of a box read into memory (moov, moof,
// the mdat of a fragment).
const DefaultMaxBoxSize = 64 << 20

// Header is the header of a box read from a stream.
type Header struct {
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
func (h Header) BodySize() int64 {
	if h.Size < 0 {
		return -1
	}
	return h.Size - int64(h.HeaderLen)
}

// Reader splits a byte stream into top-level boxes: call Next for a
// header, then Body or Skip before the next call to Next.
type Reader struct {
	r       io.Reader
	off     int64 // bytes consumed
	max     int64
	pending int64 // body bytes of the current box not yet consumed; -1 = to EOF
	cur     Header
	hdr     [16]byte
}

// NewReader returns a Reader on r. Bodies larger than maxBody (0 means
// DefaultMaxBoxSize) are refused by Body; Skip accepts any size.
func NewReader(r io.Reader, maxBody int64) *Reader {
	if maxBody <= 0 {
		maxBody = DefaultMaxBoxSize
	}
	return &Reader{r: r, max: maxBody}
}

// Offset returns the number of bytes consumed so far.
func (b *Reader) Offset() int64 { return b.off }

// Next returns the header of the next box, skipping what remains of the
// previous one. It returns io.EOF at a clean end of stream (between boxes)
// and an *Error for a truncated or invalid header.
func (b *Reader) Next() (Header, error) {
	if b.pending != 0 {
		if err := b.Skip(); err != nil {
			return Header{}, err
		}
	}
	start := b.off
	n, err := io.ReadFull(b.r, b.hdr[:8])
	b.off += int64(n)
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return Header{}, io.EOF
		}
		return Header{}, readErr(start, "box header", err)
	}
	h := Header{Type: boxType(b.hdr[4:8]), Offset: start, HeaderLen: 8}
	size := uint64(binary.BigEndian.Uint32(b.hdr[:4]))
	switch size {
	case 0:
		h.Size = -1
	case 1:
		n, err := io.ReadFull(b.r, b.hdr[8:16])
		b.off += int64(n)
		if err != nil {
			return Header{}, readErr(start, "64-bit size of box "+quote(h.Type), err)
		}
		h.HeaderLen = 16
		size = binary.BigEndian.Uint64(b.hdr[8:16])
		if size < 16 || size > 1<<62 {
			return Header{}, Errorf(start, "box %s has invalid size %d", quote(h.Type), size)
		}
		h.Size = int64(size)
	default:
		if size < 8 {
			return Header{}, Errorf(start, "box %s has invalid size %d", quote(h.Type), size)
		}
		h.Size = int64(size)
	}
	b.cur = h
	b.pending = h.BodySize()
	return h, nil
}

// Body reads the body of the current box. It fails with an *Error if the
// body is larger than the limit or the stream ends inside it.
func (b *Reader) Body() ([]byte, error) {
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
			return nil, Errorf(h.Offset, "box %s runs to the end of the stream beyond the %d-byte limit", quote(h.Type), b.max)
		}
		return body, nil
	}
	if b.pending > b.max {
		return nil, Errorf(h.Offset, "box %s of %d bytes exceeds the %d-byte limit", quote(h.Type), h.Size, b.max)
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
func (b *Reader) Skip() error {
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
				return &Error{Offset: b.off, Msg: "seek", Err: err}
			}
			b.off += b.pending
			b.pending = 0
			return nil
		}
		if err == nil {
			_, _ = s.Seek(b.off, io.SeekStart)
			return Errorf(h.Offset, "box %s of %d bytes is truncated (stream ends at %d)", quote(h.Type), h.Size, end)
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

// readErr turns a read error into an *Error: a format error for a
// truncation, a read error (Err set) otherwise.
func readErr(off int64, what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Offset: off, Msg: "stream ends inside " + what}
	}
	return &Error{Offset: off, Msg: "reading " + what, Err: err}
}

// boxType returns the box type of b as a string, without allocating for
// the types moqbridge looks at.
func boxType(b []byte) string {
	switch string(b) {
	case "moof":
		return "moof"
	case "mdat":
		return "mdat"
	case "traf":
		return "traf"
	case "tfhd":
		return "tfhd"
	case "tfdt":
		return "tfdt"
	case "trun":
		return "trun"
	case "mfhd":
		return "mfhd"
	case "moov":
		return "moov"
	case "trak":
		return "trak"
	case "styp":
		return "styp"
	case "ftyp":
		return "ftyp"
	}
	return string(b)
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// Box is one box of a buffer.
type Box struct {
	Type string
	Body []byte // capacity limited to the body
	// Offset is the position of the box's first byte (of its header),
	// relative to what the walk was given as its base.
	Offset int64
	// HeaderLen is 8, or 16 for a 64-bit size.
	HeaderLen int
}

// BodyOffset returns the position of the body's first byte.
func (b Box) BodyOffset() int64 { return b.Offset + int64(b.HeaderLen) }

// Walk calls fn for every box in b, whose first byte is at offset base,
// and stops at the first error. A box with size 0 extends to the end of
// b. A truncated box is an *Error.
func Walk(b []byte, base int64, fn func(Box) error) error {
	pos := 0
	for pos < len(b) {
		rest := b[pos:]
		off := base + int64(pos)
		if len(rest) < 8 {
			return Errorf(off, "truncated box header (%d bytes left)", len(rest))
		}
		size := uint64(binary.BigEndian.Uint32(rest))
		typ := boxType(rest[4:8])
		hdr := uint64(8)
		switch size {
		case 0:
			size = uint64(len(rest))
		case 1:
			if len(rest) < 16 {
				return Errorf(off, "truncated 64-bit box header of %s", quote(typ))
			}
			size = binary.BigEndian.Uint64(rest[8:])
			hdr = 16
		}
		if size < hdr || size > uint64(len(rest)) {
			return Errorf(off, "box %s has size %d, %d bytes available", quote(typ), size, len(rest))
		}
		if err := fn(Box{Type: typ, Body: rest[hdr:size:size], Offset: off, HeaderLen: int(hdr)}); err != nil {
			return err
		}
		pos += int(size)
	}
	return nil
}

// Find returns the first box of type typ in b (see Walk).
func Find(b []byte, base int64, typ string) (Box, bool, error) {
	var found Box
	ok := false
	err := Walk(b, base, func(bx Box) error {
		if !ok && bx.Type == typ {
			found, ok = bx, true
		}
		return nil
	})
	return found, ok, err
}

// FullBox splits the body of a FullBox, which starts at offset off, into
// version, flags and the rest; typ names the box in the error.
func FullBox(body []byte, off int64, typ string) (version uint8, flags uint32, rest []byte, err error) {
	if len(body) < 4 {
		return 0, 0, nil, Errorf(off, "%s truncated", typ)
	}
	return body[0], binary.BigEndian.Uint32(body) & 0xffffff, body[4:], nil
}

// Writer appends boxes to a byte slice. Box sizes are patched when a box
// ends, so a whole init segment or fragment is built in one buffer without
// seeking: off := w.Start("moov"); …; w.End(off).
type Writer struct {
	B []byte
}

func (w *Writer) U8(v uint8)   { w.B = append(w.B, v) }
func (w *Writer) U16(v uint16) { w.B = binary.BigEndian.AppendUint16(w.B, v) }
func (w *Writer) U32(v uint32) { w.B = binary.BigEndian.AppendUint32(w.B, v) }
func (w *Writer) U64(v uint64) { w.B = binary.BigEndian.AppendUint64(w.B, v) }
func (w *Writer) Raw(p []byte) { w.B = append(w.B, p...) }

// Zeros appends n zero bytes.
func (w *Writer) Zeros(n int) {
	for range n {
		w.B = append(w.B, 0)
	}
}

// Start opens a box of type typ (four characters) and returns its offset
// for End.
func (w *Writer) Start(typ string) int {
	off := len(w.B)
	w.U32(0)
	w.B = append(w.B, typ[:4]...)
	return off
}

// Full opens a FullBox.
func (w *Writer) Full(typ string, version uint8, flags uint32) int {
	off := w.Start(typ)
	w.U32(uint32(version)<<24 | flags&0xffffff)
	return off
}

// End patches the size of the box opened at off.
func (w *Writer) End(off int) {
	binary.BigEndian.PutUint32(w.B[off:], uint32(len(w.B)-off))
}

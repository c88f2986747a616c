package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// readerBufSize is the size of a Reader's read buffer. Messages up to this
// size are returned straight from the buffer without copying.
const readerBufSize = 4096

// maxEmptyReads is how many successive (0, nil) reads a Reader tolerates
// before giving up with io.ErrNoProgress.
const maxEmptyReads = 100

// Reader frames the bytes of one stream: varints, raw bytes, u16 sizes,
// length-prefixed messages and frame payloads. It reads ahead into its own
// buffer, so once a stream is wrapped all reads must go through the Reader.
//
// Every method returns io.EOF only when the stream ended cleanly before the
// first byte of the item, and io.ErrUnexpectedEOF when it ended inside the
// item. Other errors from the underlying reader are passed through. After
// any error the position in the stream is unspecified, so an error ends the
// framing of the stream. In steady state no method allocates.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	src  io.Reader
	buf  []byte // read buffer; buf[r:w] holds unread bytes
	r, w int
	err  error  // error from src, returned once buf[r:w] no longer suffices
	msg  []byte // holds messages larger than buf
}

// NewReader returns a Reader that reads from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{src: r, buf: make([]byte, readerBufSize)}
}

// buffered returns the number of unread bytes in the buffer.
func (r *Reader) buffered() int {
	return r.w - r.r
}

// readErr returns and clears the pending error.
func (r *Reader) readErr() error {
	err := r.err
	r.err = nil
	return err
}

// fill compacts the buffer and reads once from src into its free space.
func (r *Reader) fill() {
	if r.r > 0 {
		copy(r.buf, r.buf[r.r:r.w])
		r.w -= r.r
		r.r = 0
	}
	for range maxEmptyReads {
		n, err := r.src.Read(r.buf[r.w:])
		if n < 0 || n > len(r.buf)-r.w {
			r.err = errors.New("wire: reader returned an invalid count")
			return
		}
		r.w += n
		if err != nil {
			r.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.err = io.ErrNoProgress
}

// ensure makes at least n bytes available in the buffer; n must not exceed
// its size. It returns io.EOF only if the stream ended with no unread byte.
func (r *Reader) ensure(n int) error {
	for r.buffered() < n {
		if r.err != nil {
			err := r.readErr()
			if err == io.EOF && r.buffered() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		r.fill()
	}
	return nil
}

// ReadByte reads one raw byte, such as the type of a unidirectional stream.
func (r *Reader) ReadByte() (byte, error) {
	if err := r.ensure(1); err != nil {
		return 0, err
	}
	c := r.buf[r.r]
	r.r++
	return c, nil
}

// ReadVarint reads one QUIC varint.
func (r *Reader) ReadVarint() (uint64, error) {
	if err := r.ensure(1); err != nil {
		return 0, err
	}
	if err := r.ensure(1 << (r.buf[r.r] >> 6)); err != nil {
		return 0, err
	}
	v, n, err := quicvarint.Parse(r.buf[r.r:r.w])
	if err != nil {
		return 0, io.ErrUnexpectedEOF // unreachable: ensure made the bytes available
	}
	r.r += n
	return v, nil
}

// ReadU16 reads a big-endian 16-bit integer: the size of a legacy SETUP
// message.
func (r *Reader) ReadU16() (uint16, error) {
	if err := r.ensure(2); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint16(r.buf[r.r:])
	r.r += 2
	return v, nil
}

// ReadMessage reads a varint length and that many bytes of message body.
// A length above limit is an error wrapping ErrTooLarge. The returned slice
// is valid only until the next call on r: it points into an internal buffer
// that is reused, and that grows to at most limit bytes.
//
// ReadMessage returns io.EOF only if the stream ended cleanly before the
// first byte of the length, and io.ErrUnexpectedEOF if it ended later.
func (r *Reader) ReadMessage(limit int) ([]byte, error) {
	size, err := r.ReadVarint()
	if err != nil {
		return nil, err
	}
	if limit < 0 || size > uint64(limit) {
		return nil, fmt.Errorf("message of %d bytes, limit %d: %w", size, limit, ErrTooLarge)
	}
	n := int(size)
	if n <= len(r.buf) {
		if err := r.ensure(n); err != nil {
			return nil, unexpected(err)
		}
		p := r.buf[r.r : r.r+n : r.r+n]
		r.r += n
		return p, nil
	}
	if cap(r.msg) < n {
		r.msg = make([]byte, min(limit, max(n, 2*cap(r.msg))))
	}
	p := r.msg[:n:n]
	if err := r.ReadFull(p); err != nil {
		return nil, err
	}
	return p, nil
}

// ReadFull reads exactly len(p) bytes into p, such as a frame payload whose
// size was read before. Because the bytes are expected, a stream that ends
// before p is full yields io.ErrUnexpectedEOF, even if nothing was read.
func (r *Reader) ReadFull(p []byte) error {
	n := copy(p, r.buf[r.r:r.w])
	r.r += n
	p = p[n:]
	for len(p) > 0 {
		if r.err != nil {
			return unexpected(r.readErr())
		}
		if len(p) >= len(r.buf) {
			// Large remainder: read straight into p, bypassing the buffer.
			m, err := io.ReadFull(r.src, p)
			if err != nil {
				return unexpected(err)
			}
			p = p[m:]
			continue
		}
		r.fill()
		n := copy(p, r.buf[r.r:r.w])
		r.r += n
		p = p[n:]
	}
	return nil
}

// unexpected converts io.EOF into io.ErrUnexpectedEOF for reads that had
// already begun.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// readerBufSize is the size of a Reader's read buffer once bytes flow.
// Messages up to the buffer's size are returned straight from it without
// copying.
const readerBufSize = 4096

// readerStartSize is the read buffer a Reader starts with, inside the
// Reader itself: enough for a stream's type and first header, so that a
// stream whose peer sends a few bytes and then nothing costs little. A read
// that fills it replaces it with one of readerBufSize.
const readerStartSize = 128

// msgStartSize is the first size of the buffer a message larger than the
// read buffer is read into; it doubles as the body arrives, so a declared
// length alone never makes a Reader allocate more than this.
const msgStartSize = 2 * readerBufSize

// keepMsgSize bounds the message buffer a Reader keeps between messages
// (for the zero-allocation steady state); a larger one is dropped when the
// next read starts.
const keepMsgSize = 64 << 10

// maxEmptyReads is how many successive (0, nil) reads a Reader tolerates
// before giving up with io.ErrNoProgress.
const maxEmptyReads = 100

// Budget accounts for the memory a Reader allocates beyond its fixed read
// buffer: the buffer of a message larger than it. Reserve is called before
// the buffer grows by n bytes and may refuse with an error, which the read
// then returns wrapped; Release gives back what was reserved once the
// buffer is dropped. Both may be called from any goroutine.
type Budget interface {
	Reserve(n int) error
	Release(n int)
}

// Reader frames the bytes of one stream: varints, raw bytes, u16 sizes,
// length-prefixed messages and frame payloads. It reads ahead into its own
// buffer, so once a stream is wrapped all reads must go through the Reader.
//
// Memory follows the bytes that arrive, never a declared length alone: the
// read buffer starts small and grows once a read fills it, and a message
// larger than the read buffer is read into a buffer that starts at
// msgStartSize once its first bytes are here and doubles as more arrive.
// That message buffer counts against the Reader's Budget, if any, until
// Release.
//
// Every method returns io.EOF only when the stream ended cleanly before the
// first byte of the item, and io.ErrUnexpectedEOF when it ended inside the
// item. Other errors from the underlying reader are passed through. After
// any error the position in the stream is unspecified, so an error ends the
// framing of the stream. In steady state no method allocates.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	src     io.Reader
	buf     []byte // read buffer; buf[r:w] holds unread bytes
	r, w    int
	err     error  // error from src, returned once buf[r:w] no longer suffices
	msg     []byte // holds messages larger than buf; len == cap
	budget  Budget // charged for msg, if set
	charged int    // bytes of msg reserved from budget
	start   [readerStartSize]byte
}

// NewReader returns a Reader that reads from r.
func NewReader(r io.Reader) *Reader {
	rd := &Reader{src: r}
	rd.buf = rd.start[:]
	return rd
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

// fill compacts the buffer and reads once from src into its free space. A
// read that fills the starting buffer makes it grow to readerBufSize: bytes
// are flowing.
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
		if r.w == len(r.buf) && len(r.buf) < readerBufSize {
			buf := make([]byte, readerBufSize)
			copy(buf, r.buf[:r.w])
			r.buf = buf
		}
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

// SetBudget makes the Reader reserve the memory of large message buffers
// from b. Call it before the first read.
func (r *Reader) SetBudget(b Budget) { r.budget = b }

// Release drops the Reader's message buffer and gives its memory back to
// the Budget. The Reader stays usable. Call it when the stream is done.
func (r *Reader) Release() {
	r.msg = nil
	if r.charged > 0 && r.budget != nil {
		r.budget.Release(r.charged)
	}
	r.charged = 0
}

// Buffered returns the number of bytes that can be read without reading
// from the stream.
func (r *Reader) Buffered() int { return r.buffered() }

// Fill waits until at least one unread byte is buffered, so that a caller
// can allocate for bytes that have arrived rather than for bytes announced.
// It returns io.EOF if the stream ended cleanly with nothing left unread.
func (r *Reader) Fill() error { return r.ensure(1) }

// Read reads up to len(p) bytes: those already buffered, or else what one
// read of the stream returns (straight into p when p is at least as large
// as the read buffer). It returns n > 0 or an error, never both, so that a
// caller filling memory as bytes arrive needs no special case; io.EOF
// means the stream ended.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.buffered() == 0 {
		if r.err != nil {
			return 0, r.readErr()
		}
		if len(p) >= len(r.buf) {
			return r.readDirect(p)
		}
		r.fill()
		if r.buffered() == 0 {
			return 0, r.readErr()
		}
	}
	n := copy(p, r.buf[r.r:r.w])
	r.r += n
	return n, nil
}

// readDirect reads once from src into p, bypassing the buffer; an error
// that comes with data is kept for the next call.
func (r *Reader) readDirect(p []byte) (int, error) {
	for range maxEmptyReads {
		n, err := r.src.Read(p)
		if n < 0 || n > len(p) {
			return 0, errors.New("wire: reader returned an invalid count")
		}
		if n > 0 {
			r.err = err
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, io.ErrNoProgress
}

// ReadMessage reads a varint length and that many bytes of message body.
// A length above limit is an error wrapping ErrTooLarge. The returned slice
// is valid only until the next call on r: it points into an internal buffer
// that is reused, and that grows with the body as it arrives, to at most
// the message's length.
//
// ReadMessage returns io.EOF only if the stream ended cleanly before the
// first byte of the length, and io.ErrUnexpectedEOF if it ended later.
func (r *Reader) ReadMessage(limit int) ([]byte, error) {
	if cap(r.msg) > keepMsgSize {
		r.Release()
	}
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
	for have := 0; have < n; {
		if have == len(r.msg) {
			// The first memory waits for the first bytes of the body;
			// later it doubles what has arrived.
			if have == 0 {
				if err := r.ensure(1); err != nil {
					return nil, unexpected(err)
				}
			}
			if err := r.growMsg(have, min(n, max(msgStartSize, 2*have))); err != nil {
				return nil, fmt.Errorf("message of %d bytes: %w", n, err)
			}
		}
		m, err := r.Read(r.msg[have:min(n, len(r.msg))])
		have += m
		if err != nil {
			return nil, unexpected(err)
		}
	}
	return r.msg[:n:n], nil
}

// growMsg replaces the message buffer with one of size bytes that starts
// with the have bytes read so far, reserving the growth from the budget.
func (r *Reader) growMsg(have, size int) error {
	if r.budget != nil {
		if err := r.budget.Reserve(size - r.charged); err != nil {
			return err
		}
		r.charged = size
	}
	msg := make([]byte, size)
	copy(msg, r.msg[:have])
	r.msg = msg
	return nil
}

// ReadFull reads exactly len(p) bytes into p, such as a frame payload whose
// size was read before. Because the bytes are expected, a stream that ends
// before p is full yields io.ErrUnexpectedEOF, even if nothing was read.
func (r *Reader) ReadFull(p []byte) error {
	for len(p) > 0 {
		n, err := r.Read(p)
		if err != nil {
			return unexpected(err)
		}
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

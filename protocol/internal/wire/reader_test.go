package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// sources returns readers over data with different delivery patterns.
func sources(data []byte) map[string]func() io.Reader {
	return map[string]func() io.Reader{
		"whole":       func() io.Reader { return bytes.NewReader(data) },
		"one byte":    func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
		"half":        func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
		"data+EOF":    func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
		"chunks 7":    func() io.Reader { return &chunkReader{data: data, n: 7} },
		"chunks 5000": func() io.Reader { return &chunkReader{data: data, n: 5000} },
	}
}

func TestReaderMessages(t *testing.T) {
	sizes := []int{0, 1, 63, 64, 4095, 4096, 4097, 10000, 3, 70000, 0}
	var stream []byte
	for i, n := range sizes {
		stream = AppendVarint(stream, uint64(n))
		stream = append(stream, bytes.Repeat([]byte{byte(i)}, n)...)
	}
	for name, src := range sources(stream) {
		t.Run(name, func(t *testing.T) {
			r := NewReader(src())
			for i, n := range sizes {
				msg, err := r.ReadMessage(70000)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if !bytes.Equal(msg, bytes.Repeat([]byte{byte(i)}, n)) {
					t.Fatalf("message %d: %d bytes, want %d of %d", i, len(msg), n, i)
				}
			}
			if _, err := r.ReadMessage(70000); err != io.EOF {
				t.Fatalf("after last message: %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderEOF(t *testing.T) {
	cases := []struct {
		name string
		data string
		read func(r *Reader) error
		want error
	}{
		{"message at clean end", "", func(r *Reader) error { _, err := r.ReadMessage(10); return err }, io.EOF},
		{"message length cut", "40", func(r *Reader) error { _, err := r.ReadMessage(1000); return err }, io.ErrUnexpectedEOF},
		{"message body cut", "03 01 02", func(r *Reader) error { _, err := r.ReadMessage(10); return err }, io.ErrUnexpectedEOF},
		{"message body missing", "03", func(r *Reader) error { _, err := r.ReadMessage(10); return err }, io.ErrUnexpectedEOF},
		{"large message body cut", "80 00 20 00 01 02", func(r *Reader) error { _, err := r.ReadMessage(10000); return err }, io.ErrUnexpectedEOF},
		{"message too large", "0b", func(r *Reader) error { _, err := r.ReadMessage(10); return err }, ErrTooLarge},
		{"message negative limit", "00", func(r *Reader) error { _, err := r.ReadMessage(-1); return err }, ErrTooLarge},
		{"empty message", "00", func(r *Reader) error { _, err := r.ReadMessage(0); return err }, nil},
		{"varint at clean end", "", func(r *Reader) error { _, err := r.ReadVarint(); return err }, io.EOF},
		{"varint cut", "c0 00 00", func(r *Reader) error { _, err := r.ReadVarint(); return err }, io.ErrUnexpectedEOF},
		{"byte at clean end", "", func(r *Reader) error { _, err := r.ReadByte(); return err }, io.EOF},
		{"u16 at clean end", "", func(r *Reader) error { _, err := r.ReadU16(); return err }, io.EOF},
		{"u16 cut", "00", func(r *Reader) error { _, err := r.ReadU16(); return err }, io.ErrUnexpectedEOF},
		{"full with nothing", "", func(r *Reader) error { return r.ReadFull(make([]byte, 1)) }, io.ErrUnexpectedEOF},
		{"full cut", "01 02", func(r *Reader) error { return r.ReadFull(make([]byte, 3)) }, io.ErrUnexpectedEOF},
		{"full large cut", "01 02", func(r *Reader) error { return r.ReadFull(make([]byte, 9000)) }, io.ErrUnexpectedEOF},
		{"full empty", "", func(r *Reader) error { return r.ReadFull(nil) }, nil},
	}
	for _, c := range cases {
		for name, src := range sources(unhex(t, c.data)) {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				err := c.read(NewReader(src()))
				if c.want == nil {
					if err != nil {
						t.Fatalf("unexpected error: %v", err)
					}
				} else if !errors.Is(err, c.want) {
					t.Fatalf("error %v, want %v", err, c.want)
				}
			})
		}
	}
}

func TestReaderMixed(t *testing.T) {
	var b []byte
	b = AppendStreamType(b, StreamClientCompat)
	b = append(b, 0x01, 0x02)
	b = AppendVarint(b, 1<<40)
	b = append(b, 0xfe)
	payload := bytes.Repeat([]byte("frame"), 3000)
	b = AppendFrameHeader(b, uint64(len(payload)))
	b = append(b, payload...)
	for name, src := range sources(b) {
		t.Run(name, func(t *testing.T) {
			r := NewReader(src())
			if v, err := r.ReadVarint(); err != nil || v != 0x20 {
				t.Fatalf("type %#x %v", v, err)
			}
			if v, err := r.ReadU16(); err != nil || v != 0x0102 {
				t.Fatalf("u16 %#x %v", v, err)
			}
			if v, err := r.ReadVarint(); err != nil || v != 1<<40 {
				t.Fatalf("varint %#x %v", v, err)
			}
			if v, err := r.ReadByte(); err != nil || v != 0xfe {
				t.Fatalf("byte %#x %v", v, err)
			}
			size, err := r.ReadVarint()
			if err != nil || size != uint64(len(payload)) {
				t.Fatalf("size %d %v", size, err)
			}
			got := make([]byte, size)
			if err := r.ReadFull(got); err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("payload mismatch: %v", err)
			}
			if _, err := r.ReadByte(); err != io.EOF {
				t.Fatalf("end: %v", err)
			}
		})
	}
}

func TestReaderPassesErrors(t *testing.T) {
	boom := errors.New("stream reset")
	r := NewReader(io.MultiReader(bytes.NewReader([]byte{0x02, 0x01}), iotest.ErrReader(boom)))
	if _, err := r.ReadMessage(10); !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}

	r = NewReader(iotest.ErrReader(boom))
	if err := r.ReadFull(make([]byte, 10000)); !errors.Is(err, boom) {
		t.Fatalf("large ReadFull error %v, want %v", err, boom)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderNoProgress(t *testing.T) {
	if _, err := NewReader(zeroReader{}).ReadByte(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("error %v, want io.ErrNoProgress", err)
	}
}

// TestReaderMessageBufferBounded checks that a message larger than the
// read buffer grows the message buffer only up to the limit.
func TestReaderMessageBufferBounded(t *testing.T) {
	var b []byte
	for _, n := range []int{5000, 9000} {
		b = AppendVarint(b, uint64(n))
		b = append(b, make([]byte, n)...)
	}
	r := NewReader(bytes.NewReader(b))
	if _, err := r.ReadMessage(9000); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMessage(9000); err != nil {
		t.Fatal(err)
	}
	if cap(r.msg) > 9000 {
		t.Fatalf("message buffer grew to %d, limit 9000", cap(r.msg))
	}
}

// testBudget records what a Reader reserves and can refuse beyond a limit.
type testBudget struct {
	limit, used, peak int
}

var errTestBudget = errors.New("test budget exhausted")

func (b *testBudget) Reserve(n int) error {
	if b.used+n > b.limit {
		return errTestBudget
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return nil
}

func (b *testBudget) Release(n int) { b.used -= n }

// TestReaderMessageMemoryFollowsBytes: a declared length alone allocates
// nothing; a body that arrives in part allocates about twice what arrived
// (at least msgStartSize), never the declared length.
func TestReaderMessageMemoryFollowsBytes(t *testing.T) {
	const declared = 1 << 20
	for _, sent := range []int{0, 1, 5000, 100_000} {
		b := AppendVarint(nil, declared)
		b = append(b, make([]byte, sent)...)
		for name, src := range sources(b) {
			budget := &testBudget{limit: 1 << 30}
			r := NewReader(src())
			r.SetBudget(budget)
			if _, err := r.ReadMessage(declared); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%d of %d bytes (%s): %v, want io.ErrUnexpectedEOF", sent, declared, name, err)
			}
			bound := 0
			if sent > 0 {
				bound = max(msgStartSize, 2*sent)
			}
			if budget.peak > bound || cap(r.msg) > bound {
				t.Errorf("%d of %d bytes (%s): reserved %d, buffer %d; want at most %d",
					sent, declared, name, budget.peak, cap(r.msg), bound)
			}
			r.Release()
			if budget.used != 0 || r.msg != nil {
				t.Errorf("%d bytes (%s): %d still reserved after Release", sent, name, budget.used)
			}
		}
	}
}

// TestReaderBudget: a refused reservation fails the read with the budget's
// error; a large buffer is given back when the next message starts, a
// small one is kept (and stays reserved) until Release.
func TestReaderBudget(t *testing.T) {
	var b []byte
	for _, n := range []int{100_000, 6000, 6000} {
		b = AppendVarint(b, uint64(n))
		b = append(b, bytes.Repeat([]byte{7}, n)...)
	}
	budget := &testBudget{limit: 64 << 10}
	r := NewReader(bytes.NewReader(b))
	r.SetBudget(budget)
	if _, err := r.ReadMessage(1 << 20); !errors.Is(err, errTestBudget) {
		t.Fatalf("100 kB message over a 64 KiB budget: %v, want the budget's error", err)
	}

	budget = &testBudget{limit: 1 << 20}
	r = NewReader(bytes.NewReader(b))
	r.SetBudget(budget)
	if msg, err := r.ReadMessage(1 << 20); err != nil || len(msg) != 100_000 {
		t.Fatalf("100 kB message: %d bytes, %v", len(msg), err)
	}
	if budget.used != cap(r.msg) || budget.used < 100_000 {
		t.Fatalf("reserved %d for a buffer of %d", budget.used, cap(r.msg))
	}
	for range 2 {
		if msg, err := r.ReadMessage(1 << 20); err != nil || !bytes.Equal(msg, bytes.Repeat([]byte{7}, 6000)) {
			t.Fatalf("6000-byte message: %d bytes, %v", len(msg), err)
		}
		if budget.used != cap(r.msg) || cap(r.msg) > keepMsgSize {
			t.Fatalf("after a small message: reserved %d, buffer %d", budget.used, cap(r.msg))
		}
	}
	r.Release()
	if budget.used != 0 {
		t.Fatalf("%d bytes reserved after Release", budget.used)
	}
}

// TestReaderRead: Read hands out buffered bytes first, reads large
// requests straight from the stream, and returns n > 0 or an error.
func TestReaderRead(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 2000)
	for name, src := range sources(data) {
		t.Run(name, func(t *testing.T) {
			r := NewReader(src())
			if err := r.Fill(); err != nil || r.Buffered() == 0 {
				t.Fatalf("Fill: %v, %d buffered", err, r.Buffered())
			}
			var got []byte
			for _, size := range []int{1, 100, 5000, 7, 9000, 20000} {
				p := make([]byte, size)
				n, err := r.Read(p)
				if err == io.EOF {
					break
				}
				if err != nil || n == 0 {
					t.Fatalf("Read(%d): %d, %v", size, n, err)
				}
				got = append(got, p[:n]...)
			}
			for {
				p := make([]byte, 3000)
				n, err := r.Read(p)
				if err == io.EOF {
					break
				}
				if err != nil || n == 0 {
					t.Fatalf("Read: %d, %v", n, err)
				}
				got = append(got, p[:n]...)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes that differ from the %d sent", len(got), len(data))
			}
			if err := r.Fill(); err != io.EOF {
				t.Fatalf("Fill at the end: %v, want io.EOF", err)
			}
		})
	}
}

// TestReaderStartBuffer: a stream that sent a few bytes holds only the
// Reader's small starting buffer; one whose reads fill it gets the full
// read buffer.
func TestReaderStartBuffer(t *testing.T) {
	r := NewReader(bytes.NewReader([]byte{0x02, 0x80, 0x10, 0x00, 0x00}))
	if _, err := r.ReadVarint(); err != nil {
		t.Fatal(err)
	}
	if len(r.buf) != readerStartSize {
		t.Fatalf("after 5 bytes the read buffer is %d bytes, want %d", len(r.buf), readerStartSize)
	}
	r = NewReader(bytes.NewReader(make([]byte, 1000)))
	if _, err := r.ReadByte(); err != nil {
		t.Fatal(err)
	}
	if len(r.buf) != readerBufSize || r.Buffered() != readerStartSize-1 {
		t.Fatalf("after a full read the buffer is %d bytes with %d buffered, want %d with %d",
			len(r.buf), r.Buffered(), readerBufSize, readerStartSize-1)
	}
}

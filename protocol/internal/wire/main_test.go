package wire

import (
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// unhex decodes hex written with arbitrary spaces, as in the reference.
func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// messageBody skips skip bytes, reads a varint length and returns the body
// it announces, which must be exactly the rest of b.
func messageBody(b []byte, skip int) ([]byte, bool) {
	if len(b) < skip {
		return nil, false
	}
	n, l, err := quicvarint.Parse(b[skip:])
	if err != nil || uint64(len(b)-skip-l) != n {
		return nil, false
	}
	return b[skip+l:], true
}

// setupBody checks the type byte and u16 size of an encoded SETUP message
// and returns its body.
func setupBody(b []byte, typ byte) ([]byte, bool) {
	if len(b) < 3 || b[0] != typ || int(b[1])<<8|int(b[2]) != len(b)-3 {
		return nil, false
	}
	return b[3:], true
}

// mustBody is messageBody for tests that know the encoding is well formed.
func mustBody(tb testing.TB, b []byte, skip int) []byte {
	tb.Helper()
	body, ok := messageBody(b, skip)
	if !ok {
		tb.Fatalf("not a length-prefixed message after %d bytes: % x", skip, b)
	}
	return body
}

// chunkReader returns at most n bytes per Read, then io.EOF.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

// loopReader returns data over and over, never ending.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

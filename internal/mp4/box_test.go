package mp4

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/moqbridge/moqbridge/internal/testmedia"
)

// seeds adds the repository's test media and a few hand-made boxes to f.
func seeds(f *testing.F) { testmedia.AddMP4Seeds(f, "../..") }

// FuzzBoxes splits arbitrary input into top-level boxes: it must end with
// io.EOF or an *Error, and account for every byte it consumed. Walk over
// the same bytes must not panic and must stay inside them.
func FuzzBoxes(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		br := NewReader(bytes.NewReader(data), 1<<16)
		for i := 0; ; i++ {
			h, err := br.Next()
			if err != nil {
				var fe *Error
				if !errors.Is(err, io.EOF) && !errors.As(err, &fe) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if h.Offset > int64(len(data)) || br.Offset() > int64(len(data)) {
				t.Fatalf("offset beyond input")
			}
			if i%2 == 0 {
				_, err = br.Body()
			} else {
				err = br.Skip()
			}
			if err != nil {
				break
			}
		}
		_ = Walk(data, 0, func(bx Box) error {
			if bx.Offset < 0 || bx.BodyOffset()+int64(len(bx.Body)) > int64(len(data)) {
				t.Fatalf("box %q at %d (%d bytes) outside the input", bx.Type, bx.Offset, len(bx.Body))
			}
			return nil
		})
	})
}

func TestReader(t *testing.T) {
	var w Writer
	a := w.Start("ftyp")
	w.Raw([]byte("isom"))
	w.End(a)
	b := w.Full("free", 0, 0)
	w.Zeros(20)
	w.End(b)
	// A 64-bit size, then a box to the end of the stream.
	w.Raw([]byte{0, 0, 0, 1, 'm', 'd', 'a', 't', 0, 0, 0, 0, 0, 0, 0, 18, 1, 2})
	w.Raw([]byte{0, 0, 0, 0, 'm', 'd', 'a', 't', 3, 4, 5})
	br := NewReader(bytes.NewReader(w.B), 0)
	var got []string
	for {
		h, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := br.Body()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s:%d", h.Type, len(body)))
	}
	// free holds its FullBox header and 20 zeros.
	if strings.Join(got, " ") != "ftyp:4 free:24 mdat:2 mdat:3" {
		t.Errorf("boxes %v", got)
	}
	if br.Offset() != int64(len(w.B)) {
		t.Errorf("offset %d, want %d", br.Offset(), len(w.B))
	}
}

func TestReaderErrors(t *testing.T) {
	for name, c := range map[string]struct {
		in  []byte
		max int64
		msg string
	}{
		"truncated header": {[]byte{0, 0, 0, 8, 'f'}, 0, "stream ends inside box header"},
		"small size":       {[]byte{0, 0, 0, 3, 'f', 't', 'y', 'p'}, 0, `box "ftyp" has invalid size 3`},
		"truncated body":   {[]byte{0, 0, 0, 12, 'm', 'o', 'o', 'v', 1}, 0, `stream ends inside box "moov"`},
		"over limit":       {[]byte{0, 0, 0, 12, 'm', 'o', 'o', 'v', 1, 2, 3, 4}, 2, "exceeds the 2-byte limit"},
	} {
		t.Run(name, func(t *testing.T) {
			br := NewReader(bytes.NewReader(c.in), c.max)
			_, err := br.Next()
			if err == nil {
				_, err = br.Body()
			}
			var e *Error
			if !errors.As(err, &e) || e.Err != nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err %v, want an *Error with %q", err, c.msg)
			}
		})
	}
	// A read error that is not a truncation is not a format error.
	boom := errors.New("boom")
	_, err := NewReader(io.MultiReader(bytes.NewReader([]byte{0, 0}), errReader{boom}), 0).Next()
	var e *Error
	if !errors.Is(err, boom) || !errors.As(err, &e) || e.Err == nil {
		t.Fatalf("err %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestWalk(t *testing.T) {
	var w Writer
	moov := w.Start("moov")
	trak := w.Start("trak")
	w.Raw([]byte("abcd"))
	w.End(trak)
	w.End(moov)
	if err := Walk(w.B, 100, func(bx Box) error {
		if bx.Type != "moov" || bx.Offset != 100 || bx.BodyOffset() != 108 {
			t.Errorf("box %+v", bx)
		}
		tr, ok, err := Find(bx.Body, bx.BodyOffset(), "trak")
		if err != nil || !ok || tr.Offset != 108 || string(tr.Body) != "abcd" || cap(tr.Body) != 4 {
			t.Errorf("trak %+v %v %v", tr, ok, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"short header": {0, 0, 0},
		"64-bit short": {0, 0, 0, 1, 'm', 'o', 'o', 'v', 0},
		"too big":      {0, 0, 0, 9, 'm', 'o', 'o', 'v'},
		"too small":    {0, 0, 0, 7, 'm', 'o', 'o', 'v'},
	} {
		err := Walk(b, 10, func(Box) error { return nil })
		var e *Error
		if !errors.As(err, &e) || e.Offset != 10 {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

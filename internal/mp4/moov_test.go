package mp4

import (
	"encoding/hex"
	"errors"
	"os"
	"testing"
)

// trackOf reads what moov.go parses from the first track of an MP4 file.
type trackOf struct {
	id, timescale uint32
	handler       string
	entry         SampleEntry
	esds          ESDS
}

// readTrack walks b down to the first sample entry, calling the parsers
// on the boxes they read; it returns the first error.
func readTrack(b []byte) (tr trackOf, err error) {
	var walk func(b []byte, base int64) error
	walk = func(b []byte, base int64) error {
		return Walk(b, base, func(bx Box) error {
			var err error
			switch bx.Type {
			case "moov", "trak", "mdia", "minf", "stbl":
				return walk(bx.Body, bx.BodyOffset())
			case "tkhd":
				tr.id, err = ParseTkhd(bx.Body, bx.Offset)
			case "mdhd":
				tr.timescale, err = ParseMdhd(bx.Body, bx.Offset)
			case "hdlr":
				tr.handler, err = ParseHdlr(bx.Body, bx.Offset)
			case "stsd":
				e, ok, err := FirstSampleEntry(bx.Body, bx.Offset)
				if err != nil || !ok {
					return err
				}
				if tr.handler == "soun" {
					tr.entry, err = ParseAudioSampleEntry(e)
				} else {
					tr.entry, err = ParseVisualSampleEntry(e)
				}
				if err != nil {
					return err
				}
				if c, ok, err := Find(tr.entry.Children, tr.entry.ChildrenOffset, "esds"); err != nil {
					return err
				} else if ok {
					tr.esds, err = ParseESDS(c.Body, c.Offset)
					return err
				}
			}
			return err
		})
	}
	return tr, walk(b, 0)
}

func TestMoov(t *testing.T) {
	for _, c := range []struct {
		file, handler, entry string
		timescale            uint32
		w, h, ch, rate       int
		asc                  string
	}{
		{"../../sdk/testdata/h264_bframes_cmaf.mp4", "vide", "avc1", 15360, 160, 96, 0, 0, ""},
		{"../../sdk/testdata/aac_cmaf.mp4", "soun", "mp4a", 48000, 0, 0, 2, 48000, "119056e500"},
		{"../../sdk/testdata/opus_cmaf.mp4", "soun", "Opus", 48000, 0, 0, 2, 48000, ""},
	} {
		b, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := readTrack(b)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if tr.id != 1 || tr.timescale != c.timescale || tr.handler != c.handler || tr.entry.Type != c.entry ||
			tr.entry.Width != c.w || tr.entry.Height != c.h || tr.entry.Channels != c.ch || tr.entry.SampleRate != c.rate {
			t.Errorf("%s: %+v", c.file, tr)
		}
		if hex.EncodeToString(tr.esds.DecoderSpecificInfo) != c.asc {
			t.Errorf("%s: esds %+v", c.file, tr.esds)
		}
		if c.asc != "" && tr.esds.AvgBitrate == 0 && tr.esds.MaxBitrate == 0 {
			t.Errorf("%s: no bitrate in %+v", c.file, tr.esds)
		}
	}
}

func TestESDS(t *testing.T) {
	// Version and flags, then ES (tag 3) with ES_ID 1 and flags
	// 0x40|0x80 (URL of 2 bytes, stream dependence), an unrelated
	// descriptor (tag 9), and the DecoderConfigDescriptor (tag 4) with its
	// decoder specific info (tag 5); the ES size runs past the box.
	b, _ := hex.DecodeString("00000000" + "037f" + "0001c0" + "0007" + "02abcd" + "090100" +
		"0411" + "4015000000" + "00010000" + "00008000" + "0502" + "1190")
	e, err := ParseESDS(b, 0)
	if err != nil || hex.EncodeToString(e.DecoderSpecificInfo) != "1190" || e.MaxBitrate != 0x10000 || e.AvgBitrate != 0x8000 {
		t.Fatalf("%+v, %v", e, err)
	}
	for name, in := range map[string]string{
		"not ES":        "00000000" + "0403000000",
		"no DCD":        "00000000" + "0303000100",
		"DSI truncated": "00000000" + "0314" + "000100" + "040f" + "4015000000" + "00000000" + "00000000" + "0505" + "11",
		"short":         "000000",
	} {
		b, _ := hex.DecodeString(in)
		var e *Error
		if _, err := ParseESDS(b, 7); !errors.As(err, &e) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

// FuzzMoov runs the moov parsers over arbitrary input: no panic, an
// *Error when rejected.
func FuzzMoov(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := readTrack(b); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
		}
		if len(b) > 4 {
			_, _ = ParseESDS(b, 0)
		}
	})
}

package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// The cmaf container (hang-format §1.3, §3.2): each MOQ frame is a moof+mdat
// fragment of one track, described by the single-track init segment
// (ftyp+moov) published base64 in the catalog. Only what a reader needs is
// parsed here: the track's timescale, the trex defaults and the sample
// entry from the init, and the samples from moof/traf/tfhd/tfdt/trun.

// errCMAF is wrapped by every cmaf parsing error.
var errCMAF = errors.New("invalid cmaf data")

func cmafError(format string, args ...any) error {
	return fmt.Errorf("cmaf: %w: %s", errCMAF, fmt.Sprintf(format, args...))
}

// maxCMAFSamples bounds the samples of one fragment, so a forged sample
// count cannot make the reader allocate without bound.
const maxCMAFSamples = 1 << 16

// box is one ISO BMFF box: its type, its body and its offset in the
// buffer being walked.
type box struct {
	typ  string
	body []byte
	off  int // offset of the box header
}

// boxes iterates over the boxes of b, calling fn for each; it stops at the
// first error.
func boxes(b []byte, fn func(bx box) error) error {
	off := 0
	for off < len(b) {
		rest := b[off:]
		if len(rest) < 8 {
			return cmafError("truncated box header at offset %d", off)
		}
		size := uint64(binary.BigEndian.Uint32(rest))
		typ := string(rest[4:8])
		hdr := uint64(8)
		switch size {
		case 0:
			size = uint64(len(rest))
		case 1:
			if len(rest) < 16 {
				return cmafError("truncated box header at offset %d", off)
			}
			size = binary.BigEndian.Uint64(rest[8:])
			hdr = 16
		}
		if size < hdr || size > uint64(len(rest)) {
			return cmafError("box %q at offset %d: size %d", typ, off, size)
		}
		if err := fn(box{typ: typ, body: rest[hdr:size:size], off: off}); err != nil {
			return err
		}
		off += int(size)
	}
	return nil
}

// fullBox splits a FullBox body into version, flags and the rest.
func fullBox(b []byte, typ string) (version byte, flags uint32, rest []byte, err error) {
	if len(b) < 4 {
		return 0, 0, nil, cmafError("%s too short", typ)
	}
	return b[0], binary.BigEndian.Uint32(b) & 0xffffff, b[4:], nil
}

// cmafInit is what the reader takes from an init segment.
type cmafInit struct {
	trackID   uint32
	timescale uint32
	audio     bool // handler soun: every sample is a keyframe

	// trex defaults for the track
	defDuration, defSize, defFlags uint32

	// sample entry
	entry      string
	config     []byte // avcC/hvcC/av1C body, AudioSpecificConfig or OpusHead
	width      int
	height     int
	channels   int
	sampleRate int
}

// parseCMAFInit reads the first track of an init segment.
func parseCMAFInit(b []byte) (*cmafInit, error) {
	in := &cmafInit{}
	var trexes [][]byte
	haveTrak := false
	err := boxes(b, func(bx box) error {
		if bx.typ != "moov" {
			return nil
		}
		return boxes(bx.body, func(bx box) error {
			switch bx.typ {
			case "trak":
				if haveTrak {
					return nil
				}
				haveTrak = true
				return in.parseTrak(bx.body)
			case "mvex":
				return boxes(bx.body, func(bx box) error {
					if bx.typ == "trex" {
						trexes = append(trexes, bx.body)
					}
					return nil
				})
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if !haveTrak {
		return nil, cmafError("init has no track")
	}
	if in.timescale == 0 {
		return nil, cmafError("init has no media timescale")
	}
	for _, t := range trexes {
		_, _, r, err := fullBox(t, "trex")
		if err != nil {
			return nil, err
		}
		if len(r) < 20 {
			return nil, cmafError("trex too short")
		}
		if binary.BigEndian.Uint32(r) == in.trackID || len(trexes) == 1 {
			in.defDuration = binary.BigEndian.Uint32(r[8:])
			in.defSize = binary.BigEndian.Uint32(r[12:])
			in.defFlags = binary.BigEndian.Uint32(r[16:])
		}
	}
	return in, nil
}

func (in *cmafInit) parseTrak(b []byte) error {
	return boxes(b, func(bx box) error {
		switch bx.typ {
		case "tkhd":
			v, _, r, err := fullBox(bx.body, "tkhd")
			if err != nil {
				return err
			}
			off := 8
			if v == 1 {
				off = 16
			}
			if len(r) < off+4 {
				return cmafError("tkhd too short")
			}
			in.trackID = binary.BigEndian.Uint32(r[off:])
		case "mdia":
			return boxes(bx.body, func(bx box) error {
				switch bx.typ {
				case "mdhd":
					v, _, r, err := fullBox(bx.body, "mdhd")
					if err != nil {
						return err
					}
					off := 8
					if v == 1 {
						off = 16
					}
					if len(r) < off+4 {
						return cmafError("mdhd too short")
					}
					in.timescale = binary.BigEndian.Uint32(r[off:])
				case "hdlr":
					_, _, r, err := fullBox(bx.body, "hdlr")
					if err != nil {
						return err
					}
					if len(r) < 8 {
						return cmafError("hdlr too short")
					}
					in.audio = string(r[4:8]) == "soun"
				case "minf":
					return boxes(bx.body, func(bx box) error {
						if bx.typ != "stbl" {
							return nil
						}
						return boxes(bx.body, func(bx box) error {
							if bx.typ != "stsd" {
								return nil
							}
							return in.parseStsd(bx.body)
						})
					})
				}
				return nil
			})
		}
		return nil
	})
}

// parseStsd reads the first sample entry.
func (in *cmafInit) parseStsd(b []byte) error {
	_, _, r, err := fullBox(b, "stsd")
	if err != nil {
		return err
	}
	if len(r) < 4 {
		return cmafError("stsd too short")
	}
	first := true
	return boxes(r[4:], func(bx box) error {
		if !first {
			return nil
		}
		first = false
		in.entry = bx.typ
		var children []byte
		if in.audio {
			if len(bx.body) < 28 {
				return cmafError("audio sample entry too short")
			}
			in.channels = int(binary.BigEndian.Uint16(bx.body[16:]))
			in.sampleRate = int(binary.BigEndian.Uint32(bx.body[24:]) >> 16)
			skip := 28
			switch binary.BigEndian.Uint16(bx.body[8:]) { // QuickTime sound version
			case 1:
				skip += 16
			case 2:
				skip += 36
			}
			if len(bx.body) < skip {
				return cmafError("audio sample entry too short")
			}
			children = bx.body[skip:]
		} else {
			if len(bx.body) < 78 {
				return nil // not a visual sample entry; nothing to learn
			}
			in.width = int(binary.BigEndian.Uint16(bx.body[24:]))
			in.height = int(binary.BigEndian.Uint16(bx.body[26:]))
			children = bx.body[78:]
		}
		// Configuration boxes are optional for the reader: ignore a
		// malformed tail rather than reject the track.
		_ = boxes(children, func(bx box) error {
			switch bx.typ {
			case "avcC", "hvcC", "av1C":
				in.config = bx.body
			case "esds":
				in.config = esdsDecoderSpecificInfo(bx.body)
			case "dOps":
				in.config = dOpsToOpusHead(bx.body)
			}
			return nil
		})
		return nil
	})
}

// esdsDecoderSpecificInfo returns the DecoderSpecificInfo (the
// AudioSpecificConfig for AAC) of an esds body, or nil.
func esdsDecoderSpecificInfo(b []byte) []byte {
	if len(b) < 4 {
		return nil
	}
	b = b[4:] // FullBox header
	// descriptor reads tag and size (ISO/IEC 14496-1 §8.3.3).
	descriptor := func(b []byte) (tag byte, body, rest []byte, ok bool) {
		if len(b) < 2 {
			return 0, nil, nil, false
		}
		tag = b[0]
		size, i := 0, 1
		for ; i < len(b) && i <= 4; i++ {
			size = size<<7 | int(b[i]&0x7f)
			if b[i]&0x80 == 0 {
				break
			}
		}
		i++
		if i > len(b) || size > len(b)-i {
			return 0, nil, nil, false
		}
		return tag, b[i : i+size], b[i+size:], true
	}
	tag, es, _, ok := descriptor(b)
	if !ok || tag != 0x03 || len(es) < 3 {
		return nil
	}
	fl := es[2]
	es = es[3:]
	if fl&0x80 != 0 { // streamDependenceFlag
		if len(es) < 2 {
			return nil
		}
		es = es[2:]
	}
	if fl&0x40 != 0 { // URL_Flag
		if len(es) < 1 || len(es) < 1+int(es[0]) {
			return nil
		}
		es = es[1+int(es[0]):]
	}
	if fl&0x20 != 0 { // OCRstreamFlag
		if len(es) < 2 {
			return nil
		}
		es = es[2:]
	}
	for len(es) > 0 {
		tag, body, rest, ok := descriptor(es)
		if !ok {
			return nil
		}
		if tag == 0x04 { // DecoderConfigDescriptor
			if len(body) < 13 {
				return nil
			}
			dsi := body[13:]
			for len(dsi) > 0 {
				tag, body, rest, ok := descriptor(dsi)
				if !ok {
					return nil
				}
				if tag == 0x05 {
					return body
				}
				dsi = rest
			}
			return nil
		}
		es = rest
	}
	return nil
}

// dOpsToOpusHead converts an Opus-in-ISOBMFF dOps body (big-endian, version
// 0) to an OpusHead (little-endian, version 1), or returns nil.
func dOpsToOpusHead(b []byte) []byte {
	if len(b) < 11 || b[0] != 0 {
		return nil
	}
	h := OpusHead{
		Channels:        int(b[1]),
		PreSkip:         binary.BigEndian.Uint16(b[2:]),
		InputSampleRate: binary.BigEndian.Uint32(b[4:]),
		OutputGain:      int16(binary.BigEndian.Uint16(b[8:])),
		MappingFamily:   b[10],
	}
	if h.MappingFamily != 0 {
		if len(b) < 13+h.Channels {
			return nil
		}
		h.StreamCount, h.CoupledCount = b[11], b[12]
		h.Mapping = b[13 : 13+h.Channels]
	}
	return h.Marshal()
}

// cmafSample is one sample of a fragment.
type cmafSample struct {
	dts   uint64 // in the track timescale
	cts   int64  // composition offset: pts = dts + cts
	flags uint32
	data  []byte // aliasing the fragment
}

// keyframe reports whether decoding can start at the sample: audio
// samples always; otherwise a sync sample that does not depend on others
// (sample_depends_on is 2, or 0 as the reference player accepts).
func (in *cmafInit) keyframe(flags uint32) bool {
	if in.audio {
		return true
	}
	dependsOn := flags >> 24 & 3
	nonSync := flags&0x10000 != 0
	return !nonSync && dependsOn != 1
}

// ticks converts a time in the track timescale to a duration, exact to the
// nanosecond (rounded towards negative infinity).
func (in *cmafInit) ticks(t int64) (time.Duration, error) {
	ts := int64(in.timescale)
	sec, rem := t/ts, t%ts
	if rem < 0 {
		sec--
		rem += ts
	}
	if sec > math.MaxInt64/int64(time.Second)-1 || sec < math.MinInt64/int64(time.Second)+1 {
		return 0, cmafError("timestamp %d/%d out of range", t, ts)
	}
	return time.Duration(sec)*time.Second + time.Duration(rem*int64(time.Second)/ts), nil
}

// parseFragment appends the samples of the init's track found in the
// moof+mdat pairs of b to dst. Boxes other than moof (mdat, styp, prft,
// free, …) are skipped; sample data is located through the trun data
// offsets and must lie inside b.
func (in *cmafInit) parseFragment(b []byte, dst []cmafSample) ([]cmafSample, error) {
	dst = dst[:0]
	sawMoof := false
	err := boxes(b, func(bx box) error {
		if bx.typ != "moof" {
			return nil
		}
		sawMoof = true
		var trafs [][]byte
		if err := boxes(bx.body, func(c box) error {
			if c.typ == "traf" {
				trafs = append(trafs, c.body)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, traf := range trafs {
			var err error
			var match bool
			dst, match, err = in.parseTraf(b, bx.off, traf, len(trafs) == 1, dst)
			if err != nil {
				return err
			}
			if match {
				break
			}
		}
		return nil
	})
	if err != nil {
		return dst[:0], err
	}
	if !sawMoof {
		return dst[:0], cmafError("no moof")
	}
	return dst, nil
}

// tfhd flags.
const (
	tfhdBaseDataOffset  = 0x000001
	tfhdSampleDescIndex = 0x000002
	tfhdDefaultDuration = 0x000008
	tfhdDefaultSize     = 0x000010
	tfhdDefaultFlags    = 0x000020
)

// trun flags.
const (
	trunDataOffset      = 0x000001
	trunFirstSampleFlag = 0x000004
	trunDuration        = 0x000100
	trunSize            = 0x000200
	trunFlags           = 0x000400
	trunCTS             = 0x000800
)

// parseTraf appends the samples of one traf if it belongs to the init's
// track (or is the only one); match reports whether it did.
func (in *cmafInit) parseTraf(frag []byte, moofOff int, traf []byte, only bool, dst []cmafSample) (_ []cmafSample, match bool, err error) {
	var (
		haveTfhd, haveTfdt bool
		trackID            uint32
		base               = uint64(moofOff)
		defDuration        = in.defDuration
		defSize            = in.defSize
		defFlags           = in.defFlags
		dts                uint64
		truns              [][]byte
	)
	err = boxes(traf, func(bx box) error {
		switch bx.typ {
		case "tfhd":
			_, fl, r, err := fullBox(bx.body, "tfhd")
			if err != nil {
				return err
			}
			need := 4 // track_ID
			if fl&tfhdBaseDataOffset != 0 {
				need += 8
			}
			for _, f := range []uint32{tfhdSampleDescIndex, tfhdDefaultDuration, tfhdDefaultSize, tfhdDefaultFlags} {
				if fl&f != 0 {
					need += 4
				}
			}
			if len(r) < need {
				return cmafError("tfhd too short")
			}
			haveTfhd = true
			trackID = binary.BigEndian.Uint32(r)
			r = r[4:]
			if fl&tfhdBaseDataOffset != 0 {
				base = binary.BigEndian.Uint64(r)
				r = r[8:]
			}
			if fl&tfhdSampleDescIndex != 0 {
				r = r[4:]
			}
			if fl&tfhdDefaultDuration != 0 {
				defDuration = binary.BigEndian.Uint32(r)
				r = r[4:]
			}
			if fl&tfhdDefaultSize != 0 {
				defSize = binary.BigEndian.Uint32(r)
				r = r[4:]
			}
			if fl&tfhdDefaultFlags != 0 {
				defFlags = binary.BigEndian.Uint32(r)
			}
		case "tfdt":
			v, _, r, err := fullBox(bx.body, "tfdt")
			if err != nil {
				return err
			}
			switch {
			case v == 1 && len(r) >= 8:
				dts = binary.BigEndian.Uint64(r)
			case v == 0 && len(r) >= 4:
				dts = uint64(binary.BigEndian.Uint32(r))
			default:
				return cmafError("tfdt too short")
			}
			haveTfdt = true
		case "trun":
			truns = append(truns, bx.body)
		}
		return nil
	})
	if err != nil {
		return dst, false, err
	}
	if !haveTfhd {
		return dst, false, cmafError("traf without tfhd")
	}
	if trackID != in.trackID && !only {
		return dst, false, nil
	}
	if !haveTfdt {
		return dst, true, cmafError("traf without tfdt")
	}
	pos := base
	for _, trun := range truns {
		v, fl, r, err := fullBox(trun, "trun")
		if err != nil {
			return dst, true, err
		}
		if len(r) < 4 {
			return dst, true, cmafError("trun too short")
		}
		count := binary.BigEndian.Uint32(r)
		r = r[4:]
		if fl&trunDataOffset != 0 {
			if len(r) < 4 {
				return dst, true, cmafError("trun too short")
			}
			pos = uint64(int64(base) + int64(int32(binary.BigEndian.Uint32(r))))
			r = r[4:]
		}
		firstFlags, haveFirst := uint32(0), false
		if fl&trunFirstSampleFlag != 0 {
			if len(r) < 4 {
				return dst, true, cmafError("trun too short")
			}
			firstFlags, haveFirst = binary.BigEndian.Uint32(r), true
			r = r[4:]
		}
		entry := 0
		for _, f := range []uint32{trunDuration, trunSize, trunFlags, trunCTS} {
			if fl&f != 0 {
				entry += 4
			}
		}
		if count > maxCMAFSamples || len(dst)+int(count) > maxCMAFSamples || uint64(len(r)) < uint64(count)*uint64(entry) {
			return dst, true, cmafError("trun sample count %d", count)
		}
		for i := range int(count) {
			duration, size, flags, cts := defDuration, defSize, defFlags, int64(0)
			if i == 0 && haveFirst {
				flags = firstFlags
			}
			if fl&trunDuration != 0 {
				duration = binary.BigEndian.Uint32(r)
				r = r[4:]
			}
			if fl&trunSize != 0 {
				size = binary.BigEndian.Uint32(r)
				r = r[4:]
			}
			if fl&trunFlags != 0 {
				flags = binary.BigEndian.Uint32(r)
				r = r[4:]
			}
			if fl&trunCTS != 0 {
				if v == 0 {
					cts = int64(binary.BigEndian.Uint32(r))
				} else {
					cts = int64(int32(binary.BigEndian.Uint32(r)))
				}
				r = r[4:]
			}
			if pos > uint64(len(frag)) || uint64(size) > uint64(len(frag))-pos {
				return dst, true, cmafError("sample %d data outside the fragment", len(dst))
			}
			if dts > math.MaxInt64/2 {
				return dst, true, cmafError("decode time %d out of range", dts)
			}
			dst = append(dst, cmafSample{
				dts:   dts,
				cts:   cts,
				flags: flags,
				data:  frag[pos : pos+uint64(size) : pos+uint64(size)],
			})
			pos += uint64(size)
			dts += uint64(duration)
		}
	}
	return dst, true, nil
}

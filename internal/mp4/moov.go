package mp4

import "encoding/binary"

// The boxes of a movie (moov) that both the fMP4 source and the cmaf
// reader take a track from: tkhd, mdhd, hdlr, the first sample entry of
// stsd with its fixed fields, and esds. What a sample entry's codec
// configuration means is the sdk's business.

// ParseTkhd returns the track ID of a tkhd body (at offset off).
func ParseTkhd(body []byte, off int64) (trackID uint32, err error) {
	return afterTimes(body, off, "tkhd")
}

// ParseMdhd returns the timescale of an mdhd body (at offset off).
func ParseMdhd(body []byte, off int64) (timescale uint32, err error) {
	return afterTimes(body, off, "mdhd")
}

// afterTimes reads the 32-bit field after the creation and modification
// times of a tkhd or mdhd (64-bit times in version 1).
func afterTimes(body []byte, off int64, typ string) (uint32, error) {
	v, _, r, err := FullBox(body, off, typ)
	if err != nil {
		return 0, err
	}
	at := 8
	if v == 1 {
		at = 16
	}
	if len(r) < at+4 {
		return 0, Errorf(off, "%s truncated", typ)
	}
	return binary.BigEndian.Uint32(r[at:]), nil
}

// ParseHdlr returns the handler type of an hdlr body (at offset off):
// "vide", "soun", …
func ParseHdlr(body []byte, off int64) (string, error) {
	_, _, r, err := FullBox(body, off, "hdlr")
	if err != nil {
		return "", err
	}
	if len(r) < 8 {
		return "", Errorf(off, "hdlr truncated")
	}
	return string(r[4:8]), nil
}

// FirstSampleEntry returns the first sample entry of an stsd body (at
// offset off); ok is false when the stsd lists none.
func FirstSampleEntry(stsd []byte, off int64) (entry Box, ok bool, err error) {
	_, _, r, err := FullBox(stsd, off, "stsd")
	if err != nil {
		return Box{}, false, err
	}
	if len(r) < 4 {
		return Box{}, false, Errorf(off, "stsd truncated")
	}
	if binary.BigEndian.Uint32(r) == 0 {
		return Box{}, false, nil
	}
	err = Walk(r[4:], off+8, func(bx Box) error {
		if !ok {
			entry, ok = bx, true
		}
		return nil
	})
	return entry, ok, err
}

// SampleEntry holds the fixed fields of a visual or audio sample entry
// and the boxes after them (the codec configuration, …).
type SampleEntry struct {
	Type                 string
	Width, Height        int // visual
	Channels, SampleRate int // audio; SampleRate 0 above 65535 Hz
	Children             []byte
	ChildrenOffset       int64
}

// ParseVisualSampleEntry reads a visual sample entry (avc1, hvc1, av01,
// vp09, …).
func ParseVisualSampleEntry(bx Box) (SampleEntry, error) {
	b := bx.Body
	if len(b) < 78 {
		return SampleEntry{}, Errorf(bx.Offset, "visual sample entry %q truncated", bx.Type)
	}
	return SampleEntry{
		Type:           bx.Type,
		Width:          int(binary.BigEndian.Uint16(b[24:])),
		Height:         int(binary.BigEndian.Uint16(b[26:])),
		Children:       b[78:],
		ChildrenOffset: bx.BodyOffset() + 78,
	}, nil
}

// ParseAudioSampleEntry reads an audio sample entry (mp4a, Opus, …),
// including the QuickTime sound description versions 1 and 2.
func ParseAudioSampleEntry(bx Box) (SampleEntry, error) {
	b := bx.Body
	if len(b) < 28 {
		return SampleEntry{}, Errorf(bx.Offset, "audio sample entry %q truncated", bx.Type)
	}
	skip := 28
	switch binary.BigEndian.Uint16(b[8:]) { // QuickTime sound version
	case 1:
		skip += 16
	case 2:
		skip += 36
	}
	if len(b) < skip {
		return SampleEntry{}, Errorf(bx.Offset, "audio sample entry %q truncated", bx.Type)
	}
	return SampleEntry{
		Type:           bx.Type,
		Channels:       int(binary.BigEndian.Uint16(b[16:])),
		SampleRate:     int(binary.BigEndian.Uint32(b[24:]) >> 16),
		Children:       b[skip:],
		ChildrenOffset: bx.BodyOffset() + int64(skip),
	}, nil
}

// ESDS is what an esds box says about an MPEG-4 audio stream.
type ESDS struct {
	// DecoderSpecificInfo is the AudioSpecificConfig for AAC.
	DecoderSpecificInfo []byte
	MaxBitrate          uint32
	AvgBitrate          uint32
}

// ParseESDS reads an esds body (at offset off): the ES descriptor's
// decoder configuration (ISO/IEC 14496-1 §7.2.6). A descriptor whose size
// runs past its container is cut to it; the decoder specific info must
// be whole.
func ParseESDS(body []byte, off int64) (ESDS, error) {
	_, _, b, err := FullBox(body, off, "esds")
	if err != nil {
		return ESDS{}, err
	}
	tag, es, _, ok := descriptor(b, true)
	if !ok {
		return ESDS{}, Errorf(off, "esds truncated")
	}
	if tag != 0x03 {
		return ESDS{}, Errorf(off, "esds: ES descriptor tag %d", tag)
	}
	if len(es) < 3 {
		return ESDS{}, Errorf(off, "esds truncated")
	}
	fl := es[2]
	es = es[3:]
	var skip int
	if fl&0x80 != 0 { // streamDependenceFlag
		skip += 2
	}
	if fl&0x40 != 0 { // URL_Flag
		if len(es) <= skip {
			return ESDS{}, Errorf(off, "esds truncated")
		}
		skip += 1 + int(es[skip])
	}
	if fl&0x20 != 0 { // OCRstreamFlag
		skip += 2
	}
	if len(es) < skip {
		return ESDS{}, Errorf(off, "esds truncated")
	}
	es = es[skip:]
	for len(es) > 0 {
		tag, dcd, rest, ok := descriptor(es, true)
		if !ok {
			break
		}
		if tag != 0x04 { // DecoderConfigDescriptor
			es = rest
			continue
		}
		if len(dcd) < 13 {
			return ESDS{}, Errorf(off, "esds: decoder config descriptor truncated")
		}
		e := ESDS{MaxBitrate: binary.BigEndian.Uint32(dcd[5:]), AvgBitrate: binary.BigEndian.Uint32(dcd[9:])}
		dsi := dcd[13:]
		for len(dsi) > 0 {
			tag, info, rest, ok := descriptor(dsi, false)
			if !ok {
				break
			}
			if tag == 0x05 {
				e.DecoderSpecificInfo = info
				return e, nil
			}
			dsi = rest
		}
		return ESDS{}, Errorf(off, "esds: no decoder specific info")
	}
	return ESDS{}, Errorf(off, "esds: no decoder config descriptor")
}

// descriptor reads the tag and size of an MPEG-4 descriptor (ISO/IEC
// 14496-1 §8.3.3). A size beyond b is cut to b if cut, else not ok.
func descriptor(b []byte, cut bool) (tag byte, body, rest []byte, ok bool) {
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
	if i > len(b) {
		return 0, nil, nil, false
	}
	if size > len(b)-i {
		if !cut {
			return 0, nil, nil, false
		}
		size = len(b) - i
	}
	return tag, b[i : i+size], b[i+size:], true
}

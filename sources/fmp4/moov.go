package fmp4

import (
	"encoding/binary"
	"fmt"

	"github.com/moqbridge/moqbridge/sdk"
)

// maxTableSamples bounds the samples of one track of a progressive file,
// so that a forged count cannot make the reader allocate without bound.
const maxTableSamples = 1 << 22

// trackInfo is one supported trak of the moov.
type trackInfo struct {
	id        uint32
	timescale uint32
	track     sdk.Track
	// trex defaults, for fragments.
	defDur, defSize, defFlags uint32
	// lastDur is the duration of the track's latest fragment sample.
	lastDur uint32
	// samples of a progressive file (from the sample tables).
	samples []tableSample
}

// tableSample is a sample of a progressive file.
type tableSample struct {
	off  int64
	size uint32
	dts  int64
	cts  int32
	dur  uint32
	key  bool
}

// movie is a parsed moov.
type movie struct {
	tracks []*trackInfo
	byID   map[uint32]*trackInfo
	// samples reports a progressive file: some track has sample tables.
	samples bool
}

// parseMoov parses the body of a moov box starting at stream offset base.
// Tracks with a handler other than video or audio, or a codec moqbridge
// does not carry, are left out.
func parseMoov(b []byte, base int64) (*movie, error) {
	m := &movie{byID: make(map[uint32]*trackInfo)}
	type trex struct{ dur, size, flags uint32 }
	trexs := map[uint32]trex{}
	err := walk(b, base, func(typ string, body []byte, off int64) error {
		switch typ {
		case "trak":
			t, err := parseTrak(body, off)
			if err != nil {
				return err
			}
			if t == nil {
				return nil
			}
			if m.byID[t.id] != nil {
				return formatErr(off, "duplicate track id %d", t.id)
			}
			m.byID[t.id] = t
			m.tracks = append(m.tracks, t)
			if len(t.samples) > 0 {
				m.samples = true
			}
		case "mvex":
			return walk(body, off, func(typ string, body []byte, off int64) error {
				if typ != "trex" {
					return nil
				}
				r := &reader{b: body, base: off, what: "trex"}
				r.skip(4)
				id := r.u32()
				r.skip(4)
				x := trex{r.u32(), r.u32(), r.u32()}
				if r.err != nil {
					return r.err
				}
				trexs[id] = x
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, t := range m.tracks {
		if x, ok := trexs[t.id]; ok {
			t.defDur, t.defSize, t.defFlags = x.dur, x.size, x.flags
		}
	}
	if len(m.tracks) == 0 {
		return nil, formatErr(base, "moov has no video or audio track in a supported codec (H.264, H.265, AV1, VP9, AAC, Opus)")
	}
	return m, nil
}

// parseTrak parses a trak; it returns nil for a track that is skipped.
func parseTrak(b []byte, base int64) (*trackInfo, error) {
	t := &trackInfo{}
	tkhd, tkOff, ok, err := find(b, base, "tkhd")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, formatErr(base, "trak without tkhd")
	}
	r := &reader{b: tkhd, base: tkOff, what: "tkhd"}
	if r.u8() == 1 {
		r.skip(3 + 16)
	} else {
		r.skip(3 + 8)
	}
	t.id = r.u32()
	if r.err != nil {
		return nil, r.err
	}
	mdia, mdOff, ok, err := find(b, base, "mdia")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, formatErr(base, "trak without mdia")
	}
	var handler string
	var minf []byte
	var minfOff int64
	err = walk(mdia, mdOff, func(typ string, body []byte, off int64) error {
		switch typ {
		case "mdhd":
			r := &reader{b: body, base: off, what: "mdhd"}
			if r.u8() == 1 {
				r.skip(3 + 16)
			} else {
				r.skip(3 + 8)
			}
			t.timescale = r.u32()
			if r.err != nil {
				return r.err
			}
			if t.timescale == 0 {
				return formatErr(off, "track %d: mdhd timescale 0", t.id)
			}
		case "hdlr":
			r := &reader{b: body, base: off, what: "hdlr"}
			r.skip(8)
			handler = string(r.bytes(4))
			return r.err
		case "minf":
			minf, minfOff = body, off
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if handler != "vide" && handler != "soun" {
		return nil, nil
	}
	if t.timescale == 0 {
		return nil, formatErr(mdOff, "track %d: no mdhd", t.id)
	}
	stbl, stOff, ok, err := find(minf, minfOff, "stbl")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, formatErr(minfOff, "track %d: no stbl", t.id)
	}
	tables := map[string][]byte{}
	offs := map[string]int64{}
	err = walk(stbl, stOff, func(typ string, body []byte, off int64) error {
		if _, dup := tables[typ]; !dup {
			tables[typ], offs[typ] = body, off
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	stsd, ok := tables["stsd"]
	if !ok {
		return nil, formatErr(stOff, "track %d: no stsd", t.id)
	}
	tr, supported, err := parseStsd(stsd, offs["stsd"], handler == "vide")
	if err != nil {
		return nil, err
	}
	if !supported {
		return nil, nil
	}
	t.track = tr
	if t.samples, err = sampleTable(tables, offs, stOff, t.track.Kind == sdk.KindAudio); err != nil {
		return nil, fmt.Errorf("track %d: %w", t.id, err)
	}
	return t, nil
}

// parseStsd maps the first sample entry to an sdk.Track.
func parseStsd(b []byte, base int64, video bool) (sdk.Track, bool, error) {
	r := &reader{b: b, base: base, what: "stsd"}
	r.skip(4)
	if n := r.u32(); r.err == nil && n == 0 {
		return sdk.Track{}, false, formatErr(base, "stsd without sample entry")
	}
	if r.err != nil {
		return sdk.Track{}, false, r.err
	}
	var entry []byte
	var typ string
	var off int64
	err := walk(b[8:], base+8, func(t string, body []byte, o int64) error {
		if entry == nil {
			entry, typ, off = body, t, o
		}
		return nil
	})
	if err != nil {
		return sdk.Track{}, false, err
	}
	if entry == nil {
		return sdk.Track{}, false, formatErr(base, "stsd without sample entry")
	}
	fail := func(err error) (sdk.Track, bool, error) {
		return sdk.Track{}, false, formatErr(off, "sample entry %s: %v", quote(typ), err)
	}
	if video {
		if len(entry) < 78 {
			return fail(fmt.Errorf("visual sample entry truncated"))
		}
		width := int(binary.BigEndian.Uint16(entry[24:]))
		height := int(binary.BigEndian.Uint16(entry[26:]))
		children, cOff := entry[78:], off+78
		config := func(name string) ([]byte, error) {
			c, _, ok, err := find(children, cOff, name)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, fmt.Errorf("no %s box", name)
			}
			return c, nil
		}
		var tr sdk.Track
		var err error
		switch typ {
		case "avc1", "avc3":
			var c []byte
			if c, err = config("avcC"); err == nil {
				tr, err = sdk.H264FromConfig(c)
			}
		case "hvc1", "hev1":
			var c []byte
			if c, err = config("hvcC"); err == nil {
				tr, err = sdk.H265FromConfig(c)
			}
		case "av01":
			var c []byte
			if c, err = config("av1C"); err == nil {
				tr, err = sdk.AV1FromConfig(c)
			}
		case "vp09":
			var c []byte
			if c, err = config("vpcC"); err == nil {
				var vc sdk.VP9Config
				if vc, err = sdk.ParseVPCC(c); err == nil {
					tr, err = sdk.VP9FromConfig(vc)
				}
			}
		default:
			return sdk.Track{}, false, nil
		}
		if err != nil {
			return fail(err)
		}
		if tr.Width == 0 || tr.Height == 0 {
			tr.Width, tr.Height = width, height
		}
		return tr, true, nil
	}
	if len(entry) < 28 {
		return fail(fmt.Errorf("audio sample entry truncated"))
	}
	ver := binary.BigEndian.Uint16(entry[8:])
	channels := int(binary.BigEndian.Uint16(entry[16:]))
	rate := int(binary.BigEndian.Uint32(entry[24:]) >> 16)
	start := 28
	switch ver {
	case 1:
		start += 16
	case 2:
		start += 36
	}
	if len(entry) < start {
		return fail(fmt.Errorf("audio sample entry truncated"))
	}
	children, cOff := entry[start:], off+int64(start)
	switch typ {
	case "mp4a":
		esds, eOff, ok, err := find(children, cOff, "esds")
		if err != nil {
			return sdk.Track{}, false, err
		}
		if !ok {
			return fail(fmt.Errorf("no esds box"))
		}
		asc, bitrate, err := parseESDS(esds, eOff)
		if err != nil {
			return sdk.Track{}, false, err
		}
		tr, err := sdk.AACFromConfig(asc)
		if err != nil {
			return fail(err)
		}
		tr.Bitrate = bitrate
		return tr, true, nil
	case "Opus", "opus":
		dops, dOff, ok, err := find(children, cOff, "dOps")
		if err != nil {
			return sdk.Track{}, false, err
		}
		if !ok {
			return fail(fmt.Errorf("no dOps box"))
		}
		head, err := opusHead(dops, dOff)
		if err != nil {
			return sdk.Track{}, false, err
		}
		tr, err := sdk.OpusFromHead(head)
		if err != nil {
			return fail(err)
		}
		return tr, true, nil
	}
	_, _ = channels, rate
	return sdk.Track{}, false, nil
}

// opusHead converts the body of a dOps box (big-endian, version 0) into an
// OpusHead (RFC 7845, little-endian).
func opusHead(b []byte, base int64) ([]byte, error) {
	r := &reader{b: b, base: base, what: "dOps"}
	if v := r.u8(); r.err == nil && v != 0 {
		return nil, formatErr(base, "dOps version %d", v)
	}
	h := sdk.OpusHead{Channels: int(r.u8()), PreSkip: r.u16(), InputSampleRate: r.u32(), OutputGain: int16(r.u16()), MappingFamily: r.u8()}
	if h.MappingFamily != 0 {
		h.StreamCount, h.CoupledCount = r.u8(), r.u8()
		h.Mapping = r.bytes(h.Channels)
	}
	if r.err != nil {
		return nil, r.err
	}
	return h.Marshal(), nil
}

// parseESDS returns the AudioSpecificConfig and the bitrate of an esds.
func parseESDS(b []byte, base int64) (asc []byte, bitrate int, err error) {
	r := &reader{b: b, base: base, what: "esds"}
	r.skip(4)
	desc := func() (tag uint8, n int) {
		tag = r.u8()
		for i := 0; i < 4; i++ {
			c := r.u8()
			n = n<<7 | int(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
		return tag, n
	}
	if tag, _ := desc(); r.err == nil && tag != 3 {
		return nil, 0, formatErr(base, "esds: ES descriptor tag %d", tag)
	}
	r.skip(2)
	flags := r.u8()
	if flags&0x80 != 0 {
		r.skip(2)
	}
	if flags&0x40 != 0 {
		r.skip(int(r.u8()))
	}
	if flags&0x20 != 0 {
		r.skip(2)
	}
	if tag, _ := desc(); r.err == nil && tag != 4 {
		return nil, 0, formatErr(base, "esds: decoder config descriptor tag %d", tag)
	}
	r.skip(5)
	maxBR, avgBR := r.u32(), r.u32()
	tag, n := desc()
	if r.err == nil && tag != 5 {
		return nil, 0, formatErr(base, "esds: no decoder specific info (tag %d)", tag)
	}
	asc = r.bytes(n)
	if r.err != nil {
		return nil, 0, r.err
	}
	bitrate = int(avgBR)
	if bitrate == 0 {
		bitrate = int(maxBR)
	}
	return asc, bitrate, nil
}

// sampleTable builds the samples of a progressive track from stts, ctts,
// stss, stsz, stsc and stco/co64; it returns nil for a track without
// samples (a fragmented file's moov).
func sampleTable(tables map[string][]byte, offs map[string]int64, stOff int64, audio bool) ([]tableSample, error) {
	stsz, ok := tables["stsz"]
	if !ok {
		if stz2, ok := tables["stz2"]; ok && len(stz2) >= 12 && binary.BigEndian.Uint32(stz2[8:]) > 0 {
			return nil, formatErr(offs["stz2"], "stz2 sample size tables are not supported")
		}
		return nil, nil
	}
	r := &reader{b: stsz, base: offs["stsz"], what: "stsz"}
	r.skip(4)
	uniform, count := r.u32(), r.u32()
	if r.err != nil {
		return nil, r.err
	}
	if count == 0 {
		return nil, nil
	}
	if count > maxTableSamples {
		return nil, formatErr(offs["stsz"], "%d samples, more than the %d supported", count, maxTableSamples)
	}
	if uniform == 0 && uint64(r.left()) < uint64(count)*4 {
		return nil, formatErr(offs["stsz"], "stsz lists %d samples in %d bytes", count, r.left())
	}
	samples := make([]tableSample, count)
	for i := range samples {
		if uniform != 0 {
			samples[i].size = uniform
		} else {
			samples[i].size = r.u32()
		}
	}
	// Decode times.
	stts, ok := tables["stts"]
	if !ok {
		return nil, formatErr(stOff, "no stts")
	}
	r = &reader{b: stts, base: offs["stts"], what: "stts"}
	r.skip(4)
	n := r.u32()
	i := 0
	var dts int64
	for e := uint32(0); e < n && r.err == nil && i < len(samples); e++ {
		c, d := r.u32(), r.u32()
		for ; c > 0 && i < len(samples); c-- {
			samples[i].dts, samples[i].dur = dts, d
			dts += int64(d)
			i++
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if i < len(samples) {
		return nil, formatErr(offs["stts"], "stts covers %d of %d samples", i, len(samples))
	}
	// Composition offsets (signed in both versions, as written in practice).
	if ctts, ok := tables["ctts"]; ok {
		r = &reader{b: ctts, base: offs["ctts"], what: "ctts"}
		r.skip(4)
		n := r.u32()
		i := 0
		for e := uint32(0); e < n && r.err == nil && i < len(samples); e++ {
			c, o := r.u32(), int32(r.u32())
			for ; c > 0 && i < len(samples); c-- {
				samples[i].cts = o
				i++
			}
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	// Sync samples.
	if stss, ok := tables["stss"]; ok && !audio {
		r = &reader{b: stss, base: offs["stss"], what: "stss"}
		r.skip(4)
		n := r.u32()
		for e := uint32(0); e < n && r.err == nil; e++ {
			if k := r.u32(); k >= 1 && int(k) <= len(samples) {
				samples[k-1].key = true
			}
		}
		if r.err != nil {
			return nil, r.err
		}
	} else {
		for i := range samples {
			samples[i].key = true
		}
	}
	// Chunk offsets.
	var chunks []int64
	if stco, ok := tables["stco"]; ok {
		r = &reader{b: stco, base: offs["stco"], what: "stco"}
		r.skip(4)
		n := r.u32()
		if r.err == nil && uint64(r.left()) < uint64(n)*4 {
			return nil, formatErr(offs["stco"], "stco lists %d chunks in %d bytes", n, r.left())
		}
		chunks = make([]int64, n)
		for c := range chunks {
			chunks[c] = int64(r.u32())
		}
	} else if co64, ok := tables["co64"]; ok {
		r = &reader{b: co64, base: offs["co64"], what: "co64"}
		r.skip(4)
		n := r.u32()
		if r.err == nil && uint64(r.left()) < uint64(n)*8 {
			return nil, formatErr(offs["co64"], "co64 lists %d chunks in %d bytes", n, r.left())
		}
		chunks = make([]int64, n)
		for c := range chunks {
			v := r.u64()
			if v > 1<<62 {
				return nil, formatErr(offs["co64"], "chunk offset %d out of range", v)
			}
			chunks[c] = int64(v)
		}
	} else {
		return nil, formatErr(stOff, "no stco or co64")
	}
	if r.err != nil {
		return nil, r.err
	}
	stsc, ok := tables["stsc"]
	if !ok {
		return nil, formatErr(stOff, "no stsc")
	}
	r = &reader{b: stsc, base: offs["stsc"], what: "stsc"}
	r.skip(4)
	n = r.u32()
	type run struct{ first, per uint32 }
	var runs []run
	for e := uint32(0); e < n && r.err == nil && e < 1<<20; e++ {
		first, per := r.u32(), r.u32()
		r.skip(4)
		runs = append(runs, run{first, per})
	}
	if r.err != nil {
		return nil, r.err
	}
	i = 0
	for ri, ru := range runs {
		if ru.first == 0 {
			return nil, formatErr(offs["stsc"], "stsc entry %d: first chunk 0", ri)
		}
		last := uint32(len(chunks)) // exclusive, 1-based
		if ri+1 < len(runs) {
			last = runs[ri+1].first - 1
		}
		for c := ru.first; c <= last && c <= uint32(len(chunks)) && i < len(samples); c++ {
			off := chunks[c-1]
			for k := uint32(0); k < ru.per && i < len(samples); k++ {
				samples[i].off = off
				off += int64(samples[i].size)
				i++
			}
		}
	}
	if i < len(samples) {
		return nil, formatErr(offs["stsc"], "chunks hold %d of %d samples", i, len(samples))
	}
	return samples, nil
}

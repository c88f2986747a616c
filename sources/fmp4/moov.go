package fmp4

import (
	"encoding/binary"
	"fmt"

	"github.com/moqbridge/moqbridge/internal/mp4"
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
	defaults mp4.SampleDefaults
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
	trexs := map[uint32]mp4.SampleDefaults{}
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
				id, d, err := mp4.ParseTrex(body, off)
				if err != nil {
					return fromMP4(err)
				}
				trexs[id] = d
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
			t.defaults = x
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
	if t.id, err = mp4.ParseTkhd(tkhd, tkOff); err != nil {
		return nil, fromMP4(err)
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
			var err error
			if t.timescale, err = mp4.ParseMdhd(body, off); err != nil {
				return fromMP4(err)
			}
			if t.timescale == 0 {
				return formatErr(off, "track %d: mdhd timescale 0", t.id)
			}
		case "hdlr":
			var err error
			handler, err = mp4.ParseHdlr(body, off)
			return fromMP4(err)
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
	bx, ok, err := mp4.FirstSampleEntry(b, base)
	if err != nil {
		return sdk.Track{}, false, fromMP4(err)
	}
	if !ok {
		return sdk.Track{}, false, formatErr(base, "stsd without sample entry")
	}
	typ, off := bx.Type, bx.Offset+int64(bx.HeaderLen)
	fail := func(err error) (sdk.Track, bool, error) {
		return sdk.Track{}, false, formatErr(off, "sample entry %s: %v", quote(typ), err)
	}
	if video {
		se, serr := mp4.ParseVisualSampleEntry(bx)
		if serr != nil {
			return fail(fmt.Errorf("visual sample entry truncated"))
		}
		width, height := se.Width, se.Height
		children, cOff := se.Children, se.ChildrenOffset
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
	se, err := mp4.ParseAudioSampleEntry(bx)
	if err != nil {
		return fail(fmt.Errorf("audio sample entry truncated"))
	}
	children, cOff := se.Children, se.ChildrenOffset
	switch typ {
	case "mp4a":
		esds, eOff, ok, err := find(children, cOff, "esds")
		if err != nil {
			return sdk.Track{}, false, err
		}
		if !ok {
			return fail(fmt.Errorf("no esds box"))
		}
		e, err := mp4.ParseESDS(esds, eOff)
		if err != nil {
			return sdk.Track{}, false, fromMP4(err)
		}
		tr, err := sdk.AACFromConfig(e.DecoderSpecificInfo)
		if err != nil {
			return fail(err)
		}
		tr.Bitrate = int(e.AvgBitrate)
		if tr.Bitrate == 0 {
			tr.Bitrate = int(e.MaxBitrate)
		}
		return tr, true, nil
	case "Opus", "opus":
		dops, dOff, ok, err := find(children, cOff, "dOps")
		if err != nil {
			return sdk.Track{}, false, err
		}
		if !ok {
			return fail(fmt.Errorf("no dOps box"))
		}
		h, err := sdk.ParseDOps(dops)
		if err != nil {
			return sdk.Track{}, false, formatErr(dOff, "%v", err)
		}
		tr, err := sdk.OpusFromHead(h.Marshal())
		if err != nil {
			return fail(err)
		}
		return tr, true, nil
	}
	return sdk.Track{}, false, nil
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

package fmp4

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/moqbridge/moqbridge/sdk"
)

// buf appends ISO BMFF boxes to a byte slice. Box sizes are patched when a
// box ends, so a whole init segment or fragment is built in one buffer
// without seeking.
type buf struct{ b []byte }

func (w *buf) u8(v uint8)   { w.b = append(w.b, v) }
func (w *buf) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *buf) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *buf) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *buf) raw(p []byte) { w.b = append(w.b, p...) }
func (w *buf) zeros(n int) {
	for range n {
		w.b = append(w.b, 0)
	}
}

// start opens a box and returns its offset for end.
func (w *buf) start(typ string) int {
	off := len(w.b)
	w.u32(0)
	w.b = append(w.b, typ[:4]...)
	return off
}

// full opens a FullBox.
func (w *buf) full(typ string, version uint8, flags uint32) int {
	off := w.start(typ)
	w.u32(uint32(version)<<24 | flags&0xffffff)
	return off
}

// end patches the size of the box opened at off.
func (w *buf) end(off int) {
	binary.BigEndian.PutUint32(w.b[off:], uint32(len(w.b)-off))
}

// matrix writes the unity transformation matrix of mvhd and tkhd.
func (w *buf) matrix() {
	for _, v := range []uint32{0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000} {
		w.u32(v)
	}
}

// Sample flags written in trun (what ffmpeg writes and the hang importer
// expects).
const (
	flagsSync    = 0x02000000 // sample_depends_on = 2
	flagsNonSync = 0x01010000 // sample_depends_on = 1, is_non_sync_sample
)

// entry is what the init segment needs to know about one track.
type entry struct {
	id        uint32
	kind      sdk.Kind
	timescale uint32
	fourcc    string // sample entry type
	config    string // configuration box type ("" for none)
	body      []byte // configuration box body
	width     int
	height    int
	channels  int
	rate      int
	bitrate   int
}

// sampleEntry works out the sample entry of a track. It fails for codecs
// and configurations the file format cannot carry.
func sampleEntry(t sdk.Track) (entry, error) {
	e := entry{kind: t.Kind, width: t.Width, height: t.Height, channels: t.Channels, rate: t.SampleRate, bitrate: t.Bitrate}
	prefix, _, _ := strings.Cut(t.Codec, ".")
	need := func() error {
		if len(t.DecoderConfig) == 0 {
			return fmt.Errorf("codec %q without a decoder configuration is not supported", t.Codec)
		}
		return nil
	}
	switch prefix {
	case "avc1", "avc3":
		e.fourcc, e.config, e.body = prefix, "avcC", t.DecoderConfig
		return e, need()
	case "hvc1", "hev1":
		e.fourcc, e.config, e.body = prefix, "hvcC", t.DecoderConfig
		return e, need()
	case "av01":
		e.fourcc, e.config, e.body = "av01", "av1C", t.DecoderConfig
		return e, need()
	case "vp09":
		c, err := sdk.ParseVP9Codec(t.Codec)
		if err != nil {
			return e, err
		}
		e.fourcc, e.config, e.body = "vp09", "vpcC", c.VPCC()
		return e, nil
	case "opus":
		e.fourcc, e.config, e.body = "Opus", "dOps", dOps(t)
		e.rate = 48000
		return e, nil
	case "mp4a":
		if err := need(); err != nil {
			return e, err
		}
		e.fourcc, e.config, e.body = "mp4a", "esds", esds(t.DecoderConfig, t.Bitrate)
		return e, nil
	}
	return e, fmt.Errorf("codec %q is not supported", t.Codec)
}

// dOps builds the Opus specific box from the track's OpusHead, or from its
// channel count (pre-skip 0, as the reference exporter does) without one.
func dOps(t sdk.Track) []byte {
	h, err := sdk.ParseOpusHead(t.DecoderConfig)
	if err != nil {
		h = sdk.OpusHead{Channels: t.Channels, InputSampleRate: 48000}
		if h.Channels <= 0 {
			h.Channels = 2
		}
	}
	var w buf
	w.u8(0)
	w.u8(uint8(h.Channels))
	w.u16(h.PreSkip)
	w.u32(h.InputSampleRate)
	w.u16(uint16(h.OutputGain))
	w.u8(h.MappingFamily)
	if h.MappingFamily != 0 {
		w.u8(h.StreamCount)
		w.u8(h.CoupledCount)
		w.raw(h.Mapping)
	}
	return w.b
}

// esds builds the ES descriptor box body (after version and flags) for an
// AudioSpecificConfig. Bit rates must not be zero: Safari rejects that.
func esds(asc []byte, bitrate int) []byte {
	avg, max := uint32(128000), uint32(256000)
	if bitrate > 0 {
		avg, max = uint32(bitrate), uint32(bitrate)
	}
	desc := func(w *buf, tag uint8, body []byte) {
		w.u8(tag)
		n := len(body)
		w.u8(0x80 | uint8(n>>21&0x7f))
		w.u8(0x80 | uint8(n>>14&0x7f))
		w.u8(0x80 | uint8(n>>7&0x7f))
		w.u8(uint8(n & 0x7f))
		w.raw(body)
	}
	var dsi, dcd, es, out buf
	desc(&dsi, 0x05, asc)
	dcd.u8(0x40)             // object type: MPEG-4 audio
	dcd.u8(0x15)             // stream type 5 (audio) << 2 | reserved 1
	dcd.raw([]byte{0, 0, 0}) // buffer size
	dcd.u32(max)
	dcd.u32(avg)
	dcd.raw(dsi.b)
	es.u16(1) // ES_ID
	es.u8(0)  // flags
	desc(&es, 0x04, dcd.b)
	desc(&es, 0x06, []byte{0x02}) // SLConfigDescriptor: predefined MP4
	desc(&out, 0x03, es.b)
	return out.b
}

// appendInit appends ftyp and moov for the tracks.
func appendInit(dst []byte, tracks []entry) []byte {
	w := buf{b: dst}
	ftyp := w.start("ftyp")
	w.raw([]byte("isom"))
	w.u32(0x200)
	for _, b := range []string{"isom", "iso6", "mp41"} {
		w.raw([]byte(b))
	}
	w.end(ftyp)

	moov := w.start("moov")
	mvhd := w.full("mvhd", 0, 0)
	w.u32(0)    // creation
	w.u32(0)    // modification
	w.u32(1000) // timescale
	w.u32(0)    // duration: fragmented
	w.u32(0x10000)
	w.u16(0x100)
	w.zeros(10)
	w.matrix()
	w.zeros(24)
	w.u32(uint32(len(tracks) + 1))
	w.end(mvhd)
	for _, t := range tracks {
		appendTrak(&w, t)
	}
	mvex := w.start("mvex")
	for _, t := range tracks {
		trex := w.full("trex", 0, 0)
		w.u32(t.id)
		w.u32(1) // sample description index
		w.u32(0)
		w.u32(0)
		w.u32(0)
		w.end(trex)
	}
	w.end(mvex)
	w.end(moov)
	return w.b
}

func appendTrak(w *buf, t entry) {
	video := t.kind == sdk.KindVideo
	trak := w.start("trak")
	tkhd := w.full("tkhd", 0, 3) // enabled | in movie
	w.u32(0)
	w.u32(0)
	w.u32(t.id)
	w.u32(0)
	w.u32(0) // duration
	w.zeros(8)
	w.u16(0) // layer
	w.u16(0) // alternate group
	if video {
		w.u16(0)
	} else {
		w.u16(0x100)
	}
	w.u16(0)
	w.matrix()
	if video {
		w.u32(uint32(t.width) << 16)
		w.u32(uint32(t.height) << 16)
	} else {
		w.u32(0)
		w.u32(0)
	}
	w.end(tkhd)

	mdia := w.start("mdia")
	mdhd := w.full("mdhd", 0, 0)
	w.u32(0)
	w.u32(0)
	w.u32(t.timescale)
	w.u32(0)
	w.u16(0x55c4) // "und"
	w.u16(0)
	w.end(mdhd)
	hdlr := w.full("hdlr", 0, 0)
	w.u32(0)
	if video {
		w.raw([]byte("vide"))
	} else {
		w.raw([]byte("soun"))
	}
	w.zeros(12)
	if video {
		w.raw([]byte("VideoHandler\x00"))
	} else {
		w.raw([]byte("SoundHandler\x00"))
	}
	w.end(hdlr)

	minf := w.start("minf")
	if video {
		vmhd := w.full("vmhd", 0, 1)
		w.zeros(8)
		w.end(vmhd)
	} else {
		smhd := w.full("smhd", 0, 0)
		w.zeros(4)
		w.end(smhd)
	}
	dinf := w.start("dinf")
	dref := w.full("dref", 0, 0)
	w.u32(1)
	url := w.full("url ", 0, 1) // self-contained
	w.end(url)
	w.end(dref)
	w.end(dinf)

	stbl := w.start("stbl")
	stsd := w.full("stsd", 0, 0)
	w.u32(1)
	se := w.start(t.fourcc)
	w.zeros(6)
	w.u16(1) // data reference index
	if video {
		w.zeros(16)
		w.u16(uint16(t.width))
		w.u16(uint16(t.height))
		w.u32(0x480000)
		w.u32(0x480000)
		w.u32(0)
		w.u16(1) // frame count
		w.zeros(32)
		w.u16(0x18)
		w.u16(0xffff)
	} else {
		w.zeros(8)
		w.u16(uint16(t.channels))
		w.u16(16)
		w.u32(0)
		rate := t.rate
		if rate > 0xffff {
			rate = 0
		}
		w.u32(uint32(rate) << 16)
	}
	if t.config != "" {
		var cb int
		if t.config == "esds" {
			cb = w.full("esds", 0, 0)
		} else {
			cb = w.start(t.config) // vpcC's version and flags are in its body
		}
		w.raw(t.body)
		w.end(cb)
	}
	w.end(se)
	w.end(stsd)
	for _, typ := range []string{"stts", "stsc", "stco"} {
		b := w.full(typ, 0, 0)
		w.u32(0)
		w.end(b)
	}
	stsz := w.full("stsz", 0, 0)
	w.u32(0)
	w.u32(0)
	w.end(stsz)
	w.end(stbl)
	w.end(minf)
	w.end(mdia)
	w.end(trak)
}

// sample is one sample of a fragment.
type sample struct {
	dts      int64 // decode time, track ticks
	cts      int64 // composition offset: PTS − DTS
	duration uint32
	key      bool
	data     []byte
}

// traf is the run of one track in a fragment.
type traf struct {
	id      uint32
	samples []sample
}

// appendFragment appends one moof (a traf per run) and its mdat.
func appendFragment(dst []byte, seq uint32, runs []traf) []byte {
	w := buf{b: dst}
	base := len(w.b)
	moof := w.start("moof")
	mfhd := w.full("mfhd", 0, 0)
	w.u32(seq)
	w.end(mfhd)
	var offsets [8]int
	offs := offsets[:0]
	for _, r := range runs {
		tr := w.start("traf")
		tfhd := w.full("tfhd", 0, 0x020000) // default-base-is-moof
		w.u32(r.id)
		w.end(tfhd)
		tfdt := w.full("tfdt", 1, 0)
		w.u64(uint64(r.samples[0].dts))
		w.end(tfdt)
		var version uint8
		flags := uint32(0x1 | 0x100 | 0x200 | 0x400)
		for _, s := range r.samples {
			if s.cts != 0 {
				flags |= 0x800
			}
			if s.cts < 0 {
				version = 1
			}
		}
		trun := w.full("trun", version, flags)
		w.u32(uint32(len(r.samples)))
		offs = append(offs, len(w.b))
		w.u32(0) // data offset, patched below
		for _, s := range r.samples {
			w.u32(s.duration)
			w.u32(uint32(len(s.data)))
			if s.key {
				w.u32(flagsSync)
			} else {
				w.u32(flagsNonSync)
			}
			if flags&0x800 != 0 {
				w.u32(uint32(int32(s.cts)))
			}
		}
		w.end(trun)
		w.end(tr)
	}
	w.end(moof)
	mdat := w.start("mdat")
	for i, r := range runs {
		binary.BigEndian.PutUint32(w.b[offs[i]:], uint32(len(w.b)-base))
		for _, s := range r.samples {
			w.raw(s.data)
		}
	}
	w.end(mdat)
	return w.b
}

package fmp4

import (
	"fmt"
	"strings"

	"github.com/moqbridge/moqbridge/internal/mp4"
	"github.com/moqbridge/moqbridge/sdk"
)

// matrix writes the unity transformation matrix of mvhd and tkhd.
func matrix(w *mp4.Writer) {
	for _, v := range []uint32{0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000} {
		w.U32(v)
	}
}

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
	var w mp4.Writer
	w.U8(0)
	w.U8(uint8(h.Channels))
	w.U16(h.PreSkip)
	w.U32(h.InputSampleRate)
	w.U16(uint16(h.OutputGain))
	w.U8(h.MappingFamily)
	if h.MappingFamily != 0 {
		w.U8(h.StreamCount)
		w.U8(h.CoupledCount)
		w.Raw(h.Mapping)
	}
	return w.B
}

// esds builds the ES descriptor box body (after version and flags) for an
// AudioSpecificConfig. Bit rates must not be zero: Safari rejects that.
func esds(asc []byte, bitrate int) []byte {
	avg, max := uint32(128000), uint32(256000)
	if bitrate > 0 {
		avg, max = uint32(bitrate), uint32(bitrate)
	}
	desc := func(w *mp4.Writer, tag uint8, body []byte) {
		w.U8(tag)
		n := len(body)
		w.U8(0x80 | uint8(n>>21&0x7f))
		w.U8(0x80 | uint8(n>>14&0x7f))
		w.U8(0x80 | uint8(n>>7&0x7f))
		w.U8(uint8(n & 0x7f))
		w.Raw(body)
	}
	var dsi, dcd, es, out mp4.Writer
	desc(&dsi, 0x05, asc)
	dcd.U8(0x40)             // object type: MPEG-4 audio
	dcd.U8(0x15)             // stream type 5 (audio) << 2 | reserved 1
	dcd.Raw([]byte{0, 0, 0}) // buffer size
	dcd.U32(max)
	dcd.U32(avg)
	dcd.Raw(dsi.B)
	es.U16(1) // ES_ID
	es.U8(0)  // flags
	desc(&es, 0x04, dcd.B)
	desc(&es, 0x06, []byte{0x02}) // SLConfigDescriptor: predefined MP4
	desc(&out, 0x03, es.B)
	return out.B
}

// appendInit appends ftyp and moov for the tracks.
func appendInit(dst []byte, tracks []entry) []byte {
	w := mp4.Writer{B: dst}
	ftyp := w.Start("ftyp")
	w.Raw([]byte("isom"))
	w.U32(0x200)
	for _, b := range []string{"isom", "iso6", "mp41"} {
		w.Raw([]byte(b))
	}
	w.End(ftyp)

	moov := w.Start("moov")
	mvhd := w.Full("mvhd", 0, 0)
	w.U32(0)    // creation
	w.U32(0)    // modification
	w.U32(1000) // timescale
	w.U32(0)    // duration: fragmented
	w.U32(0x10000)
	w.U16(0x100)
	w.Zeros(10)
	matrix(&w)
	w.Zeros(24)
	w.U32(uint32(len(tracks) + 1))
	w.End(mvhd)
	for _, t := range tracks {
		appendTrak(&w, t)
	}
	mvex := w.Start("mvex")
	for _, t := range tracks {
		trex := w.Full("trex", 0, 0)
		w.U32(t.id)
		w.U32(1) // sample description index
		w.U32(0)
		w.U32(0)
		w.U32(0)
		w.End(trex)
	}
	w.End(mvex)
	w.End(moov)
	return w.B
}

func appendTrak(w *mp4.Writer, t entry) {
	video := t.kind == sdk.KindVideo
	trak := w.Start("trak")
	tkhd := w.Full("tkhd", 0, 3) // enabled | in movie
	w.U32(0)
	w.U32(0)
	w.U32(t.id)
	w.U32(0)
	w.U32(0) // duration
	w.Zeros(8)
	w.U16(0) // layer
	w.U16(0) // alternate group
	if video {
		w.U16(0)
	} else {
		w.U16(0x100)
	}
	w.U16(0)
	matrix(w)
	if video {
		w.U32(uint32(t.width) << 16)
		w.U32(uint32(t.height) << 16)
	} else {
		w.U32(0)
		w.U32(0)
	}
	w.End(tkhd)

	mdia := w.Start("mdia")
	mdhd := w.Full("mdhd", 0, 0)
	w.U32(0)
	w.U32(0)
	w.U32(t.timescale)
	w.U32(0)
	w.U16(0x55c4) // "und"
	w.U16(0)
	w.End(mdhd)
	hdlr := w.Full("hdlr", 0, 0)
	w.U32(0)
	if video {
		w.Raw([]byte("vide"))
	} else {
		w.Raw([]byte("soun"))
	}
	w.Zeros(12)
	if video {
		w.Raw([]byte("VideoHandler\x00"))
	} else {
		w.Raw([]byte("SoundHandler\x00"))
	}
	w.End(hdlr)

	minf := w.Start("minf")
	if video {
		vmhd := w.Full("vmhd", 0, 1)
		w.Zeros(8)
		w.End(vmhd)
	} else {
		smhd := w.Full("smhd", 0, 0)
		w.Zeros(4)
		w.End(smhd)
	}
	dinf := w.Start("dinf")
	dref := w.Full("dref", 0, 0)
	w.U32(1)
	url := w.Full("url ", 0, 1) // self-contained
	w.End(url)
	w.End(dref)
	w.End(dinf)

	stbl := w.Start("stbl")
	stsd := w.Full("stsd", 0, 0)
	w.U32(1)
	se := w.Start(t.fourcc)
	w.Zeros(6)
	w.U16(1) // data reference index
	if video {
		w.Zeros(16)
		w.U16(uint16(t.width))
		w.U16(uint16(t.height))
		w.U32(0x480000)
		w.U32(0x480000)
		w.U32(0)
		w.U16(1) // frame count
		w.Zeros(32)
		w.U16(0x18)
		w.U16(0xffff)
	} else {
		w.Zeros(8)
		w.U16(uint16(t.channels))
		w.U16(16)
		w.U32(0)
		rate := t.rate
		if rate > 0xffff {
			rate = 0
		}
		w.U32(uint32(rate) << 16)
	}
	if t.config != "" {
		var cb int
		if t.config == "esds" {
			cb = w.Full("esds", 0, 0)
		} else {
			cb = w.Start(t.config) // vpcC's version and flags are in its body
		}
		w.Raw(t.body)
		w.End(cb)
	}
	w.End(se)
	w.End(stsd)
	for _, typ := range []string{"stts", "stsc", "stco"} {
		b := w.Full(typ, 0, 0)
		w.U32(0)
		w.End(b)
	}
	stsz := w.Full("stsz", 0, 0)
	w.U32(0)
	w.U32(0)
	w.End(stsz)
	w.End(stbl)
	w.End(minf)
	w.End(mdia)
	w.End(trak)
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
	f := mp4.StartFragment(dst, seq)
	for _, r := range runs {
		cts, negative := false, false
		for _, s := range r.samples {
			cts = cts || s.cts != 0
			negative = negative || s.cts < 0
		}
		f.Traf(r.id, uint64(r.samples[0].dts), len(r.samples), cts, negative)
		for _, s := range r.samples {
			flags := uint32(mp4.SampleFlagsNonSync)
			if s.key {
				flags = mp4.SampleFlagsSync
			}
			f.Sample(s.duration, uint32(len(s.data)), flags, s.cts)
		}
	}
	f.Mdat()
	for _, r := range runs {
		f.NextData()
		for _, s := range r.samples {
			f.Data(s.data)
		}
	}
	return f.End()
}

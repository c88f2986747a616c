package rtmpbench

import (
	"encoding/binary"
	"time"
)

// The parameter sets of a 320x240 High-profile x264 stream.
var (
	syntheticSPS = []byte{0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
		0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60}
	syntheticPPS = []byte{0x68, 0xef, 0x8f, 0xcb}
)

// syntheticMedia is video only, frames H.264 NAL units whose bytes no
// decoder would accept but every relay passes on: an IDR slice NAL unit
// of keySize bytes every gop frames, non-IDR ones of frameSize between,
// each filled from its index so that every frame differs. No encoder is
// needed.
func syntheticMedia(length time.Duration, fps, gop, keySize, frameSize int) *media {
	m := &media{sps: syntheticSPS, pps: syntheticPPS, frameDur: time.Second / time.Duration(fps)}
	n := int(length / m.frameDur)
	for i := range n {
		size, hdr := frameSize, byte(0x41) // non-IDR slice
		if i%gop == 0 {
			size, hdr = keySize, 0x65 // IDR slice
		}
		nal := make([]byte, size)
		nal[0] = hdr
		for j := 1; j+4 <= size; j += 4 {
			binary.BigEndian.PutUint32(nal[j:], uint32(i)<<12|uint32(j))
		}
		// Millisecond timestamps, as RTMP carries them.
		ts := (time.Duration(i) * m.frameDur).Truncate(time.Millisecond)
		m.samples = append(m.samples, sample{video: true, dts: ts, pts: ts, nalus: [][]byte{nal}})
	}
	m.duration = time.Duration(n) * m.frameDur
	return m
}

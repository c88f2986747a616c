package rtmpbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// sample is one access unit of a stream held in memory: an H.264 access
// unit (NAL units) or an AAC frame.
type sample struct {
	video    bool
	dts, pts time.Duration // from the stream's first decode time
	nalus    [][]byte      // video
	aac      []byte        // audio
}

// media is an H.264 (+ AAC) stream read into memory from an FLV file,
// its samples in decode order across both tracks, timestamps from 0.
type media struct {
	sps, pps []byte
	asc      *mpeg4audio.AudioSpecificConfig // nil: no audio
	samples  []sample
	duration time.Duration // one loop: from 0 to the end of the last frame
	frameDur time.Duration // of the video
}

// videoFrames counts the video samples.
func (m *media) videoFrames() int {
	n := 0
	for _, s := range m.samples {
		if s.video {
			n++
		}
	}
	return n
}

// readFLV reads an FLV file with H.264 video and, optionally, AAC audio
// (what ffmpeg's flv muxer writes) into memory.
func readFLV(path string, fps int) (*media, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 13 || string(b[:3]) != "FLV" {
		return nil, fmt.Errorf("%s: not an FLV file", path)
	}
	m := &media{frameDur: time.Second / time.Duration(fps)}
	first := true
	var base time.Duration
	for off := int(binary.BigEndian.Uint32(b[5:9])) + 4; off < len(b); {
		if off+11 > len(b) {
			return nil, fmt.Errorf("%s: truncated tag at %d", path, off)
		}
		typ := b[off]
		size := int(b[off+1])<<16 | int(b[off+2])<<8 | int(b[off+3])
		ts := time.Duration(int32(uint32(b[off+7])<<24|uint32(b[off+4])<<16|uint32(b[off+5])<<8|uint32(b[off+6]))) * time.Millisecond
		body := b[off+11 : min(off+11+size, len(b))]
		if len(body) != size {
			return nil, fmt.Errorf("%s: truncated tag at %d", path, off)
		}
		off += 11 + size + 4
		switch {
		case typ == 9 && len(body) >= 5: // video
			if body[0]&0x0f != 7 {
				return nil, fmt.Errorf("%s: video codec %d, want H.264 (7)", path, body[0]&0x0f)
			}
			switch body[1] {
			case 0: // AVCDecoderConfigurationRecord
				if err := m.parseAvcC(body[5:]); err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				continue
			case 1:
			default:
				continue
			}
			cts := time.Duration(int32(uint32(body[2])<<24|uint32(body[3])<<16|uint32(body[4])<<8)>>8) * time.Millisecond
			var au h264.AVCC
			if err := au.Unmarshal(body[5:]); err != nil {
				return nil, fmt.Errorf("%s: access unit at %v: %w", path, ts, err)
			}
			if first {
				first, base = false, ts
			}
			m.samples = append(m.samples, sample{video: true, dts: ts - base, pts: ts - base + cts, nalus: au})
		case typ == 8 && len(body) >= 2: // audio
			if body[0]>>4 != 10 {
				return nil, fmt.Errorf("%s: audio format %d, want AAC (10)", path, body[0]>>4)
			}
			if body[1] == 0 {
				m.asc = &mpeg4audio.AudioSpecificConfig{}
				if err := m.asc.Unmarshal(body[2:]); err != nil {
					return nil, fmt.Errorf("%s: AudioSpecificConfig: %w", path, err)
				}
				continue
			}
			if first {
				first, base = false, ts
			}
			m.samples = append(m.samples, sample{dts: ts - base, pts: ts - base, aac: body[2:]})
		}
	}
	if m.sps == nil || m.videoFrames() == 0 {
		return nil, fmt.Errorf("%s: no H.264 video", path)
	}
	slices.SortStableFunc(m.samples, func(a, b sample) int { return int(a.dts - b.dts) })
	if m.samples[0].dts < 0 { // a track that started before the first tag's
		d := m.samples[0].dts
		for i := range m.samples {
			m.samples[i].dts -= d
			m.samples[i].pts -= d
		}
	}
	// One loop lasts a whole number of video frames: the last frame's
	// decode time plus one frame.
	for _, s := range slices.Backward(m.samples) {
		if s.video {
			m.duration = s.dts + m.frameDur
			break
		}
	}
	return m, nil
}

// parseAvcC takes the first SPS and PPS of an AVCDecoderConfigurationRecord.
func (m *media) parseAvcC(b []byte) error {
	bad := errors.New("bad AVCDecoderConfigurationRecord")
	if len(b) < 7 || b[5]&0x1f == 0 {
		return bad
	}
	n := int(binary.BigEndian.Uint16(b[6:8]))
	if len(b) < 8+n+3 {
		return bad
	}
	m.sps = b[8 : 8+n]
	p := b[8+n:]
	if p[0] == 0 {
		return bad
	}
	n = int(binary.BigEndian.Uint16(p[1:3]))
	if len(p) < 3+n {
		return bad
	}
	m.pps = p[3 : 3+n]
	return nil
}

// relayedPayload is what the relay makes of an H.264 access unit: its NAL
// units 4-byte length-prefixed, without access unit delimiters and
// parameter sets (the hang frame payload of sources/rtmp).
func relayedPayload(nalus [][]byte) []byte {
	var out []byte
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		switch n[0] & 0x1f {
		case 7, 8, 9: // SPS, PPS, AUD
			continue
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(n)))
		out = append(out, n...)
	}
	return out
}

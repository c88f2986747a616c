package sdk

import "time"

// Frame is one access unit of a track: one video frame or one audio packet.
//
// Payload is in the bitstream format the track declares:
//
//   - H.264 and H.265: length-prefixed NAL units (AVCC/HVCC, with the NAL
//     length size of the avcC or hvcC) when the track has a DecoderConfig,
//     Annex-B with the parameter sets in-band before every keyframe when it
//     has none — the rule WebCodecs and the hang player apply;
//   - AV1: one temporal unit of OBUs (low-overhead format);
//   - VP8 and VP9: one frame;
//   - AAC: one raw access unit (ADTS when the track has no DecoderConfig);
//   - Opus: one Opus packet.
//
// A frame read from a BroadcastReader shares its Payload with every other
// reader of the track: it must not be modified.
type Frame struct {
	// PTS is the presentation timestamp. The legacy container carries it
	// in whole microseconds: BroadcastWriter rounds it to the nearest
	// microsecond. It must not be negative.
	PTS time.Duration

	// DTS is the decode timestamp and is meaningful only when HasDTS is
	// set. A source sets it only where it differs from PTS, i.e. for
	// codecs with frame reordering (B-frames), and writes frames in decode
	// order. The legacy container has no decode timestamps: the writer
	// does not transmit DTS, and frames read from a legacy track have
	// HasDTS false (their order is the decode order, and a sink that needs
	// decode times, such as an fMP4 writer, reconstructs them). Frames read
	// from a cmaf track have HasDTS set.
	DTS    time.Duration
	HasDTS bool

	// Keyframe marks a frame that decoding can start at (an IDR or other
	// random access point). Every audio frame is a keyframe, written or
	// read. When writing, a video keyframe starts a new group; when
	// reading a legacy video track, the first frame of every group is the
	// keyframe (and only it); a cmaf track's frames carry the sample
	// flags of their fragment.
	Keyframe bool

	// Payload is the codec bitstream of the frame; it must not be empty.
	Payload []byte

	// Discontinuity is set by TrackReader.ReadFrame on the first frame
	// after media was lost: groups were skipped (the reader fell behind or
	// the network dropped them) or the previous group ended early. That
	// frame starts a group, so it is a keyframe and a decoder can resume
	// there. The writer ignores the field.
	Discontinuity bool
}

// DecodeTime returns DTS when HasDTS is set and PTS otherwise.
func (f *Frame) DecodeTime() time.Duration {
	if f.HasDTS {
		return f.DTS
	}
	return f.PTS
}

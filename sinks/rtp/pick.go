package rtp

import (
	"log/slog"

	"github.com/moqbridge/moqbridge/sdk"
)

// pick chooses the tracks to send, video first: Config.Video and
// Config.Audio by name, or else the best of each kind that can be sent
// (sdk.ChooseTracks). Every other track is logged as not sent, with the
// reason. It fails with a permanent error when nothing can be sent or a
// named track is missing.
func (s *Sink) pick(log *slog.Logger, all []sdk.Track) ([]*outTrack, error) {
	chosen, err := sdk.ChooseTracks(log, all, sdk.TrackChoice[*outTrack]{
		Sink:        "rtp",
		Video:       s.cfg.Video,
		Audio:       s.cfg.Audio,
		Map:         func(t sdk.Track) (*outTrack, error) { return newOutTrack(t, 0) },
		Track:       func(o *outTrack) sdk.Track { return o.t },
		BetterVideo: betterVideo,
		BetterAudio: betterAudio,
		OneEach:     "the sink sends one video and one audio track",
		Supported:   supportedCodecs,
	})
	if err != nil {
		return nil, err
	}
	out := make([]*outTrack, len(chosen))
	for i, o := range chosen {
		// Again, with the payload type of its place in the SDP.
		if out[i], err = newOutTrack(o.t, uint8(firstDynamicPayloadType+i)); err != nil {
			return nil, sdk.Permanent(err)
		}
	}
	return out, nil
}

// betterVideo prefers more pixels, then H.264 (which every receiver
// decodes), then the first.
func betterVideo(a, b *outTrack) bool {
	pa, pb := a.t.Width*a.t.Height, b.t.Width*b.t.Height
	if pa != pb {
		return pa > pb
	}
	return a.codec == codecH264 && b.codec != codecH264
}

// betterAudio prefers AAC and Opus to G.711, then the first.
func betterAudio(a, b *outTrack) bool {
	return a.codec != codecG711 && b.codec == codecG711
}

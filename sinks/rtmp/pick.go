package rtmp

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
	return sdk.ChooseTracks(log, all, sdk.TrackChoice[*outTrack]{
		Sink:        "rtmp",
		Video:       s.cfg.Video,
		Audio:       s.cfg.Audio,
		Map:         newOutTrack,
		Track:       func(o *outTrack) sdk.Track { return o.t },
		BetterVideo: betterVideo,
		BetterAudio: betterAudio,
		OneEach:     "RTMP gets one video and one audio track",
		Supported:   "H.264, H.265, AV1, VP9, AAC, Opus",
	})
}

// betterVideo prefers more pixels, then legacy FLV (H.264).
func betterVideo(a, b *outTrack) bool {
	pa, pb := a.t.Width*a.t.Height, b.t.Width*b.t.Height
	if pa != pb {
		return pa > pb
	}
	return a.codec.legacy() && !b.codec.legacy()
}

// betterAudio prefers AAC (legacy FLV), then the first.
func betterAudio(a, b *outTrack) bool {
	return a.codec.legacy() && !b.codec.legacy()
}

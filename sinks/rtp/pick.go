package rtp

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/moqbridge/moqbridge/sdk"
)

// pick chooses the tracks to send, video first: Config.Video and
// Config.Audio by name, or else the best of each kind that can be sent.
// Every other track is logged as not sent, with the reason. It fails with
// a permanent error when nothing can be sent or a named track is missing.
func (s *Sink) pick(log *slog.Logger, all []sdk.Track) ([]*outTrack, error) {
	var videos, audios []*outTrack
	for _, t := range all {
		o, err := newOutTrack(t, 0)
		if err != nil {
			log.Warn("rtp: track not sent: "+err.Error(), "track", t.Name, "codec", t.Codec)
			continue
		}
		if o.video() {
			videos = append(videos, o)
		} else {
			audios = append(audios, o)
		}
	}
	video, err := choose(videos, s.cfg.Video, "video", betterVideo)
	if err != nil {
		return nil, err
	}
	audio, err := choose(audios, s.cfg.Audio, "audio", betterAudio)
	if err != nil {
		return nil, err
	}
	var out []*outTrack
	for _, o := range []*outTrack{video, audio} {
		if o != nil {
			// Again, with the payload type of its place in the SDP.
			o, err := newOutTrack(o.t, uint8(firstDynamicPayloadType+len(out)))
			if err != nil {
				return nil, sdk.Permanent(err)
			}
			out = append(out, o)
		}
	}
	for _, o := range append(videos, audios...) {
		if o != video && o != audio {
			log.Info("rtp: track not sent: the sink sends one video and one audio track", "track", o.t.Name, "codec", o.t.Codec)
		}
	}
	if len(out) == 0 {
		names := make([]string, len(all))
		for i, t := range all {
			names[i] = t.Codec
		}
		return nil, sdk.Permanent(fmt.Errorf("rtp: no track can be sent (codecs: %s; supported: %s)", strings.Join(names, ", "), supportedCodecs))
	}
	return out, nil
}

// choose returns the track named name, or the best by better when name
// is empty (nil when there is none).
func choose(ts []*outTrack, name, kind string, better func(a, b *outTrack) bool) (*outTrack, error) {
	if name != "" {
		for _, o := range ts {
			if o.t.Name == name {
				return o, nil
			}
		}
		return nil, sdk.Permanent(fmt.Errorf("rtp: no %s track %q that can be sent", kind, name))
	}
	var best *outTrack
	for _, o := range ts {
		if best == nil || better(o, best) {
			best = o
		}
	}
	return best, nil
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

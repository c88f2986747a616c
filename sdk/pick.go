package sdk

import (
	"fmt"
	"log/slog"
	"strings"
)

// TrackChoice says how a sink that sends one video and one audio track
// chooses them among the tracks of a broadcast (see ChooseTracks). T is
// the sink's own form of a track it can send.
type TrackChoice[T any] struct {
	// Sink names the sink at the start of log lines and errors ("rtmp").
	Sink string
	// Video and Audio name the tracks asked for; empty takes the best
	// track of the kind.
	Video, Audio string
	// Map turns a track into the sink's form; its error says why the
	// track cannot be sent (the track is then logged and left out).
	Map func(Track) (T, error)
	// Track returns the track a T was made from.
	Track func(T) Track
	// BetterVideo and BetterAudio report whether a is to be sent rather
	// than b; among equals the first in the order of the tracks wins.
	BetterVideo, BetterAudio func(a, b T) bool
	// OneEach says, in the log, why the tracks not chosen are not sent.
	OneEach string
	// Supported lists the codecs the sink sends, for the error when it
	// can send none of the tracks.
	Supported string
}

// ChooseTracks returns what the sink sends of the tracks all, video
// first: the tracks named by c.Video and c.Audio, or else the best of each
// kind that can be sent (there may be no track of a kind). Every other
// track is logged as not sent, with the reason. It fails with a permanent
// error when nothing can be sent or a named track is missing.
func ChooseTracks[T any](log *slog.Logger, all []Track, c TrackChoice[T]) ([]T, error) {
	var videos, audios []T
	for _, t := range all {
		o, err := c.Map(t)
		if err != nil {
			log.Warn(c.Sink+": track not sent: "+err.Error(), "track", t.Name, "codec", t.Codec)
			continue
		}
		if t.Kind == KindVideo {
			videos = append(videos, o)
		} else {
			audios = append(audios, o)
		}
	}
	video, err := chooseTrack(c, videos, c.Video, "video", c.BetterVideo)
	if err != nil {
		return nil, err
	}
	audio, err := chooseTrack(c, audios, c.Audio, "audio", c.BetterAudio)
	if err != nil {
		return nil, err
	}
	var out []T
	for i, o := range videos {
		if i == video {
			out = append(out, o)
		} else {
			c.logNotChosen(log, o)
		}
	}
	for i, o := range audios {
		if i == audio {
			out = append(out, o)
		} else {
			c.logNotChosen(log, o)
		}
	}
	if len(out) == 0 {
		codecs := make([]string, len(all))
		for i, t := range all {
			codecs[i] = t.Codec
		}
		return nil, Permanent(fmt.Errorf("%s: no track can be sent (codecs: %s; supported: %s)", c.Sink, strings.Join(codecs, ", "), c.Supported))
	}
	return out, nil
}

func (c *TrackChoice[T]) logNotChosen(log *slog.Logger, o T) {
	t := c.Track(o)
	log.Info(c.Sink+": track not sent: "+c.OneEach, "track", t.Name, "codec", t.Codec)
}

// chooseTrack returns the index in ts of the track named name, or of the
// best by better when name is empty; -1 when ts is empty.
func chooseTrack[T any](c TrackChoice[T], ts []T, name, kind string, better func(a, b T) bool) (int, error) {
	if name != "" {
		for i, o := range ts {
			if c.Track(o).Name == name {
				return i, nil
			}
		}
		return -1, Permanent(fmt.Errorf("%s: no %s track %q that can be sent", c.Sink, kind, name))
	}
	best := -1
	for i, o := range ts {
		if best < 0 || better(o, ts[best]) {
			best = i
		}
	}
	return best, nil
}

package sdk

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// pickTrack is a sink's form of a track in the tests of ChooseTracks.
type pickTrack struct{ t Track }

func testChoice(video, audio string) TrackChoice[*pickTrack] {
	return TrackChoice[*pickTrack]{
		Sink:  "test",
		Video: video,
		Audio: audio,
		Map: func(t Track) (*pickTrack, error) {
			if t.Codec == "vp8" {
				return nil, errors.New("VP8 is not sent")
			}
			return &pickTrack{t}, nil
		},
		Track: func(p *pickTrack) Track { return p.t },
		BetterVideo: func(a, b *pickTrack) bool {
			return a.t.Width*a.t.Height > b.t.Width*b.t.Height
		},
		BetterAudio: func(a, b *pickTrack) bool { return a.t.Codec == "opus" && b.t.Codec != "opus" },
		OneEach:     "one of each kind",
		Supported:   "H.264, Opus, AAC",
	}
}

// TestChooseTracks picks the best track of each kind, or the named ones,
// video first, and logs the others with why they are not sent.
func TestChooseTracks(t *testing.T) {
	all := []Track{
		{Name: "aac", Kind: KindAudio, Codec: "mp4a.40.2"},
		{Name: "small", Kind: KindVideo, Codec: "avc1.42c00d", Width: 320, Height: 240},
		{Name: "big", Kind: KindVideo, Codec: "avc1.640028", Width: 1920, Height: 1080},
		{Name: "also-big", Kind: KindVideo, Codec: "avc1.640028", Width: 1920, Height: 1080},
		{Name: "vp8", Kind: KindVideo, Codec: "vp8", Width: 3840, Height: 2160},
		{Name: "opus", Kind: KindAudio, Codec: "opus"},
	}
	for _, tc := range []struct {
		video, audio string
		want         string
	}{
		{"", "", "big opus"}, // the first among equals
		{"small", "", "small opus"},
		{"", "aac", "big aac"},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		got, err := ChooseTracks(log, all, testChoice(tc.video, tc.audio))
		if err != nil {
			t.Fatalf("%q %q: %v", tc.video, tc.audio, err)
		}
		var names []string
		for _, p := range got {
			names = append(names, p.t.Name)
		}
		if strings.Join(names, " ") != tc.want {
			t.Errorf("%q %q: chose %v, want %s", tc.video, tc.audio, names, tc.want)
		}
		if !strings.Contains(logs.String(), `level=WARN msg="test: track not sent: VP8 is not sent" track=vp8`) {
			t.Errorf("no warning for the VP8 track in\n%s", logs.String())
		}
		if n := strings.Count(logs.String(), `msg="test: track not sent: one of each kind"`); n != 3 {
			t.Errorf("%d tracks logged as not chosen, want 3, in\n%s", n, logs.String())
		}
	}
}

// TestChooseTracksErrors: a named track that is missing or cannot be sent,
// and a broadcast with nothing to send, are permanent errors.
func TestChooseTracksErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	all := []Track{
		{Name: "v", Kind: KindVideo, Codec: "vp8"},
		{Name: "a", Kind: KindAudio, Codec: "opus"},
	}
	_, err := ChooseTracks(log, all, testChoice("v", ""))
	if !IsPermanent(err) || err.Error() != `test: no video track "v" that can be sent` {
		t.Errorf("named VP8 track: %v", err)
	}
	if got, err := ChooseTracks(log, all, testChoice("", "")); err != nil || len(got) != 1 || got[0].t.Name != "a" {
		t.Errorf("audio only: %v, %v", got, err)
	}
	_, err = ChooseTracks(log, all[:1], testChoice("", ""))
	if !IsPermanent(err) || err.Error() != "test: no track can be sent (codecs: vp8; supported: H.264, Opus, AAC)" {
		t.Errorf("nothing to send: %v", err)
	}
	if _, err := ChooseTracks(log, nil, testChoice("", "")); !IsPermanent(err) {
		t.Errorf("no track: %v", err)
	}
}

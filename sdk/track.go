package sdk

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Kind is the media type of a track.
type Kind uint8

// Track kinds.
const (
	KindVideo Kind = iota + 1
	KindAudio
)

// String returns "video", "audio" or "unknown".
func (k Kind) String() string {
	switch k {
	case KindVideo:
		return "video"
	case KindAudio:
		return "audio"
	default:
		return "unknown"
	}
}

// ContainerKind is how a track's frames are packaged in MOQ frames (the
// catalog's container.kind).
type ContainerKind string

// Container kinds. The zero value means ContainerLegacy.
const (
	// ContainerLegacy: each MOQ frame is a varint presentation timestamp
	// in microseconds followed by the codec payload. BroadcastWriter
	// writes this container only.
	ContainerLegacy ContainerKind = "legacy"
	// ContainerCMAF: each MOQ frame is a moof+mdat fragment, described by
	// the init segment in Track.Init. BroadcastReader reads it.
	ContainerCMAF ContainerKind = "cmaf"
	// ContainerLOC is the draft-ietf-moq-loc container. It is listed in
	// catalogs but not supported by BroadcastReader.
	ContainerLOC ContainerKind = "loc"
)

// Default delivery priorities, those of the reference publishers (higher is
// sent first).
const (
	PriorityCatalog uint8 = 100
	PriorityAudio   uint8 = 80
	PriorityVideo   uint8 = 60
)

// CatalogTrackName is the name of the track that carries the hang catalog.
const CatalogTrackName = "catalog.json"

// Track describes one media track (a rendition, in hang terms).
//
// The codec constructors (H264FromParameterSets, AACFromConfig, …) fill
// Kind, Codec, DecoderConfig and whatever properties the configuration
// carries; the caller adds the rest (Name, Framerate, Bitrate, …).
type Track struct {
	// Name is the MOQ track name; it is also the rendition's key in the
	// catalog. BroadcastWriter.AddTrack assigns "video<n>" or "audio<n>"
	// when it is empty.
	Name string

	Kind Kind

	// Codec is the WebCodecs codec string: avc1.64001f, hvc1.1.6.L93.B0,
	// av01.0.08M.08, vp09.00.10.08, opus, mp4a.40.2, …
	Codec string

	// DecoderConfig is the codec's decoder configuration record, published
	// hex-encoded as the catalog's description and used verbatim as the
	// body of the fMP4 sample entry's configuration box: the
	// AVCDecoderConfigurationRecord (avcC) for H.264, the
	// HEVCDecoderConfigurationRecord (hvcC) for H.265, the
	// AV1CodecConfigurationRecord (av1C) for AV1, the AudioSpecificConfig
	// for AAC and the OpusHead (RFC 7845) for Opus. VP8 and VP9 have none
	// (see VP9Config). For H.264, H.265 and AAC its presence also selects
	// the payload format (see Frame).
	DecoderConfig []byte

	// Video properties. Width and Height are the coded (cropped) size in
	// pixels; Framerate is in frames per second.
	Width     int
	Height    int
	Framerate float64

	// Audio properties. SampleRate is the decoder output rate in Hz (48000
	// for Opus), Channels the number of output channels.
	SampleRate int
	Channels   int

	// Bitrate in bits per second, 0 when unknown.
	Bitrate int

	// Jitter is the catalog's jitter hint: the most a frame may be delayed
	// between being ready and being sent. It is published in whole
	// milliseconds, rounded up; 0 omits it (the player then derives it from
	// the framerate or the codec).
	Jitter time.Duration

	// Priority is the MOQ delivery priority of the track; 0 means the
	// default for its kind (PriorityVideo, PriorityAudio). The catalog has
	// one priority per kind: that of the first track of the kind, by name.
	Priority uint8

	// Container is how the track's frames are packaged; empty means
	// ContainerLegacy. Init is the cmaf init segment (ftyp+moov) of a
	// ContainerCMAF track.
	Container ContainerKind
	Init      []byte

	// Timescale is the track's native media timescale when known: that of
	// the init segment's mdhd for a cmaf track, 0 for legacy tracks (whose
	// clock is microseconds). Frame times are exact to the nanosecond, so
	// round(t × Timescale / 1e9) recovers the original ticks.
	Timescale uint32
}

// priority returns the effective delivery priority.
func (t *Track) priority() uint8 {
	switch {
	case t.Priority != 0:
		return t.Priority
	case t.Kind == KindAudio:
		return PriorityAudio
	default:
		return PriorityVideo
	}
}

// container returns the effective container kind.
func (t *Track) container() ContainerKind {
	if t.Container == "" {
		return ContainerLegacy
	}
	return t.Container
}

// maxU53 is the largest integer the JavaScript catalog reader accepts.
const maxU53 = 1<<53 - 1

// errInvalidTrack is wrapped by every track validation error.
var errInvalidTrack = errors.New("invalid track")

// validate checks what a BroadcastWriter needs and the catalog schema
// requires. The name is checked by the writer.
func (t *Track) validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", errInvalidTrack, t.Name, fmt.Sprintf(format, args...))
	}
	if t.Kind != KindVideo && t.Kind != KindAudio {
		return fail("kind %d is neither video nor audio", t.Kind)
	}
	if t.Codec == "" {
		return fail("no codec string")
	}
	if t.Width < 0 || t.Height < 0 || t.Width > maxU53 || t.Height > maxU53 {
		return fail("size %dx%d out of range", t.Width, t.Height)
	}
	if math.IsNaN(t.Framerate) || math.IsInf(t.Framerate, 0) || t.Framerate < 0 {
		return fail("framerate %v out of range", t.Framerate)
	}
	if t.Bitrate < 0 || t.Bitrate > maxU53 {
		return fail("bitrate %d out of range", t.Bitrate)
	}
	if t.Jitter < 0 {
		return fail("negative jitter")
	}
	if t.Kind == KindAudio {
		if t.SampleRate <= 0 || t.SampleRate > maxU53 {
			return fail("audio needs a sample rate, got %d", t.SampleRate)
		}
		if t.Channels <= 0 || t.Channels > maxU53 {
			return fail("audio needs a channel count, got %d", t.Channels)
		}
	}
	if c := t.container(); c != ContainerLegacy {
		return fail("container %q cannot be written (only %q)", c, ContainerLegacy)
	}
	return nil
}

package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/moqbridge/moqbridge/internal/mp4"
)

// The cmaf container (hang-format §1.3, §3.2): each MOQ frame is a moof+mdat
// fragment of one track, described by the single-track init segment
// (ftyp+moov) published base64 in the catalog. Only what a reader needs is
// parsed here: the track's timescale, the trex defaults and the sample
// entry from the init, and the samples from moof/traf/tfhd/tfdt/trun.

// errCMAF is wrapped by every cmaf parsing error.
var errCMAF = errors.New("invalid cmaf data")

func cmafError(format string, args ...any) error {
	return fmt.Errorf("cmaf: %w: %s", errCMAF, fmt.Sprintf(format, args...))
}

// maxCMAFSamples bounds the samples of one fragment, so a forged sample
// count cannot make the reader allocate without bound.
const maxCMAFSamples = 1 << 16

// cmafErr gives an error of internal/mp4 the form of this file's.
func cmafErr(err error) error {
	if e, ok := err.(*mp4.Error); ok {
		return fmt.Errorf("cmaf: %w: %w", errCMAF, e)
	}
	return err
}

// cmafInit is what the reader takes from an init segment.
type cmafInit struct {
	trackID   uint32
	timescale uint32
	audio     bool // handler soun: every sample is a keyframe

	// trex defaults for the track
	defaults mp4.SampleDefaults

	// sample entry
	entry      string
	config     []byte // avcC/hvcC/av1C body, AudioSpecificConfig or OpusHead
	width      int
	height     int
	channels   int
	sampleRate int
}

// parseCMAFInit reads the first track of an init segment.
func parseCMAFInit(b []byte) (*cmafInit, error) {
	in, err := parseInit(b)
	return in, cmafErr(err)
}

func parseInit(b []byte) (*cmafInit, error) {
	in := &cmafInit{}
	var trexes []mp4.Box
	haveTrak := false
	err := mp4.Walk(b, 0, func(bx mp4.Box) error {
		if bx.Type != "moov" {
			return nil
		}
		return mp4.Walk(bx.Body, bx.BodyOffset(), func(bx mp4.Box) error {
			switch bx.Type {
			case "trak":
				if haveTrak {
					return nil
				}
				haveTrak = true
				return in.parseTrak(bx)
			case "mvex":
				return mp4.Walk(bx.Body, bx.BodyOffset(), func(bx mp4.Box) error {
					if bx.Type == "trex" {
						trexes = append(trexes, bx)
					}
					return nil
				})
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if !haveTrak {
		return nil, cmafError("init has no track")
	}
	if in.timescale == 0 {
		return nil, cmafError("init has no media timescale")
	}
	for _, t := range trexes {
		id, d, err := mp4.ParseTrex(t.Body, t.Offset)
		if err != nil {
			return nil, err
		}
		if id == in.trackID || len(trexes) == 1 {
			in.defaults = d
		}
	}
	return in, nil
}

func (in *cmafInit) parseTrak(trak mp4.Box) error {
	return mp4.Walk(trak.Body, trak.BodyOffset(), func(bx mp4.Box) error {
		var err error
		switch bx.Type {
		case "tkhd":
			in.trackID, err = mp4.ParseTkhd(bx.Body, bx.Offset)
		case "mdia":
			return mp4.Walk(bx.Body, bx.BodyOffset(), func(bx mp4.Box) error {
				var err error
				switch bx.Type {
				case "mdhd":
					in.timescale, err = mp4.ParseMdhd(bx.Body, bx.Offset)
				case "hdlr":
					var h string
					h, err = mp4.ParseHdlr(bx.Body, bx.Offset)
					in.audio = h == "soun"
				case "minf":
					return mp4.Walk(bx.Body, bx.BodyOffset(), func(bx mp4.Box) error {
						if bx.Type != "stbl" {
							return nil
						}
						return mp4.Walk(bx.Body, bx.BodyOffset(), func(bx mp4.Box) error {
							if bx.Type != "stsd" {
								return nil
							}
							return in.parseStsd(bx)
						})
					})
				}
				return err
			})
		}
		return err
	})
}

// parseStsd reads the first sample entry.
func (in *cmafInit) parseStsd(stsd mp4.Box) error {
	bx, ok, err := mp4.FirstSampleEntry(stsd.Body, stsd.Offset)
	if err != nil || !ok {
		return err
	}
	in.entry = bx.Type
	var se mp4.SampleEntry
	if in.audio {
		if se, err = mp4.ParseAudioSampleEntry(bx); err != nil {
			return err
		}
		in.channels, in.sampleRate = se.Channels, se.SampleRate
	} else {
		if se, err = mp4.ParseVisualSampleEntry(bx); err != nil {
			return nil // not a visual sample entry; nothing to learn
		}
		in.width, in.height = se.Width, se.Height
	}
	// Configuration boxes are optional for the reader: ignore a
	// malformed tail rather than reject the track.
	_ = mp4.Walk(se.Children, se.ChildrenOffset, func(bx mp4.Box) error {
		switch bx.Type {
		case "avcC", "hvcC", "av1C":
			in.config = bx.Body
		case "esds":
			if e, err := mp4.ParseESDS(bx.Body, bx.Offset); err == nil {
				in.config = e.DecoderSpecificInfo
			}
		case "dOps":
			if h, err := ParseDOps(bx.Body); err == nil {
				in.config = h.Marshal()
			}
		}
		return nil
	})
	return nil
}

// ParseDOps reads the body of the Opus specific box of an MP4 Opus sample
// entry (dOps: big-endian, version 0; Encapsulation of Opus in ISO Base
// Media File Format §4.3.2) as an OpusHead.
func ParseDOps(b []byte) (OpusHead, error) {
	if len(b) < 11 {
		return OpusHead{}, configError("opus", "dOps truncated")
	}
	if b[0] != 0 {
		return OpusHead{}, configError("opus", "dOps version %d", b[0])
	}
	h := OpusHead{
		Channels:        int(b[1]),
		PreSkip:         binary.BigEndian.Uint16(b[2:]),
		InputSampleRate: binary.BigEndian.Uint32(b[4:]),
		OutputGain:      int16(binary.BigEndian.Uint16(b[8:])),
		MappingFamily:   b[10],
	}
	if h.MappingFamily != 0 {
		if len(b) < 13+h.Channels {
			return OpusHead{}, configError("opus", "dOps truncated")
		}
		h.StreamCount, h.CoupledCount = b[11], b[12]
		h.Mapping = b[13 : 13+h.Channels]
	}
	return h, nil
}

// cmafSample is one sample of a fragment.
type cmafSample struct {
	dts   uint64 // in the track timescale
	cts   int64  // composition offset: pts = dts + cts
	flags uint32
	data  []byte // aliasing the fragment
}

// keyframe reports whether decoding can start at the sample: audio
// samples always; otherwise a sync sample that does not depend on others
// (sample_depends_on is 2, or 0 as the reference player accepts).
func (in *cmafInit) keyframe(flags uint32) bool {
	if in.audio {
		return true
	}
	return mp4.IsSync(flags)
}

// ticks converts a time in the track timescale to a duration, exact to the
// nanosecond (rounded towards negative infinity).
func (in *cmafInit) ticks(t int64) (time.Duration, error) {
	ts := int64(in.timescale)
	sec, rem := t/ts, t%ts
	if rem < 0 {
		sec--
		rem += ts
	}
	if sec > math.MaxInt64/int64(time.Second)-1 || sec < math.MinInt64/int64(time.Second)+1 {
		return 0, cmafError("timestamp %d/%d out of range", t, ts)
	}
	return time.Duration(sec)*time.Second + time.Duration(rem*int64(time.Second)/ts), nil
}

// parseFragment appends the samples of the init's track found in the
// moof+mdat pairs of b to dst. Boxes other than moof (mdat, styp, prft,
// free, …) are skipped; sample data is located through the trun data
// offsets and must lie inside b.
func (in *cmafInit) parseFragment(b []byte, dst []cmafSample) ([]cmafSample, error) {
	dst = dst[:0]
	sawMoof := false
	err := mp4.Moofs(b, 0, func(moof mp4.Box) error {
		sawMoof = true
		trafs := 0
		if err := mp4.Walk(moof.Body, moof.BodyOffset(), func(c mp4.Box) error {
			if c.Type == "traf" {
				trafs++
			}
			return nil
		}); err != nil {
			return err
		}
		match := false
		return mp4.Walk(moof.Body, moof.BodyOffset(), func(c mp4.Box) error {
			if c.Type != "traf" || match {
				return nil
			}
			var err error
			dst, match, err = in.parseTraf(b, moof.Offset, c, trafs == 1, dst)
			return err
		})
	})
	if err != nil {
		return dst[:0], cmafErr(err)
	}
	if !sawMoof {
		return dst[:0], cmafError("no moof")
	}
	return dst, nil
}

// parseTraf appends the samples of one traf if it belongs to the init's
// track (or is the only one); match reports whether it did.
func (in *cmafInit) parseTraf(frag []byte, moofOff int64, traf mp4.Box, only bool, dst []cmafSample) (_ []cmafSample, match bool, err error) {
	tf, err := mp4.ParseTraf(traf.Body, traf.BodyOffset())
	if err != nil {
		return dst, false, err
	}
	if !tf.HasTfhd {
		return dst, false, cmafError("traf without tfhd")
	}
	if tf.Tfhd.TrackID != in.trackID && !only {
		return dst, false, nil
	}
	if !tf.HasDecodeTime {
		return dst, true, cmafError("traf without tfdt")
	}
	base, ok := tf.DataStart(moofOff)
	if !ok {
		return dst, true, cmafError("base data offset %d outside the fragment", tf.Tfhd.BaseDataOffset)
	}
	def := tf.Tfhd.Apply(in.defaults)
	dts := tf.DecodeTime
	pos := base
	err = tf.Runs(maxCMAFSamples, func(r mp4.Trun, _ int64) error {
		if r.Flags&mp4.TrunDataOffset != 0 {
			pos = base + int64(r.DataOffset)
		}
		if len(dst)+int(r.Count) > maxCMAFSamples {
			return cmafError("trun sample count %d", r.Count)
		}
		for i := range int(r.Count) {
			s := r.Sample(i, def)
			if pos < 0 || pos > int64(len(frag)) || int64(s.Size) > int64(len(frag))-pos {
				return cmafError("sample %d data outside the fragment", len(dst))
			}
			if dts > math.MaxInt64/2 {
				return cmafError("decode time %d out of range", dts)
			}
			end := pos + int64(s.Size)
			dst = append(dst, cmafSample{
				dts:   dts,
				cts:   s.CompositionOffset,
				flags: s.Flags,
				data:  frag[pos:end:end],
			})
			pos = end
			dts += uint64(s.Duration)
		}
		return nil
	})
	return dst, true, err
}

package fmp4

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/moqbridge/moqbridge/sdk"
)

// annexB records an H.264 or H.265 track that has no decoder
// configuration: its frames are Annex B with the parameter sets in-band
// (what the browser publisher sends). The avcC or hvcC of the sample entry
// is built from the parameter sets of the first keyframe that has them
// (sdk.ParamSets), and every frame is converted to 4-byte length-prefixed
// NAL units, without access unit delimiters. With an avc1 or hvc1 codec
// string the parameter sets the sample entry holds are left out of the
// samples too (others stay in-band); with avc3 or hev1 they stay.
//
// Until the parameter sets come, the track's frames are dropped and the
// track is left out of the init segment, so a file started meanwhile (by
// audio that cannot wait longer) is valid without it. When a keyframe
// brings parameter sets that differ from the sample entry's (the encoder
// was reconfigured: a new size, profile or level), what is pending is
// written, the file is closed and the recording goes on in a new file whose
// sample entry has the new configuration: MP4 allows one sample entry per
// fragmented track here, and the new file starts at that keyframe.
type annexB struct {
	ps     *sdk.ParamSets
	inBand bool // avc3/hev1: parameter sets stay in the samples
	left   bool // left out of the init segment while unconfigured
	bad    uint64
	waited bool // logged that the track waits for its parameter sets
}

// newAnnexB returns the Annex B state for an H.264 or H.265 video track
// without a decoder configuration, nil for any other track.
func newAnnexB(t sdk.Track) *annexB {
	if len(t.DecoderConfig) > 0 || t.Kind != sdk.KindVideo {
		return nil
	}
	ps, err := sdk.NewParamSets(t.Codec)
	if err != nil {
		return nil
	}
	prefix, _, _ := strings.Cut(t.Codec, ".")
	return &annexB{ps: ps, inBand: prefix == "avc3" || prefix == "hev1"}
}

// entry is the track's sample entry without its configuration box body,
// which the first parameter sets provide.
func (a *annexB) entry(t sdk.Track) entry {
	prefix, _, _ := strings.Cut(t.Codec, ".")
	e := entry{kind: t.Kind, width: t.Width, height: t.Height, bitrate: t.Bitrate, fourcc: prefix, config: "avcC"}
	if a.ps.IsH265() {
		e.config = "hvcC"
	}
	return e
}

// convert returns the frame's payload as length-prefixed NAL units and
// whether it brought a new decoder configuration, or nil when the frame
// cannot be recorded (not Annex B, no parameter sets yet, nothing left).
func (a *annexB) convert(r *recorder, k *track, f *sdk.Frame) (data []byte, changed bool) {
	nalus, err := sdk.SplitAnnexB(f.Payload)
	if err != nil {
		a.bad++
		if a.bad == 1 || a.bad%100 == 0 {
			r.log.Warn("fmp4: frame is not Annex B, dropped", "path", r.cfg.Path, "track", k.t.Name, "frames", a.bad, "err", err)
		}
		return nil, false
	}
	if f.Keyframe {
		if changed, err = a.ps.Update(nalus); err != nil {
			r.log.Warn("fmp4: bad parameter sets in a keyframe", "path", r.cfg.Path, "track", k.t.Name, "err", err)
		}
	}
	if a.ps.DecoderConfig() == nil {
		if !a.waited {
			a.waited = true
			r.log.Warn("fmp4: no parameter sets yet (the track has no decoder configuration): frames dropped until a keyframe brings them",
				"path", r.cfg.Path, "track", k.t.Name)
		}
		return nil, false
	}
	keep := nalus[:0:0]
	for _, n := range nalus {
		if a.ps.IsAUD(n) || (!a.inBand && a.ps.InConfig(n)) {
			continue
		}
		keep = append(keep, n)
	}
	if len(keep) == 0 {
		return nil, false
	}
	return sdk.JoinAVCC(keep), changed
}

// newConfig makes the parameter sets track k just got its sample entry's
// configuration. A file open or samples of k pending (an earlier
// configuration) are written and closed first, so the keyframe at next
// starts a new file.
func (r *recorder) newConfig(k *track, next int64) error {
	first := k.e.body == nil
	if r.seg != nil || len(k.pending) > 0 {
		if err := r.flush(next, k); err != nil {
			return err
		}
		if err := r.closeSegment(); err != nil {
			return err
		}
	}
	r.last = nil // nor continue a file of an earlier Run
	k.e.body = k.nal.ps.DecoderConfig()
	if t, err := k.nal.ps.Track(); err == nil {
		k.e.width, k.e.height = t.Width, t.Height
	}
	if first {
		r.log.Info("fmp4: decoder configuration taken from the in-band parameter sets",
			"path", r.cfg.Path, "track", k.t.Name, "width", k.e.width, "height", k.e.height)
	} else {
		r.log.Info("fmp4: the parameter sets changed, the recording goes on in a new file",
			"path", r.cfg.Path, "track", k.t.Name, "width", k.e.width, "height", k.e.height)
	}
	r.init = r.readyInit()
	return nil
}

// leaveOutUnconfigured rebuilds the init segment without the Annex B
// tracks that have no configuration yet, once for each.
func (r *recorder) leaveOutUnconfigured() {
	stale := false
	for _, k := range r.tracks {
		if k.nal != nil && !k.nal.left && k.e.body == nil {
			k.nal.left = true
			stale = true
		}
	}
	if stale {
		r.init = r.readyInit()
	}
}

// readyInit returns the init segment of the tracks whose sample entry is
// complete.
func (r *recorder) readyInit() []byte {
	es := make([]entry, 0, len(r.tracks))
	for _, k := range r.tracks {
		if k.nal != nil && k.e.body == nil {
			continue
		}
		es = append(es, k.e)
	}
	b := appendInit(nil, es)
	if len(es) < len(r.tracks) {
		// mvhd's next_track_ID must exceed the IDs of the tracks left
		// out too (appendInit counts the entries it gets).
		if i := bytes.Index(b, []byte("mvhd")); i >= 4 && i-4+108 <= len(b) && b[i+4] == 0 {
			binary.BigEndian.PutUint32(b[i-4+104:], uint32(len(r.tracks)+1))
		}
	}
	return b
}

package rtmp

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/moqbridge/moqbridge/sdk"
)

// publish is the media side of one publishing client: its tracks in the
// broadcast and the connection's clock. gortmplib calls its callbacks on
// the connection's goroutine, one at a time.
type publish struct {
	st  *stream
	log *slog.Logger
	err error // the first write error; it ends the connection
}

func (p *publish) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// codecName names a gortmplib codec for logs.
func codecName(c codecs.Codec) string {
	switch c.(type) {
	case *codecs.H264:
		return "H.264"
	case *codecs.H265:
		return "H.265"
	case *codecs.AV1:
		return "AV1"
	case *codecs.VP9:
		return "VP9"
	case *codecs.MPEG4Audio:
		return "AAC"
	case *codecs.Opus:
		return "Opus"
	case *codecs.MPEG1Audio:
		return "MP3"
	case *codecs.AC3:
		return "AC-3"
	case *codecs.FLAC:
		return "FLAC"
	case *codecs.G711:
		return "G.711"
	case *codecs.LPCM:
		return "LPCM"
	}
	return fmt.Sprintf("%T", c)
}

func codecNames(ts []*gortmplib.Track) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = codecName(t.Codec)
	}
	return strings.Join(names, ", ")
}

// setup maps the client's tracks onto the broadcast and registers a
// callback for each with r. It fails, adding nothing, when a track's codec
// is not supported or its configuration does not parse. AV1 and VP9
// tracks are added at their first keyframe (gortmplib does not hand over
// their configuration). A track describing the same media as one of the
// stream's earlier tracks (a publisher that returned) continues it; the
// earlier tracks nothing continues leave the catalog.
func (p *publish) setup(r *gortmplib.Reader) error {
	tracks := r.Tracks()
	type pending struct {
		t   sdk.Track
		tc  *trackClock
		reg func(*sdk.TrackWriter)
	}
	var now []pending
	var later []func()
	var laterFamilies []string // codec families of the tracks added later
	for _, tr := range tracks {
		tc := &trackClock{c: &p.st.clock}
		switch c := tr.Codec.(type) {
		case *codecs.H264:
			t, err := sdk.H264FromParameterSets(c.SPS, c.PPS)
			if err != nil {
				return fmt.Errorf("H.264 parameter sets: %w", err)
			}
			tc.fps = t.Framerate
			v := &h26xTrack{p: p, tc: tc}
			v.ps, _ = sdk.NewParamSets(t.Codec)
			_, _ = v.ps.Update([][]byte{c.SPS, c.PPS})
			now = append(now, pending{t, tc, func(w *sdk.TrackWriter) {
				v.w = w
				r.OnDataH264(tr, v.write)
			}})
		case *codecs.H265:
			t, err := sdk.H265FromParameterSets(c.VPS, c.SPS, c.PPS)
			if err != nil {
				return fmt.Errorf("H.265 parameter sets: %w", err)
			}
			tc.fps = t.Framerate
			v := &h26xTrack{p: p, tc: tc, hevc: true}
			v.ps, _ = sdk.NewParamSets(t.Codec)
			_, _ = v.ps.Update([][]byte{c.VPS, c.SPS, c.PPS})
			now = append(now, pending{t, tc, func(w *sdk.TrackWriter) {
				v.w = w
				r.OnDataH265(tr, v.write)
			}})
		case *codecs.AV1:
			v := &av1Track{p: p, tc: tc}
			later = append(later, func() { r.OnDataAV1(tr, v.write) })
			laterFamilies = append(laterFamilies, "av01")
		case *codecs.VP9:
			v := &vp9Track{p: p, tc: tc}
			later = append(later, func() { r.OnDataVP9(tr, v.write) })
			laterFamilies = append(laterFamilies, "vp09")
		case *codecs.MPEG4Audio:
			if c.Config == nil {
				return fmt.Errorf("AAC without an AudioSpecificConfig")
			}
			asc, err := c.Config.Marshal()
			if err != nil {
				return fmt.Errorf("AAC AudioSpecificConfig: %w", err)
			}
			t, err := sdk.AACFromConfig(asc)
			if err != nil {
				return fmt.Errorf("AAC AudioSpecificConfig: %w", err)
			}
			// An AAC frame is 1024 samples (2048 at the output rate with
			// SBR): its grid, as a video frame rate is.
			tc.fps = float64(t.SampleRate) / 1024
			if t.Codec == "mp4a.40.5" || t.Codec == "mp4a.40.29" {
				tc.fps /= 2
			}
			a := &audioTrack{p: p, tc: tc}
			now = append(now, pending{t, tc, func(w *sdk.TrackWriter) {
				a.w = w
				r.OnDataMPEG4Audio(tr, a.write)
			}})
		case *codecs.Opus:
			channels := 2
			if c.IDHeader != nil {
				channels = int(c.IDHeader.ChannelCount)
			}
			t, err := sdk.OpusFromChannels(channels)
			if err != nil {
				return fmt.Errorf("Opus: %w", err)
			}
			a := &audioTrack{p: p, tc: tc}
			now = append(now, pending{t, tc, func(w *sdk.TrackWriter) {
				a.w = w
				r.OnDataOpus(tr, a.write)
			}})
		default:
			return fmt.Errorf("unsupported codec %s (supported: H.264, H.265, AV1, VP9, AAC, Opus)", codecName(tr.Codec))
		}
	}
	var fresh []pending
	for _, pd := range now {
		if lt := p.st.takeEarlier(pd.t); lt != nil {
			pd.tc.continueFrom(lt.tc)
			pd.reg(lt.w)
			p.st.tracks = append(p.st.tracks, &liveTrack{w: lt.w, tc: pd.tc})
			continue
		}
		fresh = append(fresh, pd)
	}
	if len(fresh) > 0 {
		ts := make([]sdk.Track, len(fresh))
		for i, pd := range fresh {
			ts[i] = pd.t
		}
		ws, err := p.st.w.AddTracks(ts...)
		if err != nil {
			return fmt.Errorf("adding the tracks: %w", err)
		}
		for i, pd := range fresh {
			pd.reg(ws[i])
			p.st.tracks = append(p.st.tracks, &liveTrack{w: ws[i], tc: pd.tc})
		}
	}
	// Earlier tracks that a track configured later may still continue
	// stay reserved for it; the others leave the catalog.
	p.st.closeReserved(func(t sdk.Track) bool {
		for _, f := range laterFamilies {
			if codecFamily(t.Codec) == f {
				return true
			}
		}
		return false
	})
	for _, reg := range later {
		reg()
	}
	return nil
}

// codecFamily returns the part of a WebCodecs codec string before its
// first dot (avc1, hvc1, av01, vp09, mp4a, opus).
func codecFamily(codec string) string {
	f, _, _ := strings.Cut(codec, ".")
	return f
}

// write writes a frame, recording the first error.
func (p *publish) write(w *sdk.TrackWriter, f sdk.Frame) {
	if p.err != nil {
		return
	}
	if err := w.WriteFrame(f); err != nil {
		p.fail(fmt.Errorf("rtmp: %w", err))
		return
	}
	p.st.played = true
}

// addLater adds a track whose configuration came with its first keyframe,
// or continues the stream's earlier track of the same media; earlier
// tracks of the same codec family that it does not continue leave the
// catalog.
func (p *publish) addLater(t sdk.Track, tc *trackClock) *sdk.TrackWriter {
	if lt := p.st.takeEarlier(t); lt != nil {
		tc.continueFrom(lt.tc)
		p.st.tracks = append(p.st.tracks, &liveTrack{w: lt.w, tc: tc})
		return lt.w
	}
	w, err := p.st.w.AddTrack(t)
	if err != nil {
		p.fail(fmt.Errorf("rtmp: adding the %s track: %w", t.Codec, err))
		return nil
	}
	p.st.tracks = append(p.st.tracks, &liveTrack{w: w, tc: tc})
	p.st.closeReserved(func(r sdk.Track) bool { return codecFamily(r.Codec) != codecFamily(t.Codec) })
	p.log.Info("rtmp: track configured at its first keyframe", "track", w.Track().Name, "codec", t.Codec)
	return w
}

// h26xTrack writes H.264 or H.265 access units as 4-byte length-prefixed
// NAL units (matching the avcC/hvcC of the track), without access unit
// delimiters and parameter sets (the decoder configuration has them).
type h26xTrack struct {
	p       *publish
	tc      *trackClock
	w       *sdk.TrackWriter
	hevc    bool
	ps      *sdk.ParamSets
	buf     []byte
	changed bool
	keyed   bool // a keyframe came on this connection
}

func (v *h26xTrack) write(pts, dts time.Duration, au [][]byte) {
	v.buf = v.buf[:0]
	params := false
	for _, n := range au {
		switch {
		case v.ps.IsAUD(n):
		case v.ps.IsParamSet(n):
			params = true
		default:
			v.buf = binary.BigEndian.AppendUint32(v.buf, uint32(len(n)))
			v.buf = append(v.buf, n...)
		}
	}
	if params && !v.changed {
		if changed, err := v.ps.Update(au); err == nil && changed {
			v.changed = true
			v.p.log.Warn("rtmp: the parameter sets changed in mid-stream; the track keeps its first decoder configuration",
				"track", v.w.Track().Name)
		}
	}
	if len(v.buf) == 0 {
		return // the sequence header, delivered as an access unit
	}
	var key bool
	if v.hevc {
		key = h265.IsRandomAccess(au)
	} else {
		key = h264.IsRandomAccess(au)
	}
	if !v.keyed && !key {
		return // a continued track's open group must not get this connection's frames before its first keyframe
	}
	v.keyed = true
	p, d := v.tc.times(pts, dts)
	v.p.write(v.w, sdk.Frame{PTS: p, DTS: d, HasDTS: p != d, Keyframe: key, Payload: v.buf})
}

// av1Track writes AV1 temporal units (OBUs with sizes, without temporal
// delimiters and padding, as in MP4 samples); its track is added at the
// first one with a sequence header.
type av1Track struct {
	p     *publish
	tc    *trackClock
	w     *sdk.TrackWriter
	obus  [][]byte
	keyed bool
}

func (v *av1Track) write(pts time.Duration, tu [][]byte) {
	if v.p.err != nil {
		return
	}
	if v.w == nil {
		var sh []byte
		for _, obu := range tu {
			if (obu[0]>>3)&0xf == 1 { // OBU_SEQUENCE_HEADER
				sh = obu
				break
			}
		}
		if sh == nil {
			return
		}
		t, err := sdk.AV1FromSequenceHeader(sh)
		if err != nil {
			v.p.fail(fmt.Errorf("rtmp: AV1 sequence header: %w", err))
			return
		}
		if v.w = v.p.addLater(t, v.tc); v.w == nil {
			return
		}
	}
	obus := v.obus[:0]
	for _, obu := range tu {
		if t := (obu[0] >> 3) & 0xf; t != 2 && t != 15 { // temporal delimiters and padding stay out of samples
			obus = append(obus, obu)
		}
	}
	v.obus = obus
	if len(obus) == 0 {
		return
	}
	payload, err := av1.Bitstream(obus).Marshal()
	if err != nil {
		v.p.fail(fmt.Errorf("rtmp: AV1 temporal unit: %w", err))
		return
	}
	key := av1.IsRandomAccess2(tu)
	if !v.keyed && !key {
		return
	}
	v.keyed = true
	p, _ := v.tc.times(pts, pts)
	v.p.write(v.w, sdk.Frame{PTS: p, Keyframe: key, Payload: payload})
}

// vp9Track writes VP9 frames; its track is added at the first keyframe.
type vp9Track struct {
	p     *publish
	tc    *trackClock
	w     *sdk.TrackWriter
	keyed bool
}

func (v *vp9Track) write(pts time.Duration, frame []byte) {
	if v.p.err != nil {
		return
	}
	key := sdk.VP9Keyframe(frame)
	if v.w == nil {
		if !key {
			return
		}
		t, err := sdk.VP9FromKeyframe(frame)
		if err != nil {
			v.p.fail(fmt.Errorf("rtmp: VP9 keyframe: %w", err))
			return
		}
		if v.w = v.p.addLater(t, v.tc); v.w == nil {
			return
		}
	}
	if !v.keyed && !key {
		return
	}
	v.keyed = true
	p, _ := v.tc.times(pts, pts)
	v.p.write(v.w, sdk.Frame{PTS: p, Keyframe: key, Payload: frame})
}

// audioTrack writes audio packets (AAC access units, Opus packets), each
// a keyframe.
type audioTrack struct {
	p  *publish
	tc *trackClock
	w  *sdk.TrackWriter
}

func (a *audioTrack) write(pts time.Duration, pkt []byte) {
	p, _ := a.tc.times(pts, pts)
	a.p.write(a.w, sdk.Frame{PTS: p, Keyframe: true, Payload: pkt})
}

package fmp4

import "github.com/moqbridge/moqbridge/sdk"

// maxFragSamples bounds the samples of one fragment.
const maxFragSamples = 1 << 16

// fragSample is one sample of a moof+mdat fragment.
type fragSample struct {
	t    *trackInfo
	dts  int64
	cts  int32
	dur  uint32
	key  bool
	data []byte
}

// parseFragment extracts the samples of a moof (body at moofBody, box at
// moofOff with header moofHdr) and the following mdat (body at mdatBody,
// starting at stream offset mdatBodyOff). next holds the next decode time
// of every track, for fragments without tfdt. Samples of tracks that are
// not in the movie are dropped.
func parseFragment(m *movie, moof []byte, moofOff int64, moofHdr int, mdat []byte, mdatBodyOff int64, next map[uint32]int64) ([]fragSample, error) {
	var out []fragSample
	bodyOff := moofOff + int64(moofHdr)
	err := walk(moof, bodyOff, func(typ string, traf []byte, trafOff int64) error {
		if typ != "traf" {
			return nil
		}
		var t *trackInfo
		var id uint32
		var defDur, defSize, defFlags uint32
		base := moofOff // absolute stream offset of the data base
		var dts int64
		haveTfhd, haveTfdt := false, false
		pos := int64(-1) // absolute offset of the next sample's data
		err := walk(traf, trafOff, func(typ string, body []byte, off int64) error {
			switch typ {
			case "tfhd":
				r := &reader{b: body, base: off, what: "tfhd"}
				r.skip(1)
				f := uint32(r.u8())<<16 | uint32(r.u16())
				id = r.u32()
				if r.err != nil {
					return r.err
				}
				t = m.byID[id]
				if t != nil {
					defDur, defSize, defFlags = t.defDur, t.defSize, t.defFlags
				}
				if f&0x01 != 0 {
					v := r.u64()
					if v > 1<<62 {
						return formatErr(off, "tfhd base data offset %d out of range", v)
					}
					base = int64(v)
				}
				if f&0x02 != 0 {
					r.skip(4)
				}
				if f&0x08 != 0 {
					defDur = r.u32()
				}
				if f&0x10 != 0 {
					defSize = r.u32()
				}
				if f&0x20 != 0 {
					defFlags = r.u32()
				}
				haveTfhd = true
				return r.err
			case "tfdt":
				r := &reader{b: body, base: off, what: "tfdt"}
				v := r.u8()
				r.skip(3)
				var d uint64
				if v == 1 {
					d = r.u64()
				} else {
					d = uint64(r.u32())
				}
				if r.err != nil {
					return r.err
				}
				if d > 1<<62 {
					return formatErr(off, "tfdt %d out of range", d)
				}
				dts, haveTfdt = int64(d), true
			case "trun":
				if !haveTfhd {
					return formatErr(off, "trun before tfhd")
				}
				if t == nil {
					return nil
				}
				// An audio tfdt within one frame of where the track's
				// timeline already is snaps to it: ffmpeg (5.1) with
				// frag_every_frame writes audio tfdt values that repeat or
				// skip their predecessor's by one frame, which would
				// otherwise read as time going backwards or a gap.
				want, continuing := next[id]
				snap := haveTfdt && continuing && t.track.Kind != sdk.KindVideo && dts != want
				if !haveTfdt {
					dts, haveTfdt = want, true
				}
				r := &reader{b: body, base: off, what: "trun"}
				r.skip(1)
				f := uint32(r.u8())<<16 | uint32(r.u16())
				n := r.u32()
				if r.err != nil {
					return r.err
				}
				if n > maxFragSamples {
					return formatErr(off, "trun with %d samples, more than %d", n, maxFragSamples)
				}
				if f&0x01 != 0 {
					pos = base + int64(int32(r.u32()))
				} else if pos < 0 {
					pos = base
				}
				first, hasFirst := uint32(0), false
				if f&0x04 != 0 {
					first, hasFirst = r.u32(), true
				}
				for i := uint32(0); i < n; i++ {
					s := fragSample{t: t, dts: dts, dur: defDur}
					size, flags := defSize, defFlags
					if f&0x100 != 0 {
						s.dur = r.u32()
					}
					if f&0x200 != 0 {
						size = r.u32()
					}
					if f&0x400 != 0 {
						flags = r.u32()
					}
					if i == 0 && hasFirst {
						flags = first
					}
					if t.track.Kind != sdk.KindVideo {
						// ffmpeg's per-frame audio fragments may carry a
						// zero duration; audio frames are of constant
						// length, so the last known one stands in.
						if s.dur == 0 {
							s.dur = t.lastDur
						}
						t.lastDur = s.dur
					}
					if i == 0 && snap && max(dts, want)-min(dts, want) <= int64(s.dur) {
						dts, s.dts = want, want
					}
					if f&0x800 != 0 {
						// Version 0 offsets are unsigned; values above
						// 2^31 are read as negative, as writers mean them.
						s.cts = int32(r.u32())
					}
					if r.err != nil {
						return r.err
					}
					if t.track.Kind == sdk.KindVideo {
						// Video: sync unless sample_is_non_sync_sample,
						// or it depends on other samples.
						s.key = flags&0x10000 == 0 && (flags>>24)&3 != 1
					} else {
						s.key = true
					}
					rel := pos - mdatBodyOff
					if rel < 0 || rel > int64(len(mdat)) || int64(size) > int64(len(mdat))-rel {
						return formatErr(off, "track %d sample %d: data at byte %d (%d bytes) is outside the mdat body (bytes %d to %d)",
							id, i, pos, size, mdatBodyOff, mdatBodyOff+int64(len(mdat)))
					}
					if size == 0 {
						return formatErr(off, "track %d sample %d: empty sample", id, i)
					}
					s.data = mdat[rel : rel+int64(size)]
					pos += int64(size)
					dts += int64(s.dur)
					out = append(out, s)
					if len(out) > maxFragSamples {
						return formatErr(off, "fragment with more than %d samples", maxFragSamples)
					}
				}
				next[id] = dts
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

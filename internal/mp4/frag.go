package mp4

import (
	"encoding/binary"
)

// Movie fragments: moof (mfhd, traf*), traf (tfhd, tfdt, trun*), then the
// mdat with the sample data.

// tfhd flags.
const (
	TfhdBaseDataOffset    = 0x000001
	TfhdSampleDescIndex   = 0x000002
	TfhdDefaultDuration   = 0x000008
	TfhdDefaultSize       = 0x000010
	TfhdDefaultFlags      = 0x000020
	TfhdDefaultBaseIsMoof = 0x020000
)

// trun flags.
const (
	TrunDataOffset        = 0x000001
	TrunFirstSampleFlags  = 0x000004
	TrunDuration          = 0x000100
	TrunSize              = 0x000200
	TrunFlags             = 0x000400
	TrunCompositionOffset = 0x000800
)

// Sample flags written for video (what ffmpeg writes and the hang importer
// expects).
const (
	SampleFlagsSync    = 0x02000000 // sample_depends_on = 2
	SampleFlagsNonSync = 0x01010000 // sample_depends_on = 1, sample_is_non_sync_sample
)

// IsSync reports whether decoding can start at a sample with these
// sample flags: it is not a non-sync sample and does not depend on others
// (sample_depends_on is 2, or 0, unknown, as the reference player
// accepts).
func IsSync(flags uint32) bool {
	return flags&0x10000 == 0 && flags>>24&3 != 1
}

// SampleDefaults are the sample duration, size and flags a trun leaves
// out: the track's trex, overridden by the tfhd.
type SampleDefaults struct {
	Duration, Size, Flags uint32
}

// ParseTrex reads a trex body (at offset off): the track and its defaults.
func ParseTrex(body []byte, off int64) (trackID uint32, d SampleDefaults, err error) {
	_, _, r, err := FullBox(body, off, "trex")
	if err != nil {
		return 0, d, err
	}
	if len(r) < 20 {
		return 0, d, Errorf(off, "trex truncated")
	}
	return binary.BigEndian.Uint32(r), SampleDefaults{
		Duration: binary.BigEndian.Uint32(r[8:]),
		Size:     binary.BigEndian.Uint32(r[12:]),
		Flags:    binary.BigEndian.Uint32(r[16:]),
	}, nil
}

// Tfhd is a track fragment header.
type Tfhd struct {
	Flags                  uint32
	TrackID                uint32
	BaseDataOffset         uint64 // with TfhdBaseDataOffset
	SampleDescriptionIndex uint32 // with TfhdSampleDescIndex
	// Defaults holds the defaults the tfhd sets, per its flags.
	Defaults SampleDefaults
}

// ParseTfhd reads a tfhd body (at offset off).
func ParseTfhd(body []byte, off int64) (Tfhd, error) {
	_, fl, r, err := FullBox(body, off, "tfhd")
	if err != nil {
		return Tfhd{}, err
	}
	need := 4 // track_ID
	if fl&TfhdBaseDataOffset != 0 {
		need += 8
	}
	for _, f := range [...]uint32{TfhdSampleDescIndex, TfhdDefaultDuration, TfhdDefaultSize, TfhdDefaultFlags} {
		if fl&f != 0 {
			need += 4
		}
	}
	if len(r) < need {
		return Tfhd{}, Errorf(off, "tfhd truncated")
	}
	h := Tfhd{Flags: fl, TrackID: binary.BigEndian.Uint32(r)}
	r = r[4:]
	if fl&TfhdBaseDataOffset != 0 {
		h.BaseDataOffset = binary.BigEndian.Uint64(r)
		r = r[8:]
	}
	if fl&TfhdSampleDescIndex != 0 {
		h.SampleDescriptionIndex = binary.BigEndian.Uint32(r)
		r = r[4:]
	}
	if fl&TfhdDefaultDuration != 0 {
		h.Defaults.Duration = binary.BigEndian.Uint32(r)
		r = r[4:]
	}
	if fl&TfhdDefaultSize != 0 {
		h.Defaults.Size = binary.BigEndian.Uint32(r)
		r = r[4:]
	}
	if fl&TfhdDefaultFlags != 0 {
		h.Defaults.Flags = binary.BigEndian.Uint32(r)
	}
	return h, nil
}

// Apply returns d (the track's trex defaults) with those the tfhd sets
// replaced.
func (h *Tfhd) Apply(d SampleDefaults) SampleDefaults {
	if h.Flags&TfhdDefaultDuration != 0 {
		d.Duration = h.Defaults.Duration
	}
	if h.Flags&TfhdDefaultSize != 0 {
		d.Size = h.Defaults.Size
	}
	if h.Flags&TfhdDefaultFlags != 0 {
		d.Flags = h.Defaults.Flags
	}
	return d
}

// ParseTfdt reads a tfdt body (at offset off): the base media decode time.
func ParseTfdt(body []byte, off int64) (uint64, error) {
	v, _, r, err := FullBox(body, off, "tfdt")
	if err != nil {
		return 0, err
	}
	switch {
	case v == 1 && len(r) >= 8:
		return binary.BigEndian.Uint64(r), nil
	case v != 1 && len(r) >= 4:
		return uint64(binary.BigEndian.Uint32(r)), nil
	}
	return 0, Errorf(off, "tfdt truncated")
}

// Trun is a track run: its header, and its sample entries, read with
// Sample.
type Trun struct {
	Version          uint8
	Flags            uint32
	Count            uint32
	DataOffset       int32  // with TrunDataOffset
	FirstSampleFlags uint32 // with TrunFirstSampleFlags
	entries          []byte
	entry            int // bytes per sample entry
}

// ParseTrun reads a trun body (at offset off). It fails if the trun
// declares more than maxSamples samples or fewer bytes than its samples
// need, so that Sample can be called for every index below Count.
func ParseTrun(body []byte, off int64, maxSamples int) (Trun, error) {
	v, fl, r, err := FullBox(body, off, "trun")
	if err != nil {
		return Trun{}, err
	}
	if len(r) < 4 {
		return Trun{}, Errorf(off, "trun truncated")
	}
	t := Trun{Version: v, Flags: fl, Count: binary.BigEndian.Uint32(r)}
	r = r[4:]
	if t.Count > uint32(maxSamples) {
		return Trun{}, Errorf(off, "trun with %d samples, more than %d", t.Count, maxSamples)
	}
	if fl&TrunDataOffset != 0 {
		if len(r) < 4 {
			return Trun{}, Errorf(off, "trun truncated")
		}
		t.DataOffset = int32(binary.BigEndian.Uint32(r))
		r = r[4:]
	}
	if fl&TrunFirstSampleFlags != 0 {
		if len(r) < 4 {
			return Trun{}, Errorf(off, "trun truncated")
		}
		t.FirstSampleFlags = binary.BigEndian.Uint32(r)
		r = r[4:]
	}
	for _, f := range [...]uint32{TrunDuration, TrunSize, TrunFlags, TrunCompositionOffset} {
		if fl&f != 0 {
			t.entry += 4
		}
	}
	if uint64(len(r)) < uint64(t.Count)*uint64(t.entry) {
		return Trun{}, Errorf(off, "trun truncated: %d samples in %d bytes", t.Count, len(r))
	}
	t.entries = r
	return t, nil
}

// RunSample is one sample of a trun.
type RunSample struct {
	Duration, Size, Flags uint32
	// CompositionOffset is PTS − DTS: unsigned in a version 0 trun,
	// signed in version 1.
	CompositionOffset int64
}

// Sample returns sample i (below Count), with d for what the trun leaves
// out. The first-sample flags of the trun override the flags of sample 0.
func (t *Trun) Sample(i int, d SampleDefaults) RunSample {
	s := RunSample{Duration: d.Duration, Size: d.Size, Flags: d.Flags}
	e := t.entries[i*t.entry:]
	if t.Flags&TrunDuration != 0 {
		s.Duration = binary.BigEndian.Uint32(e)
		e = e[4:]
	}
	if t.Flags&TrunSize != 0 {
		s.Size = binary.BigEndian.Uint32(e)
		e = e[4:]
	}
	if t.Flags&TrunFlags != 0 {
		s.Flags = binary.BigEndian.Uint32(e)
		e = e[4:]
	}
	if i == 0 && t.Flags&TrunFirstSampleFlags != 0 {
		s.Flags = t.FirstSampleFlags
	}
	if t.Flags&TrunCompositionOffset != 0 {
		c := binary.BigEndian.Uint32(e)
		if t.Version == 0 {
			s.CompositionOffset = int64(c)
		} else {
			s.CompositionOffset = int64(int32(c))
		}
	}
	return s
}

// Traf is a track fragment (the body of a traf box): its tfhd and tfdt,
// and its truns, read with Runs.
type Traf struct {
	Tfhd    Tfhd
	HasTfhd bool
	// DecodeTime is the tfdt's base media decode time.
	DecodeTime    uint64
	HasDecodeTime bool
	// Truns counts the trun boxes.
	Truns int

	body []byte
	off  int64
}

// ParseTraf reads the tfhd and tfdt of a traf body that starts at offset
// off. A traf with truns but no tfhd is an error.
func ParseTraf(body []byte, off int64) (Traf, error) {
	t := Traf{body: body, off: off}
	err := Walk(body, off, func(bx Box) error {
		var err error
		switch bx.Type {
		case "tfhd":
			if !t.HasTfhd {
				t.Tfhd, err = ParseTfhd(bx.Body, bx.Offset)
				t.HasTfhd = err == nil
			}
		case "tfdt":
			if !t.HasDecodeTime {
				t.DecodeTime, err = ParseTfdt(bx.Body, bx.Offset)
				t.HasDecodeTime = err == nil
			}
		case "trun":
			t.Truns++
		}
		return err
	})
	if err != nil {
		return Traf{}, err
	}
	if t.Truns > 0 && !t.HasTfhd {
		return Traf{}, Errorf(off, "traf with a trun but no tfhd")
	}
	return t, nil
}

// Runs calls fn for every trun of the traf, in order, with the offset of
// its box; it stops at the first error. Each trun holds at most
// maxSamples samples.
func (t *Traf) Runs(maxSamples int, fn func(r Trun, off int64) error) error {
	if t.Truns == 0 {
		return nil
	}
	return Walk(t.body, t.off, func(bx Box) error {
		if bx.Type != "trun" {
			return nil
		}
		r, err := ParseTrun(bx.Body, bx.Offset, maxSamples)
		if err != nil {
			return err
		}
		return fn(r, bx.Offset)
	})
}

// Offset returns the position of the traf body's first byte.
func (t *Traf) Offset() int64 { return t.off }

// DataStart returns where the data of the first trun without a data
// offset starts, and what data offsets are relative to: the tfhd's base
// data offset if it has one, else the first byte of the moof, at moofOff.
func (t *Traf) DataStart(moofOff int64) (int64, bool) {
	if t.Tfhd.Flags&TfhdBaseDataOffset != 0 {
		if t.Tfhd.BaseDataOffset > 1<<62 {
			return 0, false
		}
		return int64(t.Tfhd.BaseDataOffset), true
	}
	return moofOff, true
}

// Moofs calls fn for every moof box in b, whose first byte is at base,
// skipping the other boxes (mdat, styp, prft, free, …).
func Moofs(b []byte, base int64, fn func(moof Box) error) error {
	return Walk(b, base, func(bx Box) error {
		if bx.Type != "moof" {
			return nil
		}
		return fn(bx)
	})
}

// Trafs calls fn for every traf of a moof (given as a Box of Moofs or
// Walk), parsed.
func Trafs(moof Box, fn func(t Traf) error) error {
	return Walk(moof.Body, moof.BodyOffset(), func(bx Box) error {
		if bx.Type != "traf" {
			return nil
		}
		t, err := ParseTraf(bx.Body, bx.BodyOffset())
		if err != nil {
			return err
		}
		return fn(t)
	})
}

// FragmentWriter appends one moof and its mdat to a byte slice, in two
// passes over the same tracks in the same order:
//
//	f := mp4.StartFragment(dst, seq)
//	for each track: f.Traf(id, dts, n, flags); f.Sample(…) n times
//	f.Mdat()
//	for each track: f.NextData(); f.Data(payload) for each sample
//	dst = f.End()
//
// Every traf has a tfhd with default-base-is-moof, a version 1 tfdt and
// one trun with a data offset, durations, sizes and flags, and composition
// offsets when a sample has one (version 1, signed, when one is negative).
type FragmentWriter struct {
	w       Writer
	base    int // offset of the moof
	moof    int
	traf    int
	trun    int
	mdat    int
	run     int // next run whose data offset NextData patches
	cts     bool
	offsets [8]int
	extra   []int // offsets of data offset fields beyond the first 8
	nruns   int
}

// StartFragment starts a moof with sequence number seq at the end of dst.
func StartFragment(dst []byte, seq uint32) FragmentWriter {
	f := FragmentWriter{w: Writer{B: dst}, base: len(dst), traf: -1}
	f.moof = f.w.Start("moof")
	mfhd := f.w.Full("mfhd", 0, 0)
	f.w.U32(seq)
	f.w.End(mfhd)
	return f
}

// Traf starts the traf of a track with n samples, the first at decode
// time dts. cts says whether the samples carry composition offsets, and
// negative whether one of them is negative.
func (f *FragmentWriter) Traf(trackID uint32, dts uint64, n int, cts, negative bool) {
	f.endTraf()
	f.traf = f.w.Start("traf")
	tfhd := f.w.Full("tfhd", 0, TfhdDefaultBaseIsMoof)
	f.w.U32(trackID)
	f.w.End(tfhd)
	tfdt := f.w.Full("tfdt", 1, 0)
	f.w.U64(dts)
	f.w.End(tfdt)
	var version uint8
	flags := uint32(TrunDataOffset | TrunDuration | TrunSize | TrunFlags)
	if cts {
		flags |= TrunCompositionOffset
		if negative {
			version = 1
		}
	}
	f.cts = cts
	f.trun = f.w.Full("trun", version, flags)
	f.w.U32(uint32(n))
	if f.nruns < len(f.offsets) {
		f.offsets[f.nruns] = len(f.w.B)
	} else {
		f.extra = append(f.extra, len(f.w.B))
	}
	f.nruns++
	f.w.U32(0) // data offset, patched by NextData
}

// Sample writes the trun entry of the next sample of the current traf.
func (f *FragmentWriter) Sample(duration, size, flags uint32, cts int64) {
	f.w.U32(duration)
	f.w.U32(size)
	f.w.U32(flags)
	if f.cts {
		f.w.U32(uint32(int32(cts)))
	}
}

func (f *FragmentWriter) endTraf() {
	if f.traf >= 0 {
		f.w.End(f.trun)
		f.w.End(f.traf)
		f.traf = -1
	}
}

// Mdat ends the moof and starts the mdat.
func (f *FragmentWriter) Mdat() {
	f.endTraf()
	f.w.End(f.moof)
	f.mdat = f.w.Start("mdat")
}

// NextData starts the data of the next track in the mdat, in the order
// of Traf: its trun's data offset points here.
func (f *FragmentWriter) NextData() {
	if f.run >= f.nruns {
		return
	}
	at := 0
	if f.run < len(f.offsets) {
		at = f.offsets[f.run]
	} else {
		at = f.extra[f.run-len(f.offsets)]
	}
	binary.BigEndian.PutUint32(f.w.B[at:], uint32(len(f.w.B)-f.base))
	f.run++
}

// Data appends sample data to the mdat.
func (f *FragmentWriter) Data(p []byte) { f.w.Raw(p) }

// End ends the mdat and returns the slice with the fragment appended.
func (f *FragmentWriter) End() []byte {
	f.w.End(f.mdat)
	return f.w.B
}

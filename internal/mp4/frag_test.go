package mp4

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// sample is a sample as a test writes and reads it.
type sample struct {
	dts      uint64
	cts      int64
	duration uint32
	sync     bool
	data     []byte
}

type run struct {
	id      uint32
	samples []sample
}

func writeFragment(dst []byte, seq uint32, runs []run) []byte {
	f := StartFragment(dst, seq)
	for _, r := range runs {
		cts, neg := false, false
		for _, s := range r.samples {
			cts, neg = cts || s.cts != 0, neg || s.cts < 0
		}
		f.Traf(r.id, r.samples[0].dts, len(r.samples), cts, neg)
		for _, s := range r.samples {
			flags := uint32(SampleFlagsNonSync)
			if s.sync {
				flags = SampleFlagsSync
			}
			f.Sample(s.duration, uint32(len(s.data)), flags, s.cts)
		}
	}
	f.Mdat()
	for _, r := range runs {
		f.NextData()
		for _, s := range r.samples {
			f.Data(s.data)
		}
	}
	return f.End()
}

// readFragment reads the moofs of b back into runs, with data located
// through the data offsets relative to each moof.
func readFragment(b []byte, base int64) ([]run, error) {
	var out []run
	total := 0
	err := Moofs(b, base, func(moof Box) error {
		return Trafs(moof, func(tf Traf) error {
			start, ok := tf.DataStart(moof.Offset)
			if !ok {
				return Errorf(tf.Offset(), "base data offset")
			}
			r := run{id: tf.Tfhd.TrackID}
			dts, pos := tf.DecodeTime, start
			err := tf.Runs(1<<16, func(tr Trun, off int64) error {
				if tr.Flags&TrunDataOffset != 0 {
					pos = start + int64(tr.DataOffset)
				}
				total += int(tr.Count)
				if total > 1<<16 {
					return Errorf(off, "more than %d samples", 1<<16)
				}
				for i := range int(tr.Count) {
					s := tr.Sample(i, tf.Tfhd.Apply(SampleDefaults{}))
					rel := pos - base
					if rel < 0 || rel+int64(s.Size) > int64(len(b)) {
						return Errorf(off, "sample outside")
					}
					r.samples = append(r.samples, sample{dts: dts, cts: s.CompositionOffset, duration: s.Duration,
						sync: IsSync(s.Flags), data: b[rel : rel+int64(s.Size)]})
					pos += int64(s.Size)
					dts += uint64(s.Duration)
				}
				return nil
			})
			out = append(out, r)
			return err
		})
	})
	return out, err
}

func TestFragmentRoundTrip(t *testing.T) {
	runs := []run{
		{id: 1, samples: []sample{
			{dts: 1 << 40, duration: 512, sync: true, data: []byte{1, 2, 3}},
			{dts: 1<<40 + 512, cts: 1024, duration: 512, data: []byte{4}},
			{dts: 1<<40 + 1024, cts: -512, duration: 512, data: []byte{5, 6}},
		}},
		{id: 2, samples: []sample{{dts: 7, duration: 1024, sync: true, data: []byte{7, 8}}}},
	}
	prefix := []byte("prefix")
	b := writeFragment(append([]byte(nil), prefix...), 9, runs)
	if !bytes.HasPrefix(b, prefix) {
		t.Fatal("prefix lost")
	}
	got, err := readFragment(b[len(prefix):], 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(runs) {
		t.Fatalf("%d runs", len(got))
	}
	for i, r := range runs {
		if got[i].id != r.id || len(got[i].samples) != len(r.samples) {
			t.Fatalf("run %d: %+v", i, got[i])
		}
		for j, s := range r.samples {
			g := got[i].samples[j]
			if g.dts != s.dts || g.cts != s.cts || g.duration != s.duration || g.sync != s.sync || !bytes.Equal(g.data, s.data) {
				t.Errorf("run %d sample %d: %+v, want %+v", i, j, g, s)
			}
		}
	}
	// The layout moqbridge writes: mfhd, then per track tfhd
	// (default-base-is-moof), tfdt v1 and a trun with data offset,
	// durations, sizes, flags and, for the first track, signed composition
	// offsets.
	one := writeFragment(nil, 1, []run{{id: 1, samples: []sample{{dts: 2, duration: 3, sync: true, data: []byte{0xaa}}}}})
	want := "00000064" + "6d6f6f66" +
		"00000010" + "6d666864" + "00000000" + "00000001" +
		"0000004c" + "74726166" +
		"00000010" + "74666864" + "00020000" + "00000001" +
		"00000014" + "74666474" + "01000000" + "0000000000000002" +
		"00000020" + "7472756e" + "00000701" + "00000001" + "0000006c" + "00000003" + "00000001" + "02000000" +
		"00000009" + "6d646174" + "aa"
	if hex.EncodeToString(one) != want {
		t.Errorf("fragment\n%x\nwant\n%s", one, want)
	}
}

// TestFragmentManyRuns: data offsets are patched beyond the eight runs
// kept without allocating.
func TestFragmentManyRuns(t *testing.T) {
	var runs []run
	for i := range 11 {
		runs = append(runs, run{id: uint32(i + 1), samples: []sample{{dts: uint64(i), duration: 1, sync: true, data: []byte{byte(i), byte(i)}}}})
	}
	got, err := readFragment(writeFragment(nil, 1, runs), 0)
	if err != nil || len(got) != len(runs) {
		t.Fatalf("%d runs, %v", len(got), err)
	}
	for i, r := range got {
		if !bytes.Equal(r.samples[0].data, []byte{byte(i), byte(i)}) {
			t.Errorf("run %d data %v", i, r.samples[0].data)
		}
	}
}

func TestFragmentDefaults(t *testing.T) {
	// tfhd with base data offset, description index and the three
	// defaults; trun with first-sample flags only.
	var w Writer
	moof := w.Start("moof")
	traf := w.Start("traf")
	tfhd := w.Full("tfhd", 0, TfhdBaseDataOffset|TfhdSampleDescIndex|TfhdDefaultDuration|TfhdDefaultSize|TfhdDefaultFlags)
	w.U32(5)
	w.U64(1000)
	w.U32(1)
	w.U32(960)
	w.U32(4)
	w.U32(SampleFlagsNonSync)
	w.End(tfhd)
	trun := w.Full("trun", 0, TrunFirstSampleFlags)
	w.U32(2)
	w.U32(SampleFlagsSync)
	w.End(trun)
	w.End(traf)
	w.End(moof)
	err := Moofs(w.B, 0, func(moof Box) error {
		return Trafs(moof, func(tf Traf) error {
			if tf.HasDecodeTime || tf.Tfhd.TrackID != 5 || tf.Tfhd.SampleDescriptionIndex != 1 {
				t.Errorf("traf %+v", tf)
			}
			if start, ok := tf.DataStart(moof.Offset); !ok || start != 1000 {
				t.Errorf("data start %d %v", start, ok)
			}
			d := tf.Tfhd.Apply(SampleDefaults{Duration: 1, Size: 2, Flags: 3})
			if d != (SampleDefaults{960, 4, SampleFlagsNonSync}) {
				t.Errorf("defaults %+v", d)
			}
			return tf.Runs(10, func(r Trun, _ int64) error {
				s0, s1 := r.Sample(0, d), r.Sample(1, d)
				if !IsSync(s0.Flags) || IsSync(s1.Flags) || s0.Duration != 960 || s1.Size != 4 {
					t.Errorf("samples %+v %+v", s0, s1)
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFragmentErrors(t *testing.T) {
	good := writeFragment(nil, 1, []run{{id: 1, samples: []sample{{dts: 0, duration: 1, sync: true, data: []byte{1}}, {dts: 1, duration: 1, data: []byte{2}}}}})
	// Offsets in good: moof 0, mfhd 8, traf 24, tfhd 32, tfdt 48, trun 68.
	for name, c := range map[string]struct {
		b   []byte
		max int
	}{
		"trun count over the limit": {good, 1},
		"trun truncated":            {cut(good, 68, 4), 10},
		"tfhd truncated":            {cut(good, 32, 4), 10},
		"tfdt truncated":            {cut(good, 48, 4), 10},
		"trun without tfhd":         {drop(good, 32, 16), 10},
	} {
		_, err := readFragmentMax(c.b, c.max)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

// cut shortens the box at off (and its parents moof and traf) by n bytes
// from its end.
func cut(b []byte, off, n int) []byte {
	out := append([]byte(nil), b...)
	size := int(be32(out[off:]))
	out = append(out[:off+size-n], out[off+size:]...)
	for _, p := range []int{0, 24, off} {
		put32(out[p:], be32(out[p:])-uint32(n))
	}
	return out
}

// drop removes n bytes at off, fixing moof and traf.
func drop(b []byte, off, n int) []byte {
	out := append([]byte(nil), b[:off]...)
	out = append(out, b[off+n:]...)
	for _, p := range []int{0, 24} {
		put32(out[p:], be32(out[p:])-uint32(n))
	}
	return out
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func put32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func readFragmentMax(b []byte, maxSamples int) (n int, err error) {
	err = Moofs(b, 0, func(moof Box) error {
		return Trafs(moof, func(tf Traf) error {
			return tf.Runs(maxSamples, func(r Trun, off int64) error {
				if n+int(r.Count) > 1<<16 {
					return Errorf(off, "more than %d samples", 1<<16)
				}
				for i := range int(r.Count) {
					_ = r.Sample(i, SampleDefaults{})
					n++
				}
				return nil
			})
		})
	})
	return n, err
}

// FuzzFragment reads arbitrary bytes as moof+mdat fragments: no panic,
// every sample entry readable, counts bounded, an *Error when rejected.
func FuzzFragment(f *testing.F) {
	seeds(f)
	f.Add(writeFragment(nil, 1, []run{{id: 1, samples: []sample{{dts: 0, cts: -3, duration: 1, sync: true, data: []byte{1}}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := readFragmentMax(b, 1000)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		if n > 1<<16 {
			t.Fatalf("%d samples", n)
		}
		if _, err := readFragment(b, 0); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
		}
	})
}

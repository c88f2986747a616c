// Package mp4 owns the ISO base media file format (ISO/IEC 14496-12) boxes
// that moqbridge reads and writes in more than one place: splitting a byte
// stream or a buffer into boxes, building nested boxes with their sizes
// patched in, reading and writing movie fragments (moof with its mfhd,
// traf, tfhd, tfdt and trun, and the mdat after it), and reading the
// boxes of a movie that say what a track is (trex, tkhd, mdhd, hdlr, the
// first sample entry of stsd, esds). The fMP4 source (sources/fmp4), the
// cmaf container of the sdk reader (sdk) and the fMP4 recorder
// (sinks/fmp4) use it; what only one of them needs (the sample tables of
// a progressive file, the recorder's init segment) stays with it, and
// codec configurations (avcC, dOps, …) are the sdk's.
//
// It does no I/O beyond the io.Reader it is given, knows nothing about
// sdk tracks and frames, and holds no state between calls.
//
// It is written by hand rather than on mediacommon/v2's pkg/formats/fmp4
// (v2.9.5), which was checked first and does not fit:
//
//   - its Parts.Unmarshal ignores the trex defaults, the tfhd base data
//     offset and first-sample flags, requires a trun data offset and
//     rejects empty samples, so it misreads fragments that ffmpeg writes
//     (frag_every_frame relies on trex defaults and first-sample flags);
//   - it gives no byte offsets for errors, which user-facing errors name;
//   - it allocates a Sample per sample and copies every payload into a new
//     mdat (Part.Marshal) through an io.WriteSeeker, where the recorder
//     appends whole fragments to one reused buffer without allocating and
//     the readers return samples aliasing the fragment;
//   - it has no streaming box reader with a size limit (a live stdin
//     stream, boxes larger than memory skipped by seeking).
//
// Errors of malformed input are *Error values, with the byte offset of the
// box or field at fault relative to what the caller passed (a stream, or
// a buffer with the base offset given).
package mp4

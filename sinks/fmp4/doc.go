// Package fmp4 is the fragmented-MP4 recording sink of moqbridge: a Sink
// that records every track of a broadcast into .mp4 files that ffmpeg,
// browsers and other MP4 readers play while they grow.
//
// # File layout
//
// A file is an init segment (ftyp + moov, one trak per track, mvex with a
// trex per track) followed by fragments. A fragment is one moof (one traf
// per track with samples) and one mdat. With video, a fragment holds one
// video group, keyframe to keyframe, plus the audio that arrived with it
// (audio that waited 5 s for a stalled video track goes out on its own);
// audio-only broadcasts, and audio after the video ended, are cut every
// Config.PartDuration (default 1 s).
// Sample entries come from the sdk.Track: avc1/avc3 + avcC, hvc1/hev1 +
// hvcC and av01 + av1C take Track.DecoderConfig verbatim, vp09 + vpcC is
// rebuilt from the codec string, Opus + dOps from the OpusHead (or the
// channel count, pre-skip 0), mp4a + esds from the AudioSpecificConfig
// with non-zero bit rates. Tracks whose codec MP4 cannot carry here (VP8,
// and AAC in ADTS form, i.e. without a DecoderConfig) are skipped with a
// warning.
//
// H.264 and H.265 tracks without a DecoderConfig (Annex B with in-band
// parameter sets, what the browser publisher sends) are recorded too: the
// avcC or hvcC is built from the parameter sets of the first keyframe that
// has them, and every frame is converted to 4-byte length-prefixed NAL
// units without access unit delimiters (and, for avc1/hvc1, without the
// parameter sets the sample entry holds). Until the parameter sets come
// the track's frames are dropped and the track is left out of the init
// segment. A keyframe with other parameter sets (the encoder was
// reconfigured) ends the file: what is pending is written, and the
// recording goes on in a new file whose sample entry has the new
// configuration, starting at that keyframe. A resumed Run of such a track
// always starts a new file.
//
// # Timing
//
// The legacy container carries presentation times only. Both tracks map
// the same origin, the smallest first timestamp of the tracks (the sink
// waits up to Config.StartWait for the first frame of each), to 0. Video
// decode times are reconstructed per group as the group's presentation
// times in increasing order, kept above the previous group's: a closed
// GOP's keyframe gets DTS = PTS and B-frames negative composition offsets,
// written with trun version 1 — the layout of ffmpeg's cmaf mode and of the
// reference exporter (hang-format §5.3), and exact for any frame rate.
// Durations are the differences of decode times; the last sample of a
// group lasts until the next group's keyframe when that follows within
// three nominal frame durations, else the nominal frame duration
// (1/Track.Framerate, or the group's mean spacing). Audio durations come
// from the timestamps, the last of a fragment from the codec (1024 samples
// for AAC, the TOC byte for Opus). Video uses Config.VideoTimescale (90
// kHz by default), audio its sample rate.
//
// After a Discontinuity (lost groups) video is dropped up to the next
// keyframe; a frame whose time is not after what its track already has (a
// publisher that rewound) is dropped likewise, so decode times never go
// back within a file.
//
// # Files, crash safety, retention
//
// File names come from Config.FileTemplate ({path}, {start:LAYOUT},
// {seq}). With Config.SegmentDuration set, a new file starts at the first
// video keyframe (audio-only: fragment boundary) after that much media
// time; timestamps continue across files. A file is created when its first
// fragment is ready, and the init segment and that fragment go out in one
// write(2); every later fragment is also one write. A process killed with
// SIGKILL therefore leaves every file as whole boxes, playable up to its
// last fragment. fsync runs when a file is closed (SyncSegment, the
// default) or after every fragment (SyncFragment); only a power loss can
// lose unsynced fragments. Retention (MaxAge, MaxTotalBytes) deletes the
// oldest finished files this Sink wrote, never the newest one and never a
// file of another sink.
//
// Cancelling Run's context writes the open fragment and closes the file;
// Run then returns nil, as it does when the broadcast ends (every track
// ends with io.EOF or moq.ErrClosed). A directory that cannot be
// created or written, a full disk or any other write error ends Run with
// an error naming the path; it is contained in this sink. A fragment whose
// write (or, with SyncFragment, fsync) fails is undone: the file is cut
// back to the size it had before, so it ends with its last whole fragment,
// and closed; a new file that did not get its first fragment is removed.
// The error is logged at ERROR level with the file name.
//
// # Lost broadcasts and resuming
//
// When a track ends with another error (the relay restarted, the
// publisher's connection dropped), Run writes what it has and closes the
// file as for a clean end, then returns an error wrapping ErrSourceLost and
// the track's error (a catalog lost before recording started is reported
// the same way). The caller may wait for the broadcast to come back and
// call Run again on the same Sink with a new reader; Runs of one Sink must
// not overlap. The recording then continues:
//
//   - If the recordable tracks are the same as in the previous Run (same
//     names, identical sample entries, so the init segment would be
//     byte-identical) and that Run's last file was closed at its end rather
//     than rotated away, the next fragment is appended to that file
//     (reopened with O_APPEND, taken off the retention list while open):
//     no second init segment, mfhd sequence numbers going on. Rotation
//     that is due by then (Config.SegmentDuration) starts a new file
//     instead, and so does a file that changed size since it was closed.
//   - Otherwise the next file starts, with a new init segment.
//
// Either way {seq} goes on from the previous Run, Files lists the files
// of every Run, and retention covers them all. Media time goes on too: the
// time origin is kept when the new frames lie after what was written (a
// gap in the source stays a gap in the file), and also when they start
// within the group written last (a relay hands a new subscriber its latest
// group: what was written already is dropped as a repeat); when they go
// back further (the publisher restarted its clock), the origin moves, once for all tracks,
// so that the new frames follow the end of every track written so far.
// Decode times therefore keep increasing within a file and from file to
// file, and the tracks stay aligned. A resumed Run is a discontinuity:
// video waits for a keyframe.
//
// # Libraries and hand-written parts
//
// The boxes are written by hand, into one buffer per fragment. mediacommon's
// pkg/formats/fmp4 writer does not fit: Init.Marshal rebuilds avcC/hvcC
// from single parameter sets instead of using the decoder configuration
// verbatim, its Opus and VP9 codecs cannot express the OpusHead pre-skip,
// mapping table or vpcC level and colour fields, and Part.Marshal writes
// box by box through an io.WriteSeeker with go-mp4, where here a fragment
// is appended to one reused buffer (no allocation per frame) and handed to
// the file in a single write. The tests read the recordings back with
// mediacommon's fmp4.Init and fmp4.Parts.
package fmp4

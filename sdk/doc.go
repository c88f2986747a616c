// Package sdk is the media layer of moqbridge: typed tracks and frames, the
// Source and Sink interfaces, and the mapping of media onto MOQ Lite
// broadcasts in the hang format that the reference web player plays.
//
// # What sdk owns
//
//   - Track and Frame, the media model every source and sink speaks: a
//     track is a WebCodecs codec string plus its decoder configuration
//     (avcC, hvcC, av1C, AudioSpecificConfig, OpusHead) and properties; a
//     frame is one access unit with its timestamps.
//   - Codec helpers that derive codec strings, dimensions, sample rates and
//     channel counts from decoder configurations, and build decoder
//     configurations from raw parameter sets (H264FromParameterSets, …).
//   - The hang catalog (catalog.json): the types of the schema parsed by
//     @moq/hang 0.3.5, its encoding, and a tolerant decoding of that schema
//     and of the older variants (Catalog, ParseCatalog).
//   - The hang frame containers: the legacy container (a QUIC varint
//     presentation timestamp in microseconds followed by the codec payload),
//     written and read, and the cmaf container (one moof+mdat fragment per
//     MOQ frame), read.
//   - BroadcastWriter, what a source writes into: it turns tracks and frames
//     into a catalog track, groups (one per video GOP, audio grouped by
//     duration) and legacy frames on a moq.BroadcastWriter.
//   - BroadcastReader, what a sink reads from: it follows the catalog of a
//     moq.BroadcastReader and turns groups back into Frames, reporting
//     the groups it had to skip.
//   - The wiring between sources, sinks and an Origin, so that no adapter
//     or command writes it by hand: Publish runs a Source at a path,
//     Consume and Follow run Sinks on a path or on every broadcast under a
//     prefix, and a Publisher is what a listener source (one listener,
//     many broadcasts) starts and ends broadcasts with. Errors a retry
//     cannot cure are permanent (IsPermanent); writers and readers count
//     what they did per track (Stats).
//   - Helpers for sinks that send one video and one audio track (RTMP,
//     RTP): ChooseTracks picks them, WaitSinkTracks, SubscribeSinkTracks
//     and Ended start a Run and tell the loss of a broadcast from its end,
//     and ParameterSets, ParamSets.ConfigSets, AV1SequenceHeader and
//     AV1OBUs say what a keyframe is sent with.
//
// sdk only uses package moq (the data model); it never touches sessions,
// transports or wire encodings (it builds without the QUIC stack), and it
// knows nothing about the foreign formats (RTMP, RTP, fMP4 files) that
// sources and sinks adapt.
//
// # Timestamps
//
// Frame timestamps are time.Duration values on a clock shared by all tracks
// of a broadcast; the epoch is arbitrary but must be common to the tracks
// and must not be negative. The legacy container carries the presentation
// timestamp only, in whole microseconds; decode timestamps and durations
// are not on the wire (see Frame).
//
// # Libraries and hand-written parts
//
// Sequence parameter sets, AV1 sequence headers and AudioSpecificConfigs are
// parsed with github.com/bluenviron/mediacommon/v2. Written here, because
// no such library does it: the decoder configuration records (avcC, hvcC,
// av1C, vpcC fields) and the codec strings built from them; OpusHead
// parsing (mediacommon's opus.IDHeader reads the little-endian fields of RFC
// 7845 as big-endian); the hang catalog and legacy container; and the cmaf
// fragment reader, since mediacommon's fmp4.Parts ignores the trex defaults
// of the init segment and the trun first-sample-flags that ffmpeg's
// fragments rely on for keyframes.
package sdk

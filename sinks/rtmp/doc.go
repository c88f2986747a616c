// Package rtmp is the RTMP restream sink of moqbridge: a Sink that
// publishes a broadcast to an rtmp:// or rtmps:// server (YouTube, Twitch,
// another RTMP server) and keeps publishing while the server comes and
// goes.
//
// # What it owns
//
// Sink takes one video and one audio track of the broadcast (see Run)
// and writes their frames to the server: H.264 and AAC as legacy FLV,
// H.265, AV1, VP9 and Opus as Enhanced RTMP. Tracks whose codec cannot be
// sent (VP8, AAC without an AudioSpecificConfig, anything else) are
// skipped with a warning; a broadcast with nothing to send is a permanent
// error (sdk.IsPermanent).
//
// Frames go from the broadcast's reader to a writer goroutine through a
// bounded queue (Config.MaxQueueDelay, Config.MaxQueueBytes), so the
// server never holds up the broadcast, its source or its other sinks.
// Every connection starts at a video keyframe (audio before it is not
// sent); a server that does not keep up loses whole GOPs, from the frame
// that did not fit up to the next keyframe, counted in Stats and logged at
// a bounded rate. A server that goes away or refuses is retried with
// exponential backoff and jitter (Config.Backoff) while the broadcast is
// consumed; the queue then holds the current GOP only, so the new
// connection starts at the latest keyframe. A bad URL is permanent.
//
// Timestamps: each connection maps the decode time of its first keyframe
// to 0 and sends whole milliseconds, every track's decode times
// increasing. Video carries its composition offset (PTS − DTS): frames
// read from a cmaf track have their DTS; legacy tracks carry presentation
// times only, so the decode times of H.264 and H.265 are derived from the
// slices' picture order counts with mediacommon's DTSExtractor (AV1 and
// VP9 do not reorder).
//
// Payloads: H.264 and H.265 frames are length-prefixed NAL units when the
// track has a DecoderConfig, whose parameter sets the connection
// announces, and Annex B with in-band parameter sets otherwise: then the
// connection waits for a keyframe that has them (sdk.ParamSets), and when
// a later keyframe brings others the connection is restarted at that
// keyframe to announce them. Access unit delimiters are left out. AV1
// temporal units go without temporal delimiters (gortmplib writes one),
// and a keyframe without a sequence header gets the av1C's. The stream
// key is never logged (Redact).
//
// # Runs, and what is not done
//
// A Run owns its connections: when it returns (the broadcast ended or was
// lost, or its context ended) what is queued is sent, within
// Config.WriteTimeout, and the connection is closed, so a broadcast that
// comes back is published on a new connection, from a keyframe, its
// timestamps again near 0. Keeping the connection open across a loss of
// the broadcast is not done. Neither is following a catalog that changes
// after Run took its tracks (a new rendition), nor multitrack Enhanced
// RTMP. The server's messages are not read once publishing started
// (gortmplib's Client is not safe for a read and a write at once, and a
// read answers pings by writing): a server that pings an idle publisher
// and closes it for not answering is reconnected to.
//
// # What gortmplib does and what is written here
//
// github.com/bluenviron/gortmplib does all of RTMP: TCP and TLS (rtmps,
// with Config.TLSConfig), the handshake, connect, createStream and publish
// commands, chunking, the onMetaData and sequence headers, and the FLV and
// Enhanced RTMP tags of every frame (Client and Writer). Its Writer
// announces AV1 and VP9 with placeholder configuration records (it has no
// way to take real ones); decoders take the real configuration from the
// bitstream. mediacommon splits NAL units and OBUs and parses the
// AudioSpecificConfig and OpusHead. Nothing of RTMP, AMF or FLV is
// written here.
//
// From sdk, shared with the other sinks that send one video and one audio
// track: the choosing of the tracks (sdk.ChooseTracks; the codecs and the
// preferences are this package's), the start of a Run
// (BroadcastReader.WaitSinkTracks and SubscribeSinkTracks, sdk.Ended to
// tell a broadcast that ended from one that was lost), the parameter sets
// of a decoder configuration (sdk.ParamSets.ConfigSets) and the OBUs of an
// AV1 temporal unit, a keyframe's with the av1C's sequence header
// (sdk.AV1OBUs, sdk.AV1SequenceHeader).
//
// Written here: the codecs and the track preferences, the queue and its
// drop policy, the reconnection loop, the per-connection clock, the URL
// form (internal/rtmpurl: services give rtmp://host/app/KEY, gortmplib
// takes the key as the URL fragment), the redaction of stream keys, and
// one compatibility patch
// (compat.go): ffmpeg 5.1 in -listen mode answers FCPublish with a bare
// "onFCPublish" that gortmplib's Client rejects, so while a plain rtmp://
// connection is set up that reply is rewritten, at the same length, into
// a command the Client skips.
//
// The package must not import other adapters (sources/*, sinks/*) or the
// protocol stack; its tests may.
package rtmp

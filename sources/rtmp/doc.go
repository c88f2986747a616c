// Package rtmp is the RTMP ingest source of moqbridge: an RTMP server that
// OBS, ffmpeg and other encoders publish to, each publish becoming a
// broadcast in the Origin (rtmp://host/live/alice → live/alice).
//
// # What it owns
//
// Server is an sdk.Listener: it accepts TCP connections, and for every
// client that publishes it checks the stream key (Config.Keys), derives
// the broadcast path from Config.PathTemplate over the RTMP application
// and stream key, starts the broadcast through the sdk.Publisher it is
// run with, maps the client's tracks onto sdk.Tracks and writes its
// access units as sdk.Frames until the client disconnects, when the
// broadcast ends. A second publisher on a path this server is already
// publishing (or one another source has live) is refused; so are a wrong
// stream key, a client that wants to play, and a codec the hang catalog
// cannot describe here (MP3, AC-3, FLAC, G.711, LPCM): each is logged with
// the remote address and its connection closed, nothing else affected.
//
// # What gortmplib does and what is written here
//
// github.com/bluenviron/gortmplib does all of RTMP: the handshake, chunk
// streams, AMF0 commands (connect, createStream, publish), FLV tag
// decoding for legacy FLV and Enhanced RTMP (H.264, H.265, AV1, VP9,
// Opus, AAC, multitrack), the track analysis at the start of a publish
// (it reads up to 2 s of media before it reports the tracks) and the
// conversion of every video message into an access unit with its PTS and
// DTS. Nothing of RTMP, AMF or FLV is written here.
//
// Written here: the accept loop, stream-key check and path routing; the
// mapping of gortmplib's tracks to sdk.Tracks (decoder configurations and
// codec strings come from package sdk's helpers; AV1 and VP9, whose
// configuration gortmplib does not hand over, get their track from the
// first keyframe's sequence header or frame header); H.264/H.265 access
// units written as 4-byte length-prefixed NAL units matching the avcC or
// hvcC, without AUDs and parameter sets, keyframes from the NAL unit types
// (mediacommon); AV1 temporal units without temporal delimiters; the broadcast
// clock (clock.go): RTMP's 32-bit millisecond timestamps are unwrapped
// and rebased so that every broadcast starts at 0 and its decode times
// never go backwards, with composition offsets kept; and the limits that
// keep an untrusted client bounded: deadlines on every phase and a budget
// of bytes the client may send before a message completes (gortmplib
// buffers what it analyses).
//
// Not yet (the next steps of issue 11): RTMPS, play clients, a linger
// window in which a returning publisher continues its broadcast (today a
// disconnect ends it), JWT stream keys, parameter sets that change in
// mid-stream (logged and ignored: the track keeps its first decoder
// configuration), pull mode, and cutting gortmplib's 2 s analysis short.
//
// The package must not import other adapters (sources/*, sinks/*); its
// tests may.
package rtmp

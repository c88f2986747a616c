// Package rtmp is the RTMP ingest source of moqbridge: an RTMP server that
// OBS, ffmpeg and other encoders publish to, each publish becoming a
// broadcast in the Origin (rtmp://host/live/alice → live/alice).
//
// # What it owns
//
// Server is an sdk.Listener: it accepts TCP connections (TLS ones, RTMPS,
// with Config.TLS), and for every client that publishes it checks the
// stream key (Config.Keys, Config.KeyRules per path pattern, or
// Config.Authorize, which the CLI wires to the relay's JWT keys), derives
// the broadcast path from Config.PathTemplate over the RTMP application
// and stream key, starts the broadcast through the sdk.Publisher it is
// run with, maps the client's tracks onto sdk.Tracks and writes its
// access units as sdk.Frames. A second publisher on a path this server is
// already publishing (or one another source has live) is refused, or with
// Config.Replace takes over; so are a wrong stream key, a client that
// wants to play, and a codec the hang catalog cannot describe here (MP3,
// AC-3, FLAC, G.711, LPCM): each is logged with the remote address and
// its connection closed, nothing else affected. Config.Route, when set,
// sends each publish to a publisher and path of its own (one listener
// shared by several pipelines, each taking an RTMP application); when the
// route's context ends, its publishers are disconnected.
//
// # Linger: a publisher that drops and returns
//
// A broadcast outlives the connection that feeds it (stream.go): when its
// publisher drops, the broadcast waits Config.Linger (default 5 s) for the
// same stream key to return. The returning publisher's tracks continue
// the earlier ones that describe the same media (codec and decoder
// configuration), so MOQ subscribers stay subscribed and see consecutive
// group sequences; its timestamps (an encoder restarting begins at 0
// again) continue the broadcast's clock one frame on, without a hole for
// the time it was away (see clock.resume). A
// track that changed replaces the earlier one in the catalog. When
// nobody returns, the broadcast ends.
//
// # Start-up
//
// gortmplib reads 2 s of media before it reports the tracks, since RTMP
// does not say how many are coming. Encoders do say it in the onMetaData
// they send first; analysisConn ends the analysis as soon as the tracks
// it announces have their sequence headers (ffmpeg and OBS: at the first
// frame), so the first frame is in the broadcast as soon as it arrives.
// The "rtmp: publishing" log line gives the time the analysis took.
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
// keep untrusted clients bounded: deadlines on every phase, a budget of
// bytes a client may send before a message completes (gortmplib buffers
// what it analyses), and caps on the clients served at once, in all and
// per address. The pull mode (Pull, pull.go) plays a remote stream with
// the same reader, limits and linger-like continuity across reconnections.
//
// Not done: play clients (the relay is where viewers go), and parameter
// sets that change in mid-stream (logged and ignored: the track keeps its
// first decoder configuration).
//
// The package must not import other adapters (sources/*, sinks/*); its
// tests may.
package rtmp

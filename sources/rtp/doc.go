// Package rtp is the RTP ingest source: it reads the media a session
// description (SDP) announces — what ffmpeg, GStreamer, IP cameras and
// broadcast encoders send over RTP/UDP, unicast or multicast, IPv4 or
// IPv6 — and writes it into a broadcast.
//
// # What rtp owns
//
//   - ParseSDP: the session description, parsed with gortsplib's SDP
//     reader and format descriptions, each m= line mapped to an address,
//     an RTCP port and a payload format; unsupported formats and
//     transports are permanent errors naming the media.
//   - Source (New, Config): one UDP socket per media and one for its RTCP,
//     a reorder buffer bounded in time per media, the depacketizing of
//     whole access units with gortsplib's rtph264, rtph265, rtpav1,
//     rtpvp8, rtpvp9, rtpsimpleaudio, rtpmpeg4audio and rtpfragmented
//     decoders, and the mapping of RTP timestamps onto the broadcast
//     clock.
//
// # Loss, reordering and timing
//
// Packets are put back in sequence order by a buffer that waits at most
// Config.ReorderWindow for a missing one (gortsplib's rtpreceiver and
// pion's buffers reorder within a window of packets, not of time). A
// packet still missing then is lost: the access unit it belonged to is
// dropped whole, never passed on damaged, and a video track drops what
// follows until its next keyframe, so that every group starts with one.
// Each drop is counted (Source.Stats).
//
// The buffer holds the first packets for one window too, so that packets
// sent before the first to arrive still start the sequence.
//
// RTP timestamps are unwrapped from 32 bits per sender (SSRC). A stream's
// first packets place it on the broadcast clock at their arrival time;
// its first RTCP sender report then places it by the sender's NTP clock,
// which puts the streams of one sender on one timeline whatever their
// random timestamp bases. A new SSRC on a media (a restarted sender)
// restarts that media's state, and so does a sender that restarts its
// sequence numbers with the same SSRC (ffmpeg with -ssrc). When no packet
// came for Config.Timeout after the first, Run returns an error wrapping
// sdk.ErrInputIdle (the input's end, not a failure); a supervisor that
// runs it again at once (pipelines and serve do) receives a returning
// sender on the same ports.
//
// # Tracks
//
// A media whose SDP carries its configuration (sprop-parameter-sets,
// the AAC config, Opus, G.711) has its track from the start; H.264 and
// H.265 without sprop parameters get theirs from the first parameter sets
// in band, AV1 from its first sequence header, VP8 and VP9 from their
// first keyframe. The tracks are added to the broadcast together, once all
// are known or Config.TrackWait after the first packet, so that a sink
// that starts at the first catalog (a recorder) sees every one; the frames
// of the known ones are kept meanwhile. When a video track is among the
// tracks added together, every frame waits for the first video keyframe,
// and the frames that end before it are dropped (counted as skipped): a
// sender that was already running when the source started would
// otherwise have its audio start up to a keyframe interval before its
// video. Frames are: H.264 and H.265 as 4-byte length-prefixed NAL units
// with an avcC or hvcC (parameter sets and delimiters left out), AV1
// temporal units without temporal delimiters, VP8 and VP9 frames, Opus
// packets, raw AAC access units and G.711 samples (codec strings "ulaw"
// and "alaw", which MP4 recordings do not carry).
//
// # Receiving
//
// Each socket is read by its own goroutine, which takes a datagram all
// the way to the broadcast under the lock of the run's state (on Linux
// with raw recvfrom calls through the socket's poller, as sources/rtmp
// reads TCP); Run's goroutine only keeps the timer of the reorder
// windows and the timeout. RTP datagrams are copied into shared 64 KiB
// blocks rather than one allocation each.
package rtp

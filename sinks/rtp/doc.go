// Package rtp is the RTP egress sink of moqbridge: a Sink that sends a
// broadcast as RTP over UDP, unicast or multicast, IPv4 or IPv6, with the
// session description (SDP) that ffplay, ffmpeg, GStreamer and VLC open.
//
// # What it owns
//
// Sink takes one video and one audio track of the broadcast (see Run) and
// sends each as one RTP stream (RTP/AVP): the video to Config.Dest, the
// audio to its port + 2, the RTCP of each to its port + 1. Payload
// formats: H.264 (packetization mode 1: single NAL units, STAP-A, FU-A),
// H.265, AV1, VP8, VP9, Opus, AAC (mpeg4-generic, AAC-hbr) and G.711.
// Tracks whose codec cannot be sent (AAC without an AudioSpecificConfig,
// Opus with more than two channels, anything else) are skipped with a
// warning; a broadcast with nothing to send is a permanent error
// (sdk.IsPermanent).
//
// Every stream has a random SSRC, initial sequence number and timestamp
// base; its RTP timestamps are the frames' presentation times at the
// format's clock rate, and no datagram is larger than Config.MTU. H.264
// and H.265 keyframes are sent with their parameter sets in band (from
// the track's avcC or hvcC, or their own in Annex B tracks), AV1
// keyframes with a sequence header, so a receiver can start at any
// keyframe. Access unit delimiters and AV1 temporal delimiters are left
// out.
//
// RTCP: a sender report per stream right after its first packet, then
// every second, and a last one with a BYE when the Run ends. The NTP and
// RTP times of every report come from one mapping of media time to wall
// clock shared by the streams and fixed for the Run (skipping frames does
// not move it), so receivers line audio and video up whichever reports
// they take.
//
// The session description is written when Run has its tracks, before the
// first packet: to Config.SDPFile through a temporary file and a rename,
// and to Config.OnSDP. A later Run with the same tracks writes nothing; one
// whose tracks differ writes a new version.
//
// # Pacing and latency
//
// Frames go from the broadcast's reader to one writer goroutine through a
// bounded queue, so the network never holds up the broadcast, its source
// or its other sinks. The writer sends each frame when it is due: at a
// wall-clock anchor plus its decode time minus the anchor's. The packets
// of a frame are spread over half the frame interval, at most 10 ms, so a
// keyframe of a hundred packets is not one burst. A backlog (a relay
// handing over its cached groups at once, or a writer held up) never goes
// out in a burst, and does not keep the sink behind: when the frame to
// send has been more than Config.MaxDelay of media behind the newest frame
// received for 3 s, the writer skips to the latest video keyframe
// received and anchors its schedule there, counting the frames and GOPs
// skipped (Stats). The lag must last because a source that delivers a GOP
// at a time (fragmented MP4 with a fragment per GOP) puts the writer a GOP
// behind at each fragment, which it catches up on by the next. Every Run
// starts at a video keyframe.
// Datagrams the kernel refuses (nobody listening, no route) are counted
// and do not stop the sink: UDP receivers come and go.
//
// # What the libraries do and what is written here
//
// gortsplib's pkg/format/rtp* encoders packetize every payload format,
// and its format types give each its rtpmap and fmtp lines (sprop
// parameter sets, the AAC config); pion/rtp marshals the packets,
// pion/rtcp the reports, pion/sdp/v3 the session description. mediacommon
// splits AV1 temporal units; sdk splits NAL units and follows parameter
// sets.
//
// From sdk, shared with the other sinks that send one video and one audio
// track: the choosing of the tracks (sdk.ChooseTracks; the codecs and the
// preferences are this package's), the start of a Run
// (BroadcastReader.WaitSinkTracks and SubscribeSinkTracks, sdk.Ended to
// tell a broadcast that ended from one that was lost), the parameter sets
// a keyframe is sent with (sdk.ParamSets.ConfigSets) and the OBUs of an
// AV1 temporal unit, a keyframe's with the av1C's sequence header
// (sdk.AV1OBUs, sdk.AV1SequenceHeader).
//
// Written here: the codecs and the track preferences, the payload types,
// the queue and its skipping, the pacing, the shared clock of the
// reports, the SDP's addresses and ports, and the multicast TTL, set with
// a socket option on Linux (golang.org/x/net is not a dependency;
// elsewhere the system default TTL of 1 applies).
//
// The package must not import other adapters (sources/*, sinks/*) or the
// protocol stack; its tests may.
package rtp

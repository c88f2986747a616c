#!/bin/sh
# Regenerates the moqbridge fMP4 source test clips (ffmpeg 5.1, Debian
# bookworm). The outputs are committed, so the tests do not need ffmpeg.
set -eu
cd "$(dirname "$0")"
FF="ffmpeg -hide_banner -loglevel error -nostdin -y"
# ffmpeg 5.1 writes drifting audio tfdt values with frag_every_frame (an audio
# fragment repeats or skips its predecessor's time), so the committed clips are
# cut at keyframes; live input with frag_every_frame is tested in e2e.
LIVE="cmaf+separate_moof+delay_moov+skip_trailer+frag_keyframe"
V="-f lavfi -i testsrc2=size=160x96:rate=30"
A="-f lavfi -i sine=frequency=440:sample_rate=48000"

# H.264 with B-frames + AAC, fragmented at keyframes, 1 s.
$FF $V $A -t 1 -map 0:v -map 1:a \
  -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 15 -keyint_min 15 -sc_threshold 0 -bf 2 -b:v 100k \
  -c:a aac -b:a 32k -ac 1 \
  -f mp4 -movflags "$LIVE" h264_aac_bframes.mp4

# H.264 without B-frames + Opus, fragmented, 1 s.
$FF $V $A -t 1 -map 0:v -map 1:a \
  -c:v libx264 -preset veryfast -tune zerolatency -pix_fmt yuv420p -g 15 -bf 0 -b:v 100k \
  -c:a libopus -b:a 24k -ac 2 \
  -f mp4 -movflags "$LIVE" h264_opus.mp4

# HEVC, fragmented, 1 s, video only.
$FF $V -t 1 -c:v libx265 -preset ultrafast -pix_fmt yuv420p -tag:v hvc1 \
  -x265-params "keyint=15:min-keyint=15:bframes=0:log-level=error" -b:v 100k \
  -f mp4 -movflags "$LIVE" hevc.mp4

# AV1, fragmented, 1 s, video only.
$FF $V -t 1 -c:v libaom-av1 -cpu-used 8 -usage realtime -g 15 -b:v 100k -pix_fmt yuv420p \
  -f mp4 -movflags "$LIVE" av1.mp4

# Progressive (moov after mdat) H.264 with B-frames + AAC, 1 s.
$FF $V $A -t 1 -map 0:v -map 1:a \
  -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 15 -keyint_min 15 -sc_threshold 0 -bf 2 -b:v 100k \
  -c:a aac -b:a 32k -ac 1 \
  -f mp4 progressive.mp4

# VP9, fragmented, 1 s, video only.
$FF $V -t 1 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -g 15 -b:v 100k -pix_fmt yuv420p \
  -f mp4 -movflags "$LIVE" vp9.mp4

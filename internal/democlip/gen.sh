#!/bin/sh
# Regenerates clip.mp4, the demo clip embedded in moqbridge (ffmpeg 5.1,
# Debian bookworm, fonts-dejavu-core). The output is committed, so building
# moqbridge does not need ffmpeg.
#
# 10 s of 640x360 at 30 fps: testsrc2 with a running clock, H.264 High
# without B-frames and a keyframe every second (a group per second, so a
# subscriber starts within a second), and a 440 Hz tone as AAC-LC 48 kHz
# mono. Fragmented MP4 cut at keyframes, which the fMP4 source loops.
set -eu
cd "$(dirname "$0")"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf
ffmpeg -hide_banner -loglevel error -nostdin -y \
  -f lavfi -i "testsrc2=size=640x360:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -t 10 -map 0:v:0 -map 1:a:0 \
  -vf "drawtext=fontfile=$FONT:text='moqbridge demo  %{pts\:hms}':fontsize=28:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8:x=(w-text_w)/2:y=h-text_h-24" \
  -c:v libx264 -preset veryslow -profile:v high -pix_fmt yuv420p \
  -g 30 -keyint_min 30 -sc_threshold 0 -bf 0 -b:v 350k -maxrate 450k -bufsize 700k \
  -c:a aac -b:a 48k -ar 48000 -ac 1 \
  -f mp4 -movflags cmaf+separate_moof+delay_moov+skip_trailer+frag_keyframe \
  clip.mp4

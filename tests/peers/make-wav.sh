#!/usr/bin/env bash
# Decodes an Ogg Opus (or any file GStreamer can decode) to the 48 kHz mono
# 16-bit WAV the peer clients play, with Debian's GStreamer (tests/peers/install.sh gstreamer).
#   tests/peers/make-wav.sh media/test/speaker-a.opus /tmp/a.wav
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 IN OUT.wav" >&2; exit 2; }
gst-launch-1.0 -q filesrc location="$1" ! decodebin ! audioconvert ! audioresample \
  ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! wavenc ! filesink location="$2"

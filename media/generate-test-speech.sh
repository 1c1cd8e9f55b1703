#!/usr/bin/env bash
# Generates the short speech clips the tests send as real Opus (Ogg Opus,
# 48 kHz mono, 20 ms packets). Output is committed; re-run only to change it.
# Needs Debian's espeak-ng, sox and opus-tools.
set -euo pipefail
cd "$(dirname "$0")/test"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
speak() { # name voice text
  espeak-ng -v "$2" -s 160 -w "$tmp/$1-22k.wav" "$3"
  sox "$tmp/$1-22k.wav" -r 48000 -c 1 -b 16 "$tmp/$1.wav"
  opusenc --quiet --bitrate 24 --framesize 20 "$tmp/$1.wav" "$1.opus"
}
speak speaker-a en-us "Hello, this is the first speaker on the call today."
speak speaker-b en-gb+f3 "Good morning, the second speaker is here too."
for f in *.opus; do opusinfo "$f" | grep -E "Playback length|Pre-skip" | sed "s/^/$f: /"; done

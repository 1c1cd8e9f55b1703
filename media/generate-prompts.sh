#!/usr/bin/env bash
# Generates the spoken prompts the bot plays into a call:
#   media/prompts/{en,es,fr,de}/{notice,consent_request,thanks,stopped}.opus
# Ogg Opus, 48 kHz mono, 20 ms packets (the bot sends each packet unchanged
# as one RTP packet, paced every 20 ms). Output is committed; re-run only to
# change it. Re-running with the same tools gives the same bytes (fixed Ogg
# serial numbers). Needs Debian's espeak-ng, sox and opus-tools.
# See media/prompts/README.md for replacing these with studio recordings.
set -euo pipefail

missing=()
for tool in espeak-ng sox opusenc opusinfo; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "error: missing tool(s): ${missing[*]}" >&2
  echo "install with: apt-get install -y espeak-ng sox opus-tools" >&2
  exit 1
fi

out="$(cd "$(dirname "$0")" && pwd)/prompts"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

serial=1000
speak() { # lang voice name text
  local lang=$1 voice=$2 name=$3 text=$4
  mkdir -p "$out/$lang"
  serial=$((serial + 1))
  # espeak-ng writes 22050 Hz only; -b 1: the text is UTF-8.
  espeak-ng -b 1 -v "$voice" -s 175 -w "$tmp/$lang-$name-22k.wav" "$text"
  # 48 kHz mono 16-bit; leading and trailing silence trimmed, then 100 ms of
  # silence after the speech; peak at -3 dBFS. -R: no random dither, so the
  # output is the same on every run.
  sox -R "$tmp/$lang-$name-22k.wav" -r 48000 -c 1 -b 16 "$tmp/$lang-$name.wav" \
    silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse \
    gain -n -3 pad 0 0.1
  opusenc --quiet --bitrate 24 --framesize 20 --downmix-mono --speech \
    --serial "$serial" --title "hearken prompt $lang/$name" \
    "$tmp/$lang-$name.wav" "$out/$lang/$name.opus"
  local length
  length=$(opusinfo "$out/$lang/$name.opus" | sed -n 's/^[[:space:]]*Playback length: //p')
  printf '%-2s %-16s %s\n' "$lang" "$name" "$length"
}

# The product name is respelled where a voice would misread it: Spanish
# "Jarken" and German "Harken" sound like English "Hearken"; the French voice
# switches to English for the word by itself.
# Notices stay under 6 s: they play on join, before capture starts.
speak en en-us notice "This call is being recorded and transcribed by Hearken. If you do not agree, press 9, or leave the call."
speak en en-us consent_request "This call is recorded. To agree, press 1 or say yes. To decline, press 9 or say no."
speak en en-us thanks "Thank you."
speak en en-us stopped "Recording has stopped."

speak es es notice "Jarken graba y transcribe esta llamada. Si no está de acuerdo, pulse el nueve, o abandone la llamada."
speak es es consent_request "Esta llamada se graba. Pulse el uno para aceptar la grabación, o el nueve para rechazarla."
speak es es thanks "Muchas gracias."
speak es es stopped "La grabación se ha detenido."

speak fr fr-fr notice "Cet appel est enregistré et transcrit par Hearken. Si vous n'êtes pas d'accord, appuyez sur neuf, ou quittez l'appel."
speak fr fr-fr consent_request "Cet appel est enregistré. Appuyez sur un pour accepter l'enregistrement, ou sur neuf pour refuser."
speak fr fr-fr thanks "Merci beaucoup."
speak fr fr-fr stopped "L'enregistrement est arrêté."

speak de de notice "Harken zeichnet diesen Anruf auf und transkribiert ihn. Wenn Sie nicht zustimmen, drücken Sie die Neun, oder legen Sie auf."
speak de de consent_request "Dieser Anruf wird aufgezeichnet. Drücken Sie die Eins, wenn Sie zustimmen, oder die Neun, wenn Sie ablehnen."
speak de de thanks "Vielen Dank."
speak de de stopped "Die Aufzeichnung wurde beendet."

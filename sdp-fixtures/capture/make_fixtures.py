#!/usr/bin/env python3
"""Turn raw captured offers (RAWDIR) into sdp-fixtures/ (FIXDIR): copy the .sdp files
byte-for-byte, build the invalid/ inputs, and write one NAME.toml per fixture.

  python3 make_fixtures.py RAWDIR FIXDIR      (stdlib only; called by capture_all.sh)

The .toml expectations are derived mechanically from the offer:
  audio sendonly -> recvonly, audio sendrecv -> sendrecv, audio recvonly -> inactive,
  video/application -> "rejected"; msid_stream_id = stream id of a=msid (omitted if no
  a=msid line or if it is "-"); telephone_event = offer has a telephone-event rtpmap.
"""
import os
import re
import shutil
import sys

RAW, FIX = sys.argv[1], sys.argv[2]
INVALID = os.path.join(FIX, "invalid")
os.makedirs(INVALID, exist_ok=True)

DESCRIPTIONS = {
    "chromium-audio-sendonly": "audio only, sendonly (a WHIP publisher); addTransceiver(track, {direction:'sendonly'}) WITHOUT streams, so Chromium writes 'a=msid:- <track-id>' (no stream id)",
    "chromium-audio-sendonly-stream": "audio only, sendonly, addTransceiver(track, {direction:'sendonly', streams:[stream]}) as tests/e2e/whip-client.html does (a=msid carries a real stream id)",
    "chromium-audio-video-sendonly": "audio sendonly + video sendonly (fake camera), one MediaStream; video must be rejected",
    "chromium-audio-sendrecv": "audio only, sendrecv (the bot may speak back)",
    "chromium-two-audio-sendonly": "two audio transceivers, sendonly, each with its own MediaStream (two speakers in one offer, two different msid stream ids)",
    "aiortc-audio-sendonly": "audio only, sendonly (AudioStreamTrack)",
    "aiortc-audio-video-sendonly": "audio sendonly + video sendonly; video must be rejected",
    "aiortc-two-audio-sendonly": "two audio transceivers, sendonly; aiortc gives BOTH the same msid stream id (one stream id per RTCPeerConnection)",
    "gstreamer-audio-sendonly": "audio only, sendonly, Opus (audiotestsrc ! opusenc ! rtpopuspay ! webrtcbin, bundle-policy=max-bundle)",
    "werift-audio-sendonly": "audio only, sendonly (addTransceiver without streams: no a=msid at all)",
}


def read_version(prefix):
    p = os.path.join(RAW, prefix + "-version.txt")
    with open(p) as f:
        v = f.read().strip()
    if prefix == "chromium":  # "Chromium 156.0.8078.108 built on Debian ..."
        v = " ".join(v.split()[:2])
    return v


def parse(sdp_text):
    """Return a list of dicts, one per m-section."""
    lines = re.split(r"\r?\n", sdp_text)
    sections, cur = [], None
    for line in lines:
        if line.startswith("m="):
            kind, port = line[2:].split()[:2]
            cur = {"kind": kind, "port": port, "mid": None, "dir": "sendrecv",
                   "msid": None, "te": False}
            sections.append(cur)
        elif cur is None:
            continue
        elif line.startswith("a=mid:"):
            cur["mid"] = line[6:].strip()
        elif line in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"):
            cur["dir"] = line[2:]
        elif line.startswith("a=msid:"):
            cur["msid"] = line[7:].split()[0]
        elif re.match(r"a=rtpmap:\d+ telephone-event/", line, re.I):
            cur["te"] = True
    return sections


ANSWER = {"sendonly": "recvonly", "sendrecv": "sendrecv", "recvonly": "inactive", "inactive": "inactive"}


def toml_for(name, sdp_text, impl):
    out = [f'implementation = "{impl}"', f'description = "{DESCRIPTIONS[name]}"']
    msids = [s["msid"] for s in parse(sdp_text) if s["kind"] == "audio" and s["msid"] not in (None, "-")]
    if len(msids) != len(set(msids)):
        out.append("# NOTE: several audio m-lines share one msid stream id; the server must still")
        out.append("# create one participant per audio m-line (e.g. disambiguate with the mid).")
    for s in parse(sdp_text):
        out += ["", "[[mline]]", f'mid = "{s["mid"]}"', f'kind = "{s["kind"]}"',
                f'offered_direction = "{s["dir"]}"']
        exp = ANSWER[s["dir"]] if s["kind"] == "audio" else "rejected"
        out.append(f'expect_answer_direction = "{exp}"')
        if s["msid"] == "-":
            out.append('# offer has "a=msid:- <track>": no stream id -> participant id = {session}-{mid}')
        elif s["msid"] is None:
            out.append("# no a=msid line in this m-section -> participant id = {session}-{mid}")
        else:
            out.append(f'msid_stream_id = "{s["msid"]}"')
        out.append(f'telephone_event = {"true" if s["te"] else "false"}')
    return "\n".join(out) + "\n"


# 1. valid fixtures
for name in DESCRIPTIONS:
    src = os.path.join(RAW, name + ".sdp")
    if name.startswith("werift") and not os.path.exists(src):
        print("skipping", name, "(werift not captured)")
        continue
    shutil.copyfile(src, os.path.join(FIX, name + ".sdp"))
    with open(src, "rb") as f:
        text = f.read().decode()
    with open(os.path.join(FIX, name + ".toml"), "w") as f:
        f.write(toml_for(name, text, read_version(name.split("-")[0])))
    print("fixture", name)

# 2. invalid inputs
shutil.copyfile(os.path.join(RAW, "invalid-video-only.sdp"), os.path.join(INVALID, "video-only.sdp"))

with open(os.path.join(RAW, "chromium-audio-sendonly-stream.sdp"), "rb") as f:
    src = f.read().decode()
eol = "\r\n" if "\r\n" in src else "\n"
keep_pts = {"0", "126"}  # PCMU/8000 + telephone-event/8000 only: no Opus
out = []
for line in src.split(eol):
    if line.startswith("m=audio "):
        head = line.split()[:3]
        fmts = [pt for pt in line.split()[3:] if pt in keep_pts]
        line = " ".join(head + fmts)
    m = re.match(r"a=(rtpmap|fmtp|rtcp-fb):(\d+) ", line)
    if m and m.group(2) not in keep_pts:
        continue
    out.append(line)
with open(os.path.join(INVALID, "audio-without-opus.sdp"), "wb") as f:
    f.write(eol.join(out).encode())

with open(os.path.join(INVALID, "not-sdp.txt"), "wb") as f:
    f.write(b"hello, this is not an SDP offer\r\n{\"type\":\"offer\",\"sdp\":42}\r\n\x00\x01garbage=\r\n")

with open(os.path.join(INVALID, "expected.toml"), "w") as f:
    f.write(
        '# expected HTTP status for POST /whip/{call_id} with each file as the body\n'
        '# (Content-Type: application/sdp, valid bearer token)\n'
        '[files."not-sdp.txt"]\nstatus = 400\nreason = "unparseable SDP"\n\n'
        '[files."video-only.sdp"]\nstatus = 422\nreason = "no usable audio"\n'
        f'implementation = "{read_version("chromium")}"\n\n'
        '[files."audio-without-opus.sdp"]\nstatus = 422\nreason = "no usable audio"\n'
        'edited = "chromium-audio-sendonly-stream.sdp with every payload type except PCMU (0) and telephone-event/8000 (126) removed"\n'
    )
print("invalid inputs written")

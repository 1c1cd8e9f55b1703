#!/usr/bin/env python3
"""Capture aiortc SDP offers (audio sendonly; audio+video sendonly; two audio sendonly).

Usage (inside a loopback-only netns, with a venv that has `pip install aiortc`):
  unshare -n bash -c 'ip link set lo up; /work/venv-aiortc/bin/python capture_aiortc.py OUTDIR'

Writes OUTDIR/aiortc-*.sdp byte-for-byte and OUTDIR/aiortc-version.txt.
"""
import asyncio
import os
import sys
from importlib.metadata import version

import aioice.ice

# aioice drops 127.0.0.1 from host candidates; in a lo-only netns that leaves none.
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]

from aiortc import (  # noqa: E402
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    VideoStreamTrack,
)

OUT = sys.argv[1] if len(sys.argv) > 1 else "."


async def capture(name, with_video, audio_count=1):
    # iceServers=[]: aiortc otherwise defaults to Google STUN
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for _ in range(audio_count):
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    if with_video:
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    # aiortc gathers all candidates inside setLocalDescription (no trickle)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    path = os.path.join(OUT, name + ".sdp")
    with open(path, "wb") as f:
        f.write(sdp.encode())
    print(f"wrote {path} ({len(sdp)} bytes)")
    await pc.close()


async def main():
    os.makedirs(OUT, exist_ok=True)
    await capture("aiortc-audio-sendonly", False)
    await capture("aiortc-audio-video-sendonly", True)
    # aiortc uses ONE msid stream id per RTCPeerConnection, so both m-lines share it
    await capture("aiortc-two-audio-sendonly", False, audio_count=2)
    with open(os.path.join(OUT, "aiortc-version.txt"), "w") as f:
        f.write(
            f"aiortc {version('aiortc')} (aioice {version('aioice')}, av {version('av')}, "
            f"Python {sys.version.split()[0]})\n"
        )


asyncio.run(main())

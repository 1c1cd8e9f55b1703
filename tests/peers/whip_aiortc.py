#!/usr/bin/env python3
"""WHIP client on aiortc (PyPI; installed by tests/peers/install.sh into a venv).

  $HEARKEN_PEERS_VENV/bin/python tests/peers/whip_aiortc.py \
      --whip http://127.0.0.1:8080/whip/call-1 --token TOKEN --mode session|gateway \
      --audio a.wav [--audio2 b.wav] --seconds 8 --out DIR [--location DE]

Each audio m-line is a sendrecv transceiver whose track plays a WAV file in real
time (looped); what the server sends back on it is decoded and written to
DIR/received-<mid>.wav. Prints one JSON object on the last stdout line.

aiortc notes: iceServers=[] (it defaults to Google STUN otherwise); aioice drops
127.0.0.1 from its host candidates, so it is added back (needed in a
loopback-only network namespace); aiortc gives every sender of a
PeerConnection the same msid stream id, so each sender gets its own here.
"""

import asyncio
import fractions
import os
import sys
import time
from importlib.metadata import version

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peerlib  # noqa: E402
from peerlib import RATE, Result, Whip, WavSink, log  # noqa: E402

import aioice.ice  # noqa: E402

_orig_get_host_addresses = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4=True, use_ipv6=False):
    addrs = list(_orig_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    if use_ipv4 and "127.0.0.1" not in addrs:
        addrs.append("127.0.0.1")
    return addrs


aioice.ice.get_host_addresses = _host_addresses

from av import AudioFrame  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError  # noqa: E402

FRAME = RATE // 50  # 20 ms


class WavTrack(MediaStreamTrack):
    """Plays a mono 48 kHz int16 array in real time, looping, 20 ms a frame."""

    kind = "audio"

    def __init__(self, samples):
        super().__init__()
        self.samples = samples
        self.pos = 0
        self.sent_frames = 0
        self._start = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + (self.sent_frames * FRAME) / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        chunk = self.samples[self.pos:self.pos + FRAME]
        self.pos += FRAME
        if len(chunk) < FRAME:
            rest = FRAME - len(chunk)
            chunk = chunk + self.samples[:rest]
            self.pos = rest
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk.tobytes())
        frame.pts = self.sent_frames * FRAME
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        self.sent_frames += 1
        return frame


async def consume(track, sink, counters):
    """Decodes what the server sends on one m-line into its WAV."""
    import array
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        counters["frames"] += 1
        raw = array.array("h", bytes(frame.planes[0]))
        ch = len(frame.layout.channels)
        mono = raw[::ch] if ch > 1 else raw
        if frame.sample_rate != RATE:
            # aiortc's Opus decoder gives 48 kHz; anything else is unexpected
            counters["bad_rate"] = frame.sample_rate
        sink.write(mono[: frame.samples])


async def run(args, result, state):
    whip = Whip(args.whip, args.token)
    state["whip"] = whip
    files = [args.audio] + ([args.audio2] if args.mode == "gateway" else [])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    state["pc"] = pc
    connected = asyncio.Event()
    failed = asyncio.Event()

    @pc.on("connectionstatechange")
    def _on_state():
        log("connectionState", pc.connectionState, "iceConnectionState", pc.iceConnectionState)
        if pc.connectionState == "connected":
            connected.set()
        elif pc.connectionState in ("failed", "closed"):
            failed.set()

    wanted_ids = [args.stream_id, args.stream_id2]
    tracks = []
    for i, f in enumerate(files):
        track = WavTrack(peerlib.read_wav_mono48k(f))
        tr = pc.addTransceiver(track, direction="sendrecv")
        # one stream id per m-line (aiortc would use one per PeerConnection)
        tr.sender._stream_id = wanted_ids[i] or peerlib.new_stream_id(f"aiortc-{'ab'[i]}")
        tracks.append((tr, track, f))

    await pc.setLocalDescription(await pc.createOffer())  # gathers all candidates
    offer = pc.localDescription.sdp
    result.mark("offer")
    mlines = peerlib.audio_mlines(offer)
    log("offer", len(offer), "bytes, audio m-lines", mlines)
    sinks = []
    for n, (tr, track, f) in enumerate(tracks):
        sink = WavSink(os.path.join(args.out, f"received-{tr.mid}.wav"))
        sinks.append([tr, track, f, sink, {"frames": 0}, None, mlines[n]])
    state["sinks"] = sinks
    if args.location:
        for m in mlines:
            whip.put_participant(m["stream_id"], args.location)
    answer = await asyncio.to_thread(whip.post_offer, offer)
    result.d["session_url"] = whip.session_url
    result.mark("answer")
    log("POST 201, session", whip.session_url)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    # the remote tracks exist from setRemoteDescription on
    for entry in sinks:
        tr, sink, counters = entry[0], entry[3], entry[4]
        if tr.receiver.track is None:
            raise RuntimeError(f"no remote track on mid {tr.mid} (answer direction?)")
        entry[5] = asyncio.ensure_future(consume(tr.receiver.track, sink, counters))


    done, _ = await asyncio.wait(
        [asyncio.ensure_future(connected.wait()), asyncio.ensure_future(failed.wait())],
        timeout=max(1.0, args.timeout - (time.monotonic() - result.t0)),
        return_when=asyncio.FIRST_COMPLETED,
    )
    if not connected.is_set():
        raise RuntimeError(
            f"not connected (connectionState {pc.connectionState}, "
            f"iceConnectionState {pc.iceConnectionState}) within the {args.timeout:.0f} s setup timeout")
    result.d["connected"] = True
    result.mark("connected")
    log("connected; sending for", args.seconds, "s")

    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))
        if pc.connectionState != "connected":
            raise RuntimeError(f"connection lost while sending: {pc.connectionState}")
    result.mark("sent")


async def finish(args, result, state):
    """Stats, DELETE, close, WAVs: runs after success and after failure."""
    pc, whip = state.get("pc"), state.get("whip")
    for tr, track, f, sink, counters, task, m in state.get("sinks", []):
        entry = {"mid": tr.mid, "stream_id": m["stream_id"], "audio_file": os.path.abspath(f),
                 "sent_packets": None, "sent_seconds": round(track.sent_frames * 0.02, 2),
                 "received_packets": None, "received_frames": counters["frames"]}
        try:
            for s in (await tr.sender.getStats()).values():
                if s.type == "outbound-rtp":
                    entry["sent_packets"] = s.packetsSent
            for s in (await tr.receiver.getStats()).values():
                if s.type == "inbound-rtp":
                    entry["received_packets"] = (entry["received_packets"] or 0) + s.packetsReceived
        except Exception as e:  # noqa: BLE001
            log("getStats failed:", e)
        if entry["received_packets"] is None:
            entry["received_packets"] = 0
        state.setdefault("entries", []).append((entry, sink, task))
    if whip is not None and whip.session_url:
        try:
            result.d["delete_status"] = await asyncio.wait_for(asyncio.to_thread(whip.delete), 35)
            log("DELETE", result.d["delete_status"])
        except Exception as e:  # noqa: BLE001
            result.fail(f"DELETE failed: {e}")
    if pc is not None:
        try:
            await asyncio.wait_for(pc.close(), 5)
        except Exception as e:  # noqa: BLE001
            log("close failed:", e)
    for entry, sink, task in state.get("entries", []):
        if task is not None:
            task.cancel()
        sink.close()
        entry.update(sink.stats())
        result.d["tracks"].append(entry)


def main():
    args = peerlib.parse_args("whip_aiortc.py")
    result = Result("aiortc", args.mode)
    result.d["version"] = f"aiortc {version('aiortc')} (aioice {version('aioice')}, av {version('av')})"
    state = {}
    # setup timeout + sending + teardown; past it we print the error and exit 1
    peerlib.watchdog(result, args.timeout + args.seconds + 45)

    async def go():
        try:
            await asyncio.wait_for(run(args, result, state), args.timeout + args.seconds + 5)
        except asyncio.TimeoutError:
            result.fail("timed out")
        except Exception as e:  # noqa: BLE001
            result.fail(f"{type(e).__name__}: {e}")
        finally:
            await finish(args, result, state)

    asyncio.run(go())
    code = result.emit()
    sys.exit(code)


if __name__ == "__main__":
    main()

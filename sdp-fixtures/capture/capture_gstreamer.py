#!/usr/bin/python3
"""Capture a GStreamer webrtcbin SDP offer: one Opus audio stream, sendonly.

Needs Debian packages: gstreamer1.0-plugins-{base,good,bad} gstreamer1.0-nice
python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0
gir1.2-nice-0.1 (libnice skips loopback interfaces; we add 127.0.0.1 by hand).
Use Debian's /usr/bin/python3 (python3-gi is not in a pyenv/venv python).

  unshare -n bash -c 'ip link set lo up; /usr/bin/python3 capture_gstreamer.py OUTDIR'

Writes OUTDIR/gstreamer-audio-sendonly.sdp (the local description after ICE gathering
completed, i.e. with candidates, as webrtcbin serialises it) and OUTDIR/gstreamer-version.txt.
"""
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstWebRTC, Nice  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else "."
NAME = "gstreamer-audio-sendonly"
Gst.init(None)

pipe = Gst.parse_launch(
    "webrtcbin name=wb bundle-policy=max-bundle "
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! "
    "audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay pt=111 ! "
    "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111 ! wb."
)
wb = pipe.get_by_name("wb")
# libnice never gathers loopback addresses on its own, and a lo-only netns has nothing
# else, so gathering would hang in "gathering" forever. Give the NiceAgent 127.0.0.1.
_addr = Nice.Address.new()
_addr.set_from_string("127.0.0.1")
ICE = wb.get_property("ice-agent")  # keep the Python wrapper alive (PyGObject ref quirk)
AGENT = ICE.get_property("agent")
AGENT.add_local_address(_addr)
loop = GLib.MainLoop()
state = {"offered": False, "written": False}


def write_offer():
    if state["written"]:
        return False
    desc = wb.get_property("local-description")
    if desc is None:
        print("no local description", flush=True)
        loop.quit()
        return False
    sdp = desc.sdp.as_text()
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, NAME + ".sdp")
    with open(path, "wb") as f:
        f.write(sdp.encode())
    with open(os.path.join(OUT, "gstreamer-version.txt"), "w") as f:
        nice = Gst.Registry.get().find_plugin("nice")
        f.write(f"GStreamer webrtcbin {Gst.version_string().split()[-1]}"
                f" (libnice plugin {nice.get_version() if nice else '?'})\n")
    print(f"wrote {path} ({len(sdp)} bytes)", flush=True)
    state["written"] = True
    loop.quit()
    return False


def on_gathering(obj, _pspec):
    st = wb.get_property("ice-gathering-state")
    print("ice-gathering-state", st.value_nick, flush=True)
    if st == GstWebRTC.WebRTCICEGatheringState.COMPLETE and state["offered"]:
        GLib.idle_add(write_offer)


def on_offer(promise, _):
    promise.wait()
    reply = promise.get_reply()
    offer = reply.get_value("offer") if reply is not None else None
    if offer is None:
        print("create-offer failed:", reply.to_string() if reply else None, flush=True)
        loop.quit()
        return
    state["offered"] = True
    wb.emit("set-local-description", offer, Gst.Promise.new())
    if wb.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
        GLib.idle_add(write_offer)


def on_negotiation_needed(_wb):
    # the pad-created transceiver defaults to sendrecv; a WHIP publisher is sendonly
    for i in range(8):
        t = wb.emit("get-transceiver", i)
        if t is None:
            break
        t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
    wb.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))


wb.connect("on-negotiation-needed", on_negotiation_needed)
wb.connect("notify::ice-gathering-state", on_gathering)
wb.connect("on-ice-candidate", lambda _w, mline, cand: print("candidate", mline, cand, flush=True))
pipe.set_state(Gst.State.PLAYING)
def on_timeout():
    print("timeout (10 s): writing whatever local description exists", flush=True)
    write_offer()
    loop.quit()
    return False


GLib.timeout_add_seconds(10, on_timeout)
loop.run()
pipe.set_state(Gst.State.NULL)

#!/usr/bin/python3
"""WHIP client on GStreamer webrtcbin (Debian's GStreamer 1.22 + python3-gi).

  /usr/bin/python3 tests/peers/whip_gstreamer.py \
      --whip http://127.0.0.1:8080/whip/call-1 --token TOKEN --mode session|gateway \
      --audio a.wav [--audio2 b.wav] --seconds 8 --out DIR [--location DE]

Run it with Debian's /usr/bin/python3: python3-gi is not in a venv or pyenv python.
Per audio m-line: appsrc (the WAV, looped, pushed in real time once connected)
! audioconvert ! opusenc ! rtpopuspay ! webrtcbin sink pad (its own msid), the
transceiver sendrecv. What the server sends back arrives on a webrtcbin src pad
(rtpopusdepay ! opusdec ! appsink) and is written to DIR/received-<mid>.wav.
Prints one JSON object on the last stdout line.

libnice does not gather loopback addresses; when the WHIP URL's host is a
loopback address, 127.0.0.1 is given to the ICE agent by hand.
"""

import array
import ipaddress
import random
import re
import os
import socket
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peerlib  # noqa: E402
from peerlib import RATE, Result, Whip, WavSink, log  # noqa: E402

import gi  # noqa: E402

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstApp, GstSdp, GstWebRTC, Nice  # noqa: E402,F401

FRAME = RATE // 50
GATHER_CAP_S = 3.0
# encoding-params=2: the offer must say opus/48000/2 (RFC 7587); without it webrtcbin writes OPUS/48000
OPUS_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111,encoding-params=(string)2"


def is_loopback_url(url):
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        return all(ipaddress.ip_address(ai[4][0]).is_loopback
                   for ai in socket.getaddrinfo(host, None, socket.AF_INET))
    except Exception:  # noqa: BLE001
        return host in ("localhost",)


def ecdsa_pem():
    """A self-signed ECDSA P-256 certificate + key (PEM) made with the openssl CLI, and
    the certificate's SHA-256 fingerprint as SDP writes it."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "30",
                        "-subj", "/CN=webrtcbin"], check=True, capture_output=True)
        fp = subprocess.run(["openssl", "x509", "-in", f"{d}/cert.pem", "-noout", "-fingerprint", "-sha256"],
                            check=True, capture_output=True, text=True).stdout
        fp = fp.strip().split("=", 1)[1].upper()
        return open(f"{d}/cert.pem").read() + open(f"{d}/key.pem").read(), fp


class Track:
    def __init__(self, index, path, samples, stream_id):
        self.index = index
        self.path = path
        self.samples = samples
        self.stream_id = stream_id
        self.pos = 0
        self.pushed = 0
        self.appsrc = None
        self.pad = None
        self.transceiver = None
        self.mid = None


class Client:
    def __init__(self, args):
        self.args = args
        self.result = Result("gstreamer-webrtcbin", args.mode)
        nice = Gst.Registry.get().find_plugin("nice")
        self.result.d["version"] = (f"GStreamer webrtcbin {Gst.version_string().split()[-1]} "
                                    f"(libnice plugin {nice.get_version() if nice else '?'})")
        self.whip = Whip(args.whip, args.token)
        self.loop = GLib.MainLoop()
        self.tracks = []
        self.sinks = {}      # mid -> WavSink
        self.rx_packets = {}  # mid -> RTP packets seen on the webrtcbin src pad
        self.offer_sent = False
        self.connected = False
        self.sending_until = None
        self.finished = False
        self.errors = []

        files = [args.audio] + ([args.audio2] if args.mode == "gateway" else [])
        ids = [args.stream_id, args.stream_id2]
        self.pipe = Gst.Pipeline.new("whip")
        self.wb = Gst.ElementFactory.make("webrtcbin", "wb")
        self.wb.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.wb)
        if is_loopback_url(args.whip):
            addr = Nice.Address.new()
            addr.set_from_string("127.0.0.1")
            self._ice = self.wb.get_property("ice-agent")  # keep the wrapper alive
            self._agent = self._ice.get_property("agent")
            self._agent.add_local_address(addr)
        for i, f in enumerate(files):
            t = Track(i, f, peerlib.read_wav_mono48k(f), ids[i] or peerlib.new_stream_id(f"gst-{'ab'[i]}"))
            self._add_branch(t)
            self.tracks.append(t)

        if args.ecdsa_cert:
            self.pem, self.fingerprint = ecdsa_pem()
            self.wb.connect("deep-element-added", self.on_deep_element_added)
        self.wb.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.wb.connect("notify::ice-gathering-state", self.on_gathering)
        self.wb.connect("notify::connection-state", self.on_state)
        self.wb.connect("notify::ice-connection-state", self.on_state)
        self.wb.connect("pad-added", self.on_pad_added)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_bus_error)
        bus.connect("message::warning", self.on_bus_warning)

    # ------------------------------------------------------------ pipeline
    def _add_branch(self, t):
        src = Gst.ElementFactory.make("appsrc", f"src{t.index}")
        src.set_property("caps", Gst.Caps.from_string(
            f"audio/x-raw,format=S16LE,rate={RATE},channels=1,layout=interleaved"))
        src.set_property("format", Gst.Format.TIME)
        src.set_property("is-live", True)
        src.set_property("do-timestamp", False)
        conv = Gst.ElementFactory.make("audioconvert")
        enc = Gst.ElementFactory.make("opusenc")
        enc.set_property("bitrate", 32000)
        # a fixed SSRC, known before any data flows, so the offer carries a=ssrc lines
        # (webrtcbin 1.22 offers no mid header extension: the SSRC is how the answerer
        # tells the m-lines' packets apart)
        t.ssrc = random.randint(1, 2**32 - 1)
        rtp_caps = f"{OPUS_CAPS},ssrc=(uint){t.ssrc}"
        pay = Gst.ElementFactory.make("rtpopuspay")
        pay.set_property("pt", 111)
        pay.set_property("ssrc", t.ssrc)
        caps = Gst.ElementFactory.make("capsfilter")
        caps.set_property("caps", Gst.Caps.from_string(rtp_caps))
        for e in (src, conv, enc, pay, caps):
            self.pipe.add(e)
        src.link(conv)
        conv.link(enc)
        enc.link(pay)
        pay.link(caps)
        pad = self.wb.request_pad_simple("sink_%u")
        pad.set_property("msid", t.stream_id)
        caps.get_static_pad("src").link(pad)
        tr = pad.get_property("transceiver")
        tr.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDRECV)
        tr.set_property("codec-preferences", Gst.Caps.from_string(rtp_caps))
        t.appsrc, t.pad, t.transceiver = src, pad, tr

    def own_certificate(self):
        """The key of the certificate webrtcbin's DTLS presented, as the
        openssl CLI describes it (e.g. "rsaEncryption 2048 bit")."""
        it = self.wb.iterate_recurse()
        while True:
            ok, element = it.next()
            if ok != Gst.IteratorResult.OK:
                return None
            f = element.get_factory()
            if f is None or f.get_name() != "dtlssrtpdec":
                continue
            pem = element.get_property("pem") or ""
            cert = pem[pem.find("-----BEGIN CERTIFICATE-----"):]
            text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=cert,
                                  capture_output=True, text=True).stdout
            alg = re.search(r"Public Key Algorithm: (\S+)", text)
            bits = re.search(r"Public-Key: \((\d+) bit\)", text)
            return " ".join(m.group(1) for m in (alg, bits) if m) + (" bit" if bits else "")

    def on_deep_element_added(self, _bin, _sub, element):
        f = element.get_factory()
        if f is not None and f.get_name() == "dtlssrtpdec":
            element.set_property("pem", self.pem)
            log("DTLS certificate: ECDSA P-256 (--ecdsa-cert) on", element.get_name())

    def on_bus_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        name = msg.src.get_name() if msg.src else "?"
        detail = (dbg or "").strip().splitlines()[-1:] or [""]
        text = f"{name}: {err.message} {detail[0]}".strip()
        log("GStreamer error:", text, dbg or "")
        self.errors.append(text)
        if name.startswith("dtls"):
            cert = "ECDSA (--ecdsa-cert)" if self.args.ecdsa_cert else "webrtcbin's default RSA"
            self.fail(f"DTLS handshake failed ({text}); our certificate: {cert}")
        else:
            self.fail(f"GStreamer error: {text}")

    def on_bus_warning(self, _bus, msg):
        w, dbg = msg.parse_warning()
        log("GStreamer warning:", msg.src.get_name() if msg.src else "?", w.message)

    # ------------------------------------------------------------ negotiation
    def on_negotiation_needed(self, _wb):
        if self.offer_sent:
            return
        self.offer_sent = True
        log("negotiation needed: creating the offer")
        self.wb.emit("create-offer", None, Gst.Promise.new_with_change_func(self.on_offer, None))

    def on_offer(self, promise, _data):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            GLib.idle_add(self.fail, f"create-offer failed: {reply.to_string() if reply else None}")
            return
        self.wb.emit("set-local-description", offer, Gst.Promise.new())
        self.result.mark("offer")
        GLib.timeout_add(int(GATHER_CAP_S * 1000), self.post_offer)  # cap on gathering

    def on_gathering(self, *_):
        st = self.wb.get_property("ice-gathering-state")
        log("ice-gathering-state", st.value_nick)
        if st == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post_offer)

    def post_offer(self):
        if self.whip.session_url or self.finished or getattr(self, "_posting", False):
            return False
        desc = self.wb.get_property("local-description")
        if desc is None:
            return False
        self._posting = True
        try:
            offer = desc.sdp.as_text()
            # webrtcbin 1.22 puts the pad's msid only on a=ssrc lines, and the server
            # reads the participant id from there. --add-msid also writes a=msid.
            sdp = offer
            if self.args.add_msid:
                sdp = peerlib.set_stream_ids(offer, [t.stream_id for t in self.tracks])
            if self.args.ecdsa_cert:
                # webrtcbin computed a=fingerprint from its RSA certificate before the
                # ECDSA one replaced it on dtlssrtpdec: announce the one DTLS will present
                sdp = re.sub(r"(?m)^a=fingerprint:sha-256 [0-9A-Fa-f:]+",
                             "a=fingerprint:sha-256 " + self.fingerprint, sdp)
            mlines = peerlib.audio_mlines(sdp)
            for t, m in zip(self.tracks, mlines):
                t.mid = m["mid"]
            log("offer", len(sdp), "bytes, audio m-lines", mlines)
            if self.args.location:
                for t in self.tracks:
                    self.whip.put_participant(t.stream_id, self.args.location)
            answer = self.whip.post_offer(sdp)
            self.result.d["session_url"] = self.whip.session_url
            self.result.mark("answer")
            log("POST 201, session", self.whip.session_url)
            res, msg = GstSdp.SDPMessage.new_from_text(answer)
            if res != GstSdp.SDPResult.OK:
                raise RuntimeError("cannot parse the answer SDP")
            ans = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
            self.wb.emit("set-remote-description", ans, Gst.Promise.new())
        except Exception as e:  # noqa: BLE001
            self.fail(f"{type(e).__name__}: {e}")
        return False

    def on_state(self, *_):
        pcs = self.wb.get_property("connection-state")
        ice = self.wb.get_property("ice-connection-state")
        log("connection-state", pcs.value_nick, "ice-connection-state", ice.value_nick)
        if pcs == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and not self.connected:
            GLib.idle_add(self.on_connected)
        elif pcs == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            GLib.idle_add(self.fail, f"connection-state failed (ice-connection-state {ice.value_nick})")

    def on_connected(self):
        if self.connected or self.finished:
            return False
        self.connected = True
        self.result.d["connected"] = True
        self.result.d["dtls_certificate"] = self.own_certificate()
        self.result.mark("connected")
        log("connected; sending for", self.args.seconds, "s")
        self.t_start = time.monotonic()
        self.sending_until = self.t_start + self.args.seconds
        clock = self.pipe.get_clock()
        self.rt_base = clock.get_time() - self.pipe.get_base_time()
        GLib.timeout_add(10, self.push_audio)
        return False

    def push_audio(self):
        if self.finished:
            return False
        now = time.monotonic()
        elapsed = min(now, self.sending_until) - self.t_start
        due = int(elapsed * 50) + 1
        for t in self.tracks:
            while t.pushed < due and t.pushed < int(self.args.seconds * 50):
                chunk = t.samples[t.pos:t.pos + FRAME]
                t.pos += FRAME
                if len(chunk) < FRAME:
                    rest = FRAME - len(chunk)
                    chunk = chunk + t.samples[:rest]
                    t.pos = rest
                buf = Gst.Buffer.new_wrapped(chunk.tobytes())
                buf.pts = self.rt_base + t.pushed * 20 * Gst.MSECOND
                buf.duration = 20 * Gst.MSECOND
                t.appsrc.emit("push-buffer", buf)
                t.pushed += 1
        if self.wb.get_property("connection-state") != GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            self.fail("connection lost while sending: "
                      + self.wb.get_property("connection-state").value_nick)
            return False
        if now >= self.sending_until:
            self.result.mark("sent")
            GLib.timeout_add(200, self.finish)  # let the last packets leave
            return False
        return True

    # ------------------------------------------------------------ receiving
    def on_pad_added(self, _wb, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        tr = pad.get_property("transceiver")
        mid = tr.get_property("mid") if tr else None
        mid = mid or f"pad-{pad.get_name()}"
        log("receiving on", pad.get_name(), "mid", mid, "remote msid", pad.get_property("msid"))
        self.rx_packets.setdefault(mid, 0)

        def count(_pad, info):
            if info.type & Gst.PadProbeType.BUFFER_LIST:
                self.rx_packets[mid] += info.get_buffer_list().length()
            else:
                self.rx_packets[mid] += 1
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, count)
        sink = WavSink(os.path.join(self.args.out, f"received-{mid}.wav"))
        self.sinks[mid] = sink
        bin_ = Gst.parse_bin_from_description(
            "queue ! rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample ! "
            f"audio/x-raw,format=S16LE,channels=1,rate={RATE} ! "
            "appsink name=rx emit-signals=true sync=false", True)
        self.pipe.add(bin_)
        appsink = bin_.get_by_name("rx")

        def on_sample(s):
            sample = s.emit("pull-sample")
            buf = sample.get_buffer()
            ok, info = buf.map(Gst.MapFlags.READ)
            if ok:
                a = array.array("h")
                a.frombytes(bytes(info.data))
                buf.unmap(info)
                sink.write(a)
            return Gst.FlowReturn.OK

        appsink.connect("new-sample", on_sample)
        bin_.sync_state_with_parent()
        pad.link(bin_.get_static_pad("sink"))

    # ------------------------------------------------------------ end
    def fail(self, msg):
        self.result.fail(msg)
        log("error:", msg)
        GLib.idle_add(self.finish)
        return False

    def finish(self):
        if self.finished:
            return False
        self.finished = True
        status = self.whip.delete() if self.whip.session_url else None
        self.result.d["delete_status"] = status
        log("DELETE", status)
        self.pipe.set_state(Gst.State.NULL)
        for t in self.tracks:
            mid = t.mid or (t.transceiver.get_property("mid") if t.transceiver else None)
            entry = {"mid": mid, "stream_id": t.stream_id, "audio_file": os.path.abspath(t.path),
                     "sent_packets": t.pushed, "sent_seconds": round(t.pushed * 0.02, 2),
                     "received_packets": self.rx_packets.get(mid, 0)}
            sink = self.sinks.get(mid)
            if sink is None:
                sink = WavSink(os.path.join(self.args.out, f"received-{mid}.wav"))
            sink.close()
            entry.update(sink.stats())
            self.result.d["tracks"].append(entry)
        self.loop.quit()
        return False

    def setup_timeout(self):
        if not self.connected and not self.finished:
            pcs = self.wb.get_property("connection-state").value_nick
            ice = self.wb.get_property("ice-connection-state").value_nick
            self.fail(f"not connected within the {self.args.timeout:.0f} s setup timeout "
                      f"(connection-state {pcs}, ice-connection-state {ice}"
                      + (f"; errors: {'; '.join(self.errors)}" if self.errors else "") + ")")
        return False

    def run(self):
        peerlib.watchdog(self.result, self.args.timeout + self.args.seconds + 45,
                         cleanup=lambda: self.whip.delete())
        GLib.timeout_add(int(self.args.timeout * 1000), self.setup_timeout)
        self.pipe.set_state(Gst.State.PLAYING)
        self.loop.run()
        return self.result.emit()


def main():
    def extra(p):
        p.add_argument("--add-msid", action="store_true",
                       help="also write a=msid lines (webrtcbin 1.22 writes the stream id only on a=ssrc lines)")
        p.add_argument("--ecdsa-cert", action="store_true",
                       help="give webrtcbin an ECDSA P-256 DTLS certificate instead of its default RSA one "
                            "(a workaround for DTLS peers that accept only ECDSA, e.g. str0m 0.25)")

    args = peerlib.parse_args("whip_gstreamer.py", extra)
    Gst.init(None)
    sys.exit(Client(args).run())


if __name__ == "__main__":
    main()

"""Shared pieces of the Python WHIP peer clients (stdlib only).

Used by whip_aiortc.py (venv python), whip_gstreamer.py (Debian's
/usr/bin/python3, for python3-gi) and whip_browser.py. Every client has the
same command line and prints one JSON object as the last line of stdout.
"""

import argparse
import array
import json
import math
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import wave

RATE = 48000


def parse_args(name, extra=None):
    p = argparse.ArgumentParser(
        prog=name,
        description="WHIP (RFC 9725) client for Hearken interop tests. Prints one JSON "
        "object (the result) as the last line of stdout; exit 0 only on success.",
    )
    p.add_argument("--whip", required=True, help="WHIP endpoint, e.g. http://127.0.0.1:8080/whip/call-1")
    p.add_argument("--token", default=None, help="bearer token")
    p.add_argument("--mode", choices=["session", "gateway"], default="session",
                   help="session: one audio m-line; gateway: two audio m-lines (two speakers) on one PeerConnection")
    p.add_argument("--audio", required=True, help="speech WAV for the first m-line (48 kHz mono 16-bit recommended)")
    p.add_argument("--audio2", default=None, help="speech WAV for the second m-line (gateway; default: --audio)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds to send once connected (default 5)")
    p.add_argument("--out", default=".", help="directory for received-<mid>.wav files (created)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds allowed for setup (offer, POST, ICE+DTLS connected); default 30")
    p.add_argument("--stream-id", default=None, help="msid stream id of the first m-line (= participant id)")
    p.add_argument("--stream-id2", default=None, help="msid stream id of the second m-line (gateway)")
    p.add_argument("--location", default=None,
                   help="if set (e.g. DE, US-CA), PUT /v1/calls/{call}/participants/{stream id} "
                        "with this location before POSTing the offer")
    if extra:
        extra(p)
    a = p.parse_args()
    if a.seconds < 0:
        p.error("--seconds must be >= 0")
    if a.mode == "gateway" and not a.audio2:
        a.audio2 = a.audio
    if a.mode == "session":
        a.audio2 = None
    for f in [a.audio] + ([a.audio2] if a.audio2 else []):
        if not os.path.isfile(f):
            p.error(f"no such file: {f}")
    os.makedirs(a.out, exist_ok=True)
    return a


def new_stream_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- WAV / PCM

def read_wav_mono48k(path):
    """The file's samples as a mono 48 kHz int16 array (simple channel average
    and linear resampling if it is not already 48 kHz mono 16-bit)."""
    with wave.open(path, "rb") as w:
        ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if width != 2:
        raise ValueError(f"{path}: only 16-bit PCM WAV is supported (got {8 * width}-bit)")
    s = array.array("h")
    s.frombytes(raw)
    if sys.byteorder == "big":
        s.byteswap()
    if ch > 1:
        s = array.array("h", (sum(s[i:i + ch]) // ch for i in range(0, len(s), ch)))
    if rate != RATE:
        ratio = rate / RATE
        out_n = int(len(s) / ratio)
        out = array.array("h", bytes(2 * out_n))
        for i in range(out_n):
            x = i * ratio
            j = int(x)
            f = x - j
            a = s[j] if j < len(s) else 0
            b = s[j + 1] if j + 1 < len(s) else a
            out[i] = int(a + (b - a) * f)
        s = out
    if len(s) == 0:
        raise ValueError(f"{path}: no samples")
    return s


class WavSink:
    """Mono 16-bit 48 kHz WAV writer that also keeps RMS statistics."""

    def __init__(self, path, rate=RATE):
        self.path = path
        self.rate = rate
        self.samples = 0
        self.sumsq = 0.0
        self.voiced_frames = 0  # 20 ms frames with RMS above -40 dBFS
        self._pending = array.array("h")
        self._w = wave.open(path, "wb")
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(rate)
        self._lock = threading.Lock()

    def write(self, pcm):
        """pcm: array('h') of mono samples."""
        with self._lock:
            if self._w is None:
                return
            self.samples += len(pcm)
            self.sumsq += float(sum(x * x for x in pcm))
            self._pending.extend(pcm)
            frame = self.rate // 50
            while len(self._pending) >= frame:
                chunk = self._pending[:frame]
                del self._pending[:frame]
                if math.sqrt(sum(x * x for x in chunk) / frame) / 32768.0 > 0.01:
                    self.voiced_frames += 1
            data = pcm
            if sys.byteorder == "big":
                data = array.array("h", pcm)
                data.byteswap()
            self._w.writeframes(data.tobytes())

    def close(self):
        with self._lock:
            if self._w is not None:
                self._w.close()
                self._w = None

    def stats(self):
        secs = self.samples / self.rate
        rms = math.sqrt(self.sumsq / self.samples) / 32768.0 if self.samples else 0.0
        return {
            "received_seconds": round(secs, 3),
            "received_rms": round(rms, 5),
            "received_voiced_seconds": round(self.voiced_frames * 0.02, 2),
            "received_wav": os.path.abspath(self.path),
        }


# ---------------------------------------------------------------- SDP

def sdp_sections(sdp):
    """[(header_lines, [section_lines...])]: the session part and each m-section."""
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = [l for l in sdp.split(eol)]
    if lines and lines[-1] == "":
        lines.pop()
    parts = [[]]
    for l in lines:
        if l.startswith("m="):
            parts.append([])
        parts[-1].append(l)
    return eol, parts


def sdp_join(eol, parts):
    return eol.join(l for part in parts for l in part) + eol


def audio_mlines(sdp):
    """[{mid, stream_id, direction}] for each audio m-section, in order."""
    _, parts = sdp_sections(sdp)
    out = []
    for sec in parts[1:]:
        if not sec[0].startswith("m=audio"):
            continue
        info = {"mid": None, "stream_id": None, "direction": "sendrecv"}
        for l in sec:
            if l.startswith("a=mid:"):
                info["mid"] = l[6:].strip()
            elif l.startswith("a=msid:"):
                sid = l[7:].split()[0]
                info["stream_id"] = None if sid == "-" else sid
            elif l in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
                info["direction"] = l[2:]
        out.append(info)
    return out


def set_stream_ids(sdp, stream_ids):
    """Give the n-th audio m-section the n-th stream id (None: keep). Rewrites its
    a=msid line (adding one if absent, with the a=ssrc msid track id or a made-up
    one) and any a=ssrc:N msid: lines."""
    eol, parts = sdp_sections(sdp)
    n = -1
    for sec in parts[1:]:
        if not sec[0].startswith("m=audio"):
            continue
        n += 1
        if n >= len(stream_ids) or not stream_ids[n]:
            continue
        sid = stream_ids[n]
        track = None
        for l in sec:
            m = re.match(r"a=msid:(\S+)(?: (\S+))?", l)
            if m and m.group(2):
                track = m.group(2)
            m = re.match(r"a=ssrc:\d+ msid:(\S+)(?: (\S+))?", l)
            if m and m.group(2) and not track:
                track = m.group(2)
        track = track or f"track-{uuid.uuid4().hex[:8]}"
        found = False
        for i, l in enumerate(sec):
            if l.startswith("a=msid:"):
                sec[i] = f"a=msid:{sid} {track}"
                found = True
            m = re.match(r"(a=ssrc:\d+ msid:)(\S+)(.*)", l)
            if m:
                sec[i] = f"{m.group(1)}{sid}{m.group(3)}"
        if not found:
            # after a=mid (or at the end of the section)
            at = next((i + 1 for i, l in enumerate(sec) if l.startswith("a=mid:")), len(sec))
            sec.insert(at, f"a=msid:{sid} {track}")
    return sdp_join(eol, parts)


# ---------------------------------------------------------------- HTTP

class Whip:
    def __init__(self, url, token):
        self.url = url
        self.token = token
        self.session_url = None
        self.etag = None
        u = urllib.parse.urlsplit(url)
        m = re.match(r"^(.*)/whip/([^/]+)/?$", u.path)
        self.base = f"{u.scheme}://{u.netloc}{m.group(1) if m else ''}"
        self.call_id = urllib.parse.unquote(m.group(2)) if m else None

    def _req(self, method, url, body=None, ctype=None, timeout=20):
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if ctype:
            headers["Content-Type"] = ctype
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def post_offer(self, sdp):
        status, headers, body = self._req("POST", self.url, sdp.encode(), "application/sdp")
        text = body.decode(errors="replace")
        if status != 201:
            raise RuntimeError(f"WHIP POST answered {status}: {text[:300]}")
        loc = next((v for k, v in headers.items() if k.lower() == "location"), None)
        if not loc:
            raise RuntimeError("WHIP POST 201 without a Location header")
        self.session_url = urllib.parse.urljoin(self.url, loc)
        self.etag = next((v for k, v in headers.items() if k.lower() == "etag"), None)
        return text

    def delete(self):
        if not self.session_url:
            return None
        status, _, _ = self._req("DELETE", self.session_url, timeout=30)
        return status

    def put_participant(self, participant_id, location):
        if not self.call_id:
            raise RuntimeError(f"cannot derive the call id from {self.url}")
        loc = {"country": location.split("-")[0].upper()}
        if "-" in location:
            loc["subdivision"] = location.upper()
        url = f"{self.base}/v1/calls/{urllib.parse.quote(self.call_id, safe='')}/participants/" \
              f"{urllib.parse.quote(participant_id, safe='')}"
        status, _, body = self._req("PUT", url, json.dumps({"location": loc}).encode(), "application/json")
        if status // 100 != 2:
            raise RuntimeError(f"PUT {url} answered {status}: {body[:300]!r}")
        return status


# ---------------------------------------------------------------- result

class Result:
    """The JSON printed on the last stdout line."""

    def __init__(self, client, mode):
        self.d = {"client": client, "version": None, "mode": mode, "connected": False,
                  "session_url": None, "delete_status": None, "tracks": [], "timings": {},
                  "error": None}
        self.t0 = time.monotonic()
        self._printed = False
        self._lock = threading.Lock()

    def mark(self, name):
        self.d["timings"][name] = round(time.monotonic() - self.t0, 3)

    def fail(self, msg):
        if not self.d["error"]:
            self.d["error"] = str(msg)

    def emit(self):
        """Prints the JSON once; returns the exit code."""
        with self._lock:
            if self._printed:
                return 1
            self._printed = True
            self.mark("total")
            ok = self.d["error"] is None and self.d["connected"] and \
                self.d["delete_status"] is not None and 200 <= self.d["delete_status"] < 300
            if not ok and self.d["error"] is None:
                self.d["error"] = "did not complete (not connected or DELETE failed)"
            sys.stdout.flush()
            print(json.dumps(self.d), flush=True)
            return 0 if ok else 1


def watchdog(result, seconds, cleanup=None):
    """Hard deadline: past it, print the JSON error and exit 1 whatever state we are in."""

    def fire():
        result.fail(f"hard timeout after {seconds:.0f} s")
        try:
            if cleanup:
                cleanup()
        except Exception as e:  # noqa: BLE001
            log("cleanup after timeout failed:", e)
        code = result.emit()
        os._exit(code or 1)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t

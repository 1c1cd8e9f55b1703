#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/{target}/.

Seeds are small real inputs: the SDP offers the tests use (Chromium,
Firefox-era, aiortc, GStreamer, werift captures and SIPp's), events cut out
of the policy fixtures' calendars, the meetings JSON example, rules files cut
down from consent/rules.yaml, Ogg Opus files rebuilt from a few packets of
media/test/speaker-a.opus, and hand-made RTP, RTCP, STUN, RFC 4733 and RoQ
packets. The fuzzers grow the corpus from here (fuzz/run.sh); this script
only (re)writes the files named seed-*, so what the fuzzers found stays.

Usage: python3 fuzz/seeds.py   (from the repository root or anywhere)
"""

import json
import pathlib
import re
import struct
import zlib  # noqa: F401  (Ogg's CRC is not zlib's; see ogg_crc)

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


# --- engine records: [selector, milliseconds, length, bytes...] -------------


def record(selector, millis, packet):
    assert len(packet) <= 255
    return bytes([selector, millis, len(packet)]) + packet


def rtp(pt, seq, ts, ssrc, payload, marker=False):
    return (
        struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
        )
        + payload
    )


def dtmf_payload(event, end, volume, duration):
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def rtcp_sr(ssrc):
    # Sender report, no report blocks (RFC 3550 6.4.1).
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 0, 0, 0, 0, 0)


def stun_binding(username, controlling=False, use_candidate=False):
    # Binding request with USERNAME, a MESSAGE-INTEGRITY that will not
    # verify and FINGERPRINT (RFC 8489); enough for the routing to parse.
    user = username.encode()
    pad = (-len(user)) % 4
    attrs = struct.pack("!HH", 0x0006, len(user)) + user + b"\0" * pad
    attrs += struct.pack("!HH", 0x0024, 4) + struct.pack("!I", 0x6E7F1EFF)  # PRIORITY
    if use_candidate:
        attrs += struct.pack("!HH", 0x0025, 0)  # USE-CANDIDATE
    # ICE-CONTROLLING or ICE-CONTROLLED
    attrs += struct.pack("!HH", 0x802A if controlling else 0x8029, 8) + b"\x01" * 8
    attrs += struct.pack("!HH", 0x0008, 20) + b"\xaa" * 20  # MESSAGE-INTEGRITY
    attrs += struct.pack("!HH", 0x8028, 4) + b"\0\0\0\0"  # FINGERPRINT
    header = struct.pack("!HHI", 0x0001, len(attrs), 0x2112A442) + b"fuzzhearken!"
    return header + attrs


def opus_frames(n):
    # 20 ms SILK/CELT-ish TOC bytes and a few bytes of payload each.
    return [bytes([0x78, 0x80 + i, 0x12, 0x34, 0x56]) for i in range(n)]


def engine_seeds():
    pcmu = bytes([0xFF]) * 160
    pcma = bytes([0xD5]) * 160
    g722 = bytes([0x5A]) * 160
    # rtp: flows 0 opus(111), 1 pcmu(0), 2 pcma(8), 3 g722(9), 4 the SIP
    # dialog (g722, 9); 101 is telephone-event everywhere.
    s = b""
    for i, frame in enumerate(opus_frames(6)):
        s += record(0, 20, rtp(111, 100 + i, 960 * i, 1111, frame, marker=i == 0))
    write("rtp", "opus-in-order", s)
    s = b""
    for i in [0, 2, 1, 4, 3, 7, 8, 9, 10, 5]:
        s += record(0, 10, rtp(111, 500 + i, 960 * i, 2222, opus_frames(1)[0]))
    write("rtp", "opus-reordered-and-lost", s)
    s = b""
    for i in range(4):
        s += record(1, 20, rtp(0, 7 + i, 160 * i, 3333, pcmu))
        s += record(2, 0, rtp(8, 9 + i, 160 * i, 4444, pcma))
        s += record(3, 0, rtp(9, 11 + i, 160 * i, 5555, g722))
        s += record(4, 0, rtp(9, 13 + i, 160 * i, 6666, g722))
    write("rtp", "telephone-codecs", s)
    s = b""
    for flow in (1, 4):
        for d in range(3):
            s += record(
                flow, 50, rtp(101, 40 + d, 8000, 7777, dtmf_payload(1, d == 2, 10, 400 * (d + 1)))
            )
        s += record(flow, 50, rtp(101, 43, 8000, 7777, dtmf_payload(1, True, 10, 1200)))
    write("rtp", "dtmf-events", s)
    s = record(0, 5, rtcp_sr(1111)) + record(4, 5, rtcp_sr(6666))
    s += record(0, 5, rtp(111, 1, 0, 1, opus_frames(1)[0]))
    s += record(0, 5, rtp(111, 2, 960, 2, opus_frames(1)[0]))  # a new SSRC
    s += record(0, 5, rtp(96, 3, 1920, 2, b"\x01\x02"))  # an unexpected PT
    s += record(1, 200, rtp(0, 65535, 0xFFFFFF60, 9, pcmu[:80]))  # wraps
    s += record(1, 200, rtp(0, 0, 0x00000000, 9, pcmu[:80]))
    write("rtp", "rtcp-ssrc-change-wraparound", s)

    # datagram: sources 0 the WHIP client, 1 the SIP caller, 2 the NATed
    # caller's public address, 3 nobody.
    s = record(0, 0, stun_binding("abcd:AtZq")) + record(3, 0, stun_binding("zzzz:AtZq"))
    write("datagram", "stun-requests", s)
    s = b""
    for i in range(3):
        s += record(1, 20, rtp(0, 10 + i, 160 * i, 42, pcmu))
    s += record(1, 20, rtp(101, 13, 480, 42, dtmf_payload(5, True, 10, 800)))
    write("datagram", "sip-caller-rtp", s)
    s = b""
    for i in range(3):
        s += record(2, 20, rtp(8, 30 + i, 160 * i, 43, pcma))
    write("datagram", "nat-latched-rtp", s)
    # A DTLS ClientHello's record header, and SRTP-looking RTP from the
    # WHIP client before it is connected.
    s = record(0, 0, bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0]))
    s += record(0, 0, rtp(111, 1, 0, 99, bytes(range(40))))
    s += record(3, 250, rtp(0, 1, 0, 1, pcmu[:20]))
    write("datagram", "dtls-srtp-unknown", s)
    # A check the harness signs as the WHIP client (source bit 2: the
    # session's ufrag and password replace these), which connects ICE, then
    # a DTLS record, SRTP-looking RTP and RTCP, and a consent check later.
    check = stun_binding("abcd:47d8", controlling=True, use_candidate=True)
    s = record(4, 0, check)
    s += record(0, 5, bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0]))
    s += record(0, 20, rtp(96, 1, 0, 647280598, bytes(range(40))))
    s += record(0, 20, rtcp_sr(647280598))
    s += record(4, 250, check)
    write("datagram", "signed-check-then-media", s)


# --- DTMF: [timestamp(4), RFC 4733 payload(4), millis(1)] records -----------


def dtmf_seeds():
    def rec(ts, event, end, duration, millis):
        return struct.pack("!I", ts) + dtmf_payload(event, end, 10, duration) + bytes([millis])

    s = b"".join(rec(8000, 1, d >= 3, 160 * (d + 1), 20) for d in range(6))
    write("dtmf", "one-key", s)
    s = b""
    for k, key in enumerate([1, 2, 11, 10]):
        for d in range(4):
            s += rec(8000 * (k + 1), key, d == 3, 200 * (d + 1), 50)
    write("dtmf", "four-keys", s)
    s = rec(0xFFFFFF00, 5, False, 400, 20) + rec(0x00000010, 6, True, 400, 20)
    s += rec(0x00000010, 6, True, 400, 0) + rec(0x00000010, 6, True, 400, 0)
    write("dtmf", "wrap-and-repeated-end", s)
    s = rec(1000, 3, False, 100, 10) + rec(1000, 3, False, 0xFFFF, 255)
    write("dtmf", "lost-end", s)


# --- RoQ: [chunk size byte] + stream (also tried as one DATAGRAM) ----------


def varint(v):
    if v < 1 << 6:
        return bytes([v])
    if v < 1 << 14:
        return struct.pack("!H", v | 0x4000)
    if v < 1 << 30:
        return struct.pack("!I", v | 0x80000000)
    return struct.pack("!Q", v | 0xC000000000000000)


def roq_seeds():
    packet = rtp(111, 1, 960, 1234, opus_frames(1)[0])
    stream = varint(7) + b"".join(varint(len(packet)) + packet for _ in range(3))
    write("roq", "stream-three-packets", bytes([3]) + stream)
    write("roq", "stream-big-flow-id", bytes([0]) + varint(2**40) + varint(len(packet)) + packet)
    write("roq", "datagram", bytes([5]) + varint(300) + packet)
    write("roq", "truncated-length", bytes([1]) + varint(1) + b"\x40")
    write("roq", "empty-packet", bytes([2]) + varint(1) + varint(0))
    write("roq", "too-large", bytes([2]) + varint(1) + varint(70000) + b"\0" * 8)


# --- SDP offers ----------------------------------------------------------


SIP_SDP = """v=0\r
o=- 1 1 IN IP4 192.0.2.10\r
s=-\r
c=IN IP4 192.0.2.10\r
t=0 0\r
m=audio 4000 RTP/AVP {formats}\r
{maps}a=ptime:20\r
a={direction}\r
"""


def sdp_seeds():
    fixtures = ROOT / "tests" / "fixtures" / "sdp"
    for path in sorted(fixtures.glob("*.sdp")) + sorted((fixtures / "invalid").glob("*")):
        if path.suffix in (".sdp", ".txt"):
            write("sdp_offer", path.stem, path.read_bytes())
    for name, formats, maps, direction in [
        ("sip-pcmu-dtmf", "0 101", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n", "sendrecv"),
        ("sip-pcma-hold", "8 101", "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n", "sendonly"),
        ("sip-g722-opus", "9 96 101", "a=rtpmap:9 G722/8000\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n", "recvonly"),
        ("sip-static-only", "0 8 18", "", "inactive"),
    ]:
        write("sdp_offer", name, SIP_SDP.format(formats=formats, maps=maps, direction=direction))
    write(
        "sdp_offer",
        "sip-two-streams-srtp",
        "v=0\r\no=- 2 2 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n"
        "m=audio 5000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n"
        "m=audio 5002 RTP/AVP 8\r\nc=IN IP4 0.0.0.0\r\nm=video 5004 RTP/AVP 96\r\n",
    )


# --- iCalendar -------------------------------------------------------------


def ics_seeds():
    policy = ROOT / "tests" / "fixtures" / "policy"
    for path in sorted(policy.glob("*.ics")):
        text = path.read_text()
        # Unfolded lines keep the events apart; each seed is the calendar's
        # header and time zones with one of its events.
        head = text.split("BEGIN:VEVENT", 1)[0]
        events = re.findall(r"BEGIN:VEVENT.*?END:VEVENT\r?\n", text, re.S)
        for i, event in enumerate(events):
            write("icalendar", f"{path.stem}-{i}", head + event + "END:VCALENDAR\r\n")
    write(
        "icalendar",
        "rrule-variety",
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
        "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20250103T090000Z\r\nDTEND:20250103T093000Z\r\n"
        "RRULE:FREQ=MONTHLY;BYDAY=1FR,-1MO;COUNT=20\r\nRDATE:20250704T090000Z\r\n"
        "EXDATE:20250207T090000Z\r\nSUMMARY:Sync\r\nLOCATION:https://meet.google.com/abc-defg-hij\r\n"
        "ATTENDEE;PARTSTAT=DECLINED:mailto:klaus@client.de\r\nORGANIZER:mailto:alice@example.com\r\n"
        "END:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:b\r\nDTSTART;VALUE=DATE:20250301\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=3,9;BYMONTHDAY=1,-1;UNTIL=20271231\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:a\r\nRECURRENCE-ID:20250207T090000Z\r\nDTSTART:20250208T090000Z\r\n"
        "STATUS:CANCELLED\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )


# --- meetings JSON -----------------------------------------------------------


def meetings_seeds():
    path = ROOT / "tests" / "fixtures" / "policy" / "meetings.json"
    text = path.read_text()
    write("meetings_json", "list", text)
    for i, meeting in enumerate(json.loads(text)):
        write("meetings_json", f"one-{i}", json.dumps(meeting))
    write(
        "meetings_json",
        "every-field",
        json.dumps(
            {
                "uid": "teams-1",
                "title": "Board",
                "start": "2025-06-01T10:00:00+02:00",
                "end": "2025-06-01T11:00:00+02:00",
                "all_day": False,
                "organizer": {"email": "mailto:Carol@EU.example.com", "name": "Carol"},
                "attendees": [
                    {"email": "room-1@example.com", "name": "Room 1", "kind": "room", "response": "accepted"},
                    "assistant@hearken.example",
                ],
                "private": True,
                "cancelled": False,
                "bot_invited": True,
                "location": "https://teams.microsoft.com/l/meetup-join/x",
                "description": "dial https://acme.webex.com/meet/x",
                "links": [],
                "recurrence_id": "2025-06-01T08:00:00Z",
            }
        ),
    )


# --- consent rules -----------------------------------------------------------


def rules_seeds():
    text = (ROOT / "consent" / "rules.yaml").read_text()
    head, jurisdictions = text.split("\njurisdictions:\n", 1)
    # Top-level keys the parser reads, without the long prose sections.
    keep = []
    skipping = False
    for line in head.splitlines():
        if re.match(r"^[a-z_]+:", line):
            skipping = line.split(":")[0] in ("modes",)
        if line.startswith("#") or line.strip().startswith("#"):
            continue
        if not skipping:
            keep.append(line)
    header = "\n".join(keep)
    blocks = re.split(r"\n(?=  [A-Z][A-Z0-9-]*:\n)", jurisdictions)
    wanted = ["US", "US-CA", "DE", "EEA", "AU", "AU-NSW"]
    chosen = [b for b in blocks if b.split(":", 1)[0].strip() in wanted]
    small = header + "\njurisdictions:\n" + "\n".join(chosen) + "\n"
    # Prose (notes, sources) makes the file long without exercising more.
    small = re.sub(r"\n    notes: .*", "", small)
    small = re.sub(r"\n    source:\n(      - .*\n?)+", "\n", small)
    write("consent_rules", "trimmed", small)
    one = header + "\njurisdictions:\n" + next(b for b in blocks if b.startswith("  US:")) + "\n"
    one = re.sub(r"\n    notes: .*", "", one)
    one = re.sub(r"\n    source:\n(      - .*\n?)+", "\n", one)
    write("consent_rules", "one-jurisdiction", one)


# --- Ogg Opus ---------------------------------------------------------------


def ogg_crc(data):
    crc = 0
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def ogg_page(serial, seq, granule, packets, header_type):
    lacing = b""
    for p in packets:
        n = len(p)
        lacing += b"\xff" * (n // 255) + bytes([n % 255])
    page = (
        b"OggS"
        + bytes([0, header_type])
        + struct.pack("<qII", granule, serial, seq)
        + b"\0\0\0\0"
        + bytes([len(lacing)])
        + lacing
        + b"".join(packets)
    )
    crc = ogg_crc(page)
    return page[:22] + struct.pack("<I", crc) + page[26:]


def ogg_packets(data):
    """The packets of the first logical stream of an Ogg file."""
    packets, partial, at = [], b"", 0
    while at + 27 <= len(data) and data[at : at + 4] == b"OggS":
        segments = data[at + 26]
        table = data[at + 27 : at + 27 + segments]
        body = at + 27 + segments
        for n in table:
            partial += data[body : body + n]
            body += n
            if n < 255:
                packets.append(partial)
                partial = b""
        at = body
    return packets


def ogg_seeds():
    source = (ROOT / "media" / "test" / "speaker-a.opus").read_bytes()
    packets = ogg_packets(source)
    head, _tags, audio = packets[0], packets[1], packets[2:]
    tags = b"OpusTags" + struct.pack("<I", 4) + b"fuzz" + struct.pack("<I", 0)
    serial = 0x48524B4E

    def stream(audio_packets, eos=True, per_page=2, pre_skip_head=head):
        pages = [ogg_page(serial, 0, 0, [pre_skip_head], 0x02), ogg_page(serial, 1, 0, [tags], 0)]
        granule = 0
        for i in range(0, len(audio_packets), per_page):
            chunk = audio_packets[i : i + per_page]
            granule += 960 * len(chunk)
            last = i + per_page >= len(audio_packets)
            pages.append(ogg_page(serial, 2 + i // per_page, granule, chunk, 0x04 if (eos and last) else 0))
        return b"".join(pages)

    small = [p for p in audio if len(p) < 60][:6] or audio[:6]
    write("ogg", "six-packets", stream(small))
    write("ogg", "no-eos", stream(small[:3], eos=False))
    write("ogg", "truncated", stream(small[:4])[:-7])
    stereo_head = head[:9] + bytes([2]) + head[10:]
    write("ogg", "stereo-head", stream(small[:2], pre_skip_head=stereo_head))
    write("ogg", "odd-packets", stream([b"", b"\xfc", b"\x03\x85" + b"\0" * 8, b"\x7f\x01"], per_page=1))
    write("ogg", "headers-only", stream([]))


def srtp_in_seeds():
    # [profile pick, start index (2 bytes, << 8), then [length, packet]...];
    # every packet of SSRC 0xcafebabe.
    def seed(pick, start, packets):
        out = bytes([pick]) + struct.pack(">H", start)
        for p in packets:
            out += bytes([len(p)]) + p
        return out

    # libSRTP's srtp_validate and srtp_validate_gcm packets (test/srtp_driver.c).
    cm = bytes.fromhex("800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb")
    gcm = bytes.fromhex(
        "800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392"
    )
    write("srtp_in", "libsrtp-aes-cm", seed(0, 0x12, [cm]))
    write("srtp_in", "libsrtp-aes-gcm", seed(1, 0x12, [gcm, gcm]))
    write("srtp_in", "aes-256-gcm-as-client", seed(0x82, 0x12, [gcm]))
    # Clear packets a peer holding the keys could send: an RFC 6464 level in a
    # one-byte extension (id 1), padding of three bytes; a two-byte
    # extension; an RFC 4733 event (digit 5, end, 800 units).
    one_byte = bytes.fromhex("b06f0001000003c0cafebabe" "bede0001" "10a50000" "f8ff0003")
    two_byte = bytes.fromhex("906f0002000007e0cafebabe" "10000001" "01012500" "f8ff")
    event = bytes.fromhex("806e000300000bb8cafebabe" "05800320")
    write("srtp_in", "clear-extensions-padding-event", seed(0x01, 0, [one_byte, two_byte, event]))
    # Sequence numbers across a wrap, then one from before it (replay window).
    wrap = [bytes([0x80, 111, hi, lo]) + bytes(4) + bytes.fromhex("cafebabe") + bytes(26)
            for hi, lo in ((0xff, 0xfe), (0xff, 0xff), (0x00, 0x00), (0xff, 0xfd))]
    write("srtp_in", "across-a-wrap", seed(2, 0xff, wrap))


def main():
    engine_seeds()
    srtp_in_seeds()
    dtmf_seeds()
    roq_seeds()
    sdp_seeds()
    ics_seeds()
    meetings_seeds()
    rules_seeds()
    ogg_seeds()
    for d in sorted(CORPUS.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} files, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()

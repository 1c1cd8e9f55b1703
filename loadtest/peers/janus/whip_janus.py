#!/usr/bin/python3
"""A WHIP front for Janus's VideoRoom, serving exactly what hearken-loadtest
calls, so that the generator measures Janus unchanged:

- ``POST /whip/{call_id}`` (SDP offer): a VideoRoom handle joins the room
  ``call_id`` (created on first use, recording every publisher to its own
  .mjr file) as a publisher with ``joinandconfigure`` and the offer; the
  answer is Janus's: ``201``, ``Location: /whip/{call_id}/{id}``, SDP.
- ``DELETE /whip/{call_id}/{id}``: detaches the handle (the publisher
  leaves, its recording is closed); the room is destroyed with its last
  publisher.
- ``GET /metrics``: Prometheus text with ``hearken_rtp_packets_received_total``
  (RTP packets Janus received over the live publisher handles, from the
  Admin API's ``handle_info``; or, with ``--count mjr``, the frames in the
  .mjr files, which costs Janus nothing), ``hearken_rtp_packets_lost_total``
  (Janus's RTCP loss count, Admin API only) and
  ``hearken_recorder_frames_written_total`` (.mjr frames).

Every request needs ``Authorization: Bearer TOKEN`` (``--token``; the
generator sends ``hearken-dev`` unless told otherwise). All handles live in
one Janus session, kept alive by a keepalive every 20 s and drained by one
long poll that hands each asynchronous answer to the request that waits for
it (by transaction). Python 3 standard library and aiohttp (Debian's
``python3-aiohttp``).
"""

import argparse
import asyncio
import itertools
import json
import os
import secrets
import struct
import sys
import time

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

KEEPALIVE_S = 20
ANSWER_TIMEOUT_S = 10
ADMIN_CONCURRENCY = 16


def log(message):
    print(f"whip_janus: {message}", file=sys.stderr, flush=True)


class JanusError(Exception):
    pass


class Janus:
    """One Janus session over the HTTP transport, and the Admin API."""

    def __init__(self, api, admin, admin_secret):
        self.api = api.rstrip("/")
        self.admin = admin.rstrip("/")
        self.admin_secret = admin_secret
        self.http = None
        self.session = None
        self.control = None  # a handle for room create/destroy
        self.waiting = {}  # transaction -> Future for its asynchronous event
        self.tx = itertools.count(1)
        self.tasks = []

    def transaction(self):
        return f"t{next(self.tx)}"

    async def post(self, path, body):
        body = dict(body, transaction=body.get("transaction") or self.transaction())
        async with self.http.post(self.api + path, json=body) as r:
            reply = await r.json(content_type=None)
        if reply.get("janus") == "error":
            err = reply.get("error", {})
            raise JanusError(f"{body.get('janus')}: {err.get('code')} {err.get('reason')}")
        return reply

    async def start(self):
        self.http = ClientSession(
            connector=TCPConnector(limit=64),
            timeout=ClientTimeout(total=60),
        )
        reply = await self.post("", {"janus": "create"})
        self.session = reply["data"]["id"]
        self.control = await self.attach()
        self.tasks = [
            asyncio.create_task(self.poll_events()),
            asyncio.create_task(self.keepalive()),
        ]
        log(f"janus session {self.session}")

    async def attach(self):
        reply = await self.post(
            f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        return reply["data"]["id"]

    async def detach(self, handle):
        await self.post(f"/{self.session}/{handle}", {"janus": "detach"})

    async def request(self, handle, body):
        """A synchronous plugin request (create, destroy, ...): its data."""
        reply = await self.post(f"/{self.session}/{handle}", {"janus": "message", "body": body})
        return reply.get("plugindata", {}).get("data", {})

    async def message(self, handle, body, jsep):
        """An asynchronous plugin request: the event that answers it."""
        tx = self.transaction()
        waiter = asyncio.get_running_loop().create_future()
        self.waiting[tx] = waiter
        try:
            reply = await self.post(
                f"/{self.session}/{handle}",
                {"janus": "message", "body": body, "jsep": jsep, "transaction": tx},
            )
            if reply.get("janus") != "ack":
                return reply
            return await asyncio.wait_for(waiter, ANSWER_TIMEOUT_S)
        finally:
            self.waiting.pop(tx, None)

    async def poll_events(self):
        url = f"{self.api}/{self.session}"
        while True:
            try:
                async with self.http.get(url, params={"maxev": "50"}) as r:
                    events = await r.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a long poll that failed: try again
                log(f"long poll: {e!r}")
                await asyncio.sleep(0.5)
                continue
            for event in events if isinstance(events, list) else [events]:
                waiter = self.waiting.get(event.get("transaction"))
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)

    async def keepalive(self):
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            try:
                await self.post(f"/{self.session}", {"janus": "keepalive"})
            except Exception as e:
                log(f"keepalive: {e!r}")

    async def handle_info(self, handle):
        body = {
            "janus": "handle_info",
            "transaction": self.transaction(),
            "admin_secret": self.admin_secret,
        }
        async with self.http.post(f"{self.admin}/{self.session}/{handle}", json=body) as r:
            reply = await r.json(content_type=None)
        return reply.get("info", {})

    async def close(self):
        for t in self.tasks:
            t.cancel()
        if self.http is not None:
            try:
                await self.post(f"/{self.session}", {"janus": "destroy"})
            except Exception:
                pass
            await self.http.close()


class MjrCounter:
    """Counts the frames in the .mjr files of a folder, reading each file
    only past what it read before (Janus writes whole frames, but a read
    may end inside one: it is counted once complete)."""

    def __init__(self, folder):
        self.folder = folder
        self.files = {}  # path -> [offset, frames]

    def count(self):
        try:
            names = [n for n in os.listdir(self.folder) if n.endswith(".mjr")]
        except FileNotFoundError:
            names = []
        for name in names:
            path = os.path.join(self.folder, name)
            state = self.files.setdefault(path, [0, 0])
            try:
                with open(path, "rb") as f:
                    f.seek(state[0])
                    data = f.read()
            except OSError:
                continue
            pos = 0
            if state[0] == 0:
                # "MJR00002", then the JSON info (length-prefixed) once the
                # first frame is written.
                if len(data) < 10 or data[:3] != b"MJR":
                    continue
                (info_len,) = struct.unpack_from("!H", data, 8)
                if len(data) < 10 + info_len:
                    continue
                pos = 10 + info_len
            while len(data) - pos >= 10:
                if data[pos : pos + 4] != b"MEET":
                    break
                (length,) = struct.unpack_from("!H", data, pos + 8)
                if len(data) - pos - 10 < length:
                    break
                pos += 10 + length
                state[1] += 1
            state[0] += pos
        return sum(frames for _, frames in self.files.values())


class Publisher:
    def __init__(self, call_id, handle):
        self.call_id = call_id
        self.handle = handle


class Adapter:
    def __init__(self, janus, token, rec_dir, count):
        self.janus = janus
        self.token = token
        self.rec_dir = rec_dir
        self.count = count
        self.mjr = MjrCounter(rec_dir)
        self.publishers = {}  # resource id -> Publisher
        self.rooms = {}  # call id -> publishers joined
        self.room_locks = {}
        self.admin_limit = asyncio.Semaphore(ADMIN_CONCURRENCY)

    def authorized(self, request):
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def room_lock(self, call_id):
        return self.room_locks.setdefault(call_id, asyncio.Lock())

    async def ensure_room(self, call_id):
        async with self.room_lock(call_id):
            if call_id in self.rooms:
                self.rooms[call_id] += 1
                return
            data = await self.janus.request(
                self.janus.control,
                {
                    "request": "create",
                    "room": call_id,
                    "permanent": False,
                    "is_private": True,
                    "publishers": 100,
                    "audiocodec": "opus",
                    "record": True,
                    "rec_dir": self.rec_dir,
                    "audiolevel_ext": True,
                    "videoorient_ext": False,
                    "playoutdelay_ext": False,
                    "transport_wide_cc_ext": False,
                },
            )
            # 427: the room exists already (an earlier adapter made it).
            if data.get("videoroom") != "created" and data.get("error_code") != 427:
                raise JanusError(f"create room {call_id}: {data}")
            self.rooms[call_id] = 1

    async def leave_room(self, call_id):
        async with self.room_lock(call_id):
            left = self.rooms.get(call_id, 1) - 1
            if left > 0:
                self.rooms[call_id] = left
                return
            self.rooms.pop(call_id, None)
            self.room_locks.pop(call_id, None)
            try:
                await self.janus.request(
                    self.janus.control, {"request": "destroy", "room": call_id}
                )
            except Exception as e:
                log(f"destroy room {call_id}: {e!r}")

    async def post_whip(self, request):
        if not self.authorized(request):
            return web.Response(status=401, text="unauthorized")
        call_id = request.match_info["call_id"]
        offer = await request.text()
        handle = None
        joined = False
        try:
            handle = await self.janus.attach()
            await self.ensure_room(call_id)
            joined = True
            event = await self.janus.message(
                handle,
                {
                    "request": "joinandconfigure",
                    "room": call_id,
                    "ptype": "publisher",
                    "display": call_id,
                },
                {"type": "offer", "sdp": offer},
            )
            data = event.get("plugindata", {}).get("data", {})
            jsep = event.get("jsep")
            if not jsep or jsep.get("type") != "answer":
                raise JanusError(f"joinandconfigure: {data or event}")
        except Exception as e:
            log(f"POST /whip/{call_id}: {e!r}")
            if handle is not None:
                try:
                    await self.janus.detach(handle)
                except Exception:
                    pass
            if joined:
                await self.leave_room(call_id)
            return web.Response(status=500, text=str(e))
        resource = secrets.token_hex(8)
        self.publishers[resource] = Publisher(call_id, handle)
        return web.Response(
            status=201,
            text=jsep["sdp"],
            content_type="application/sdp",
            headers={"Location": f"/whip/{call_id}/{resource}"},
        )

    async def delete_whip(self, request):
        if not self.authorized(request):
            return web.Response(status=401, text="unauthorized")
        publisher = self.publishers.pop(request.match_info["resource"], None)
        if publisher is None or publisher.call_id != request.match_info["call_id"]:
            return web.Response(status=404, text="no such session")
        try:
            await self.janus.detach(publisher.handle)
        except Exception as e:
            log(f"detach {publisher.handle}: {e!r}")
        await self.leave_room(publisher.call_id)
        return web.Response(status=200)

    async def admin_stats(self, handle):
        async with self.admin_limit:
            try:
                info = await self.janus.handle_info(handle)
            except Exception as e:
                log(f"handle_info {handle}: {e!r}")
                return 0, 0
        received = lost = 0
        for medium in info.get("webrtc", {}).get("media", {}).values():
            received += medium.get("stats", {}).get("in", {}).get("packets", 0)
            lost += medium.get("rtcp", {}).get("main", {}).get("lost", 0)
        return received, lost

    async def metrics(self, request):
        lines = []
        frames = self.mjr.count()
        if self.count == "admin":
            stats = await asyncio.gather(
                *(self.admin_stats(p.handle) for p in list(self.publishers.values()))
            )
            received = sum(s[0] for s in stats)
            lost = sum(s[1] for s in stats)
            lines += [
                "# HELP hearken_rtp_packets_received_total RTP packets Janus received (Admin API handle_info, live publishers).",
                "# TYPE hearken_rtp_packets_received_total counter",
                f"hearken_rtp_packets_received_total {received}",
                "# HELP hearken_rtp_packets_lost_total RTP packets Janus counted lost (RTCP context, live publishers).",
                "# TYPE hearken_rtp_packets_lost_total counter",
                f"hearken_rtp_packets_lost_total {lost}",
            ]
        else:
            lines += [
                "# HELP hearken_rtp_packets_received_total RTP packets Janus recorded (.mjr frames).",
                "# TYPE hearken_rtp_packets_received_total counter",
                f"hearken_rtp_packets_received_total {frames}",
            ]
        lines += [
            "# HELP hearken_recorder_frames_written_total Frames in Janus's .mjr recordings.",
            "# TYPE hearken_recorder_frames_written_total counter",
            f"hearken_recorder_frames_written_total {frames}",
            "# HELP whip_janus_publishers Publishers the adapter holds.",
            "# TYPE whip_janus_publishers gauge",
            f"whip_janus_publishers {len(self.publishers)}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def healthz(self, request):
        return web.Response(text="ok")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:18090", help="HOST:PORT (default %(default)s)")
    p.add_argument("--janus", default="http://10.77.0.2:8088/janus", help="Janus API URL")
    p.add_argument("--admin", default="http://10.77.0.2:7088/admin", help="Janus Admin API URL")
    p.add_argument("--admin-secret", default="hearken-compare")
    p.add_argument("--token", default="hearken-dev", help="bearer token clients must send")
    p.add_argument("--rec-dir", required=True, help="where Janus writes the .mjr files")
    p.add_argument(
        "--count",
        choices=["admin", "mjr"],
        default="admin",
        help="source of hearken_rtp_packets_received_total (default %(default)s)",
    )
    args = p.parse_args()
    host, port = args.listen.rsplit(":", 1)

    async def serve():
        janus = Janus(args.janus, args.admin, args.admin_secret)
        for attempt in range(100):
            try:
                await janus.start()
                break
            except Exception as e:
                if attempt == 99:
                    raise
                if janus.http is not None:
                    await janus.http.close()
                await asyncio.sleep(0.1)
        adapter = Adapter(janus, args.token, args.rec_dir, args.count)
        app = web.Application(client_max_size=1 << 20)
        app.add_routes(
            [
                web.post("/whip/{call_id}", adapter.post_whip),
                web.delete("/whip/{call_id}/{resource}", adapter.delete_whip),
                web.get("/metrics", adapter.metrics),
                web.get("/healthz", adapter.healthz),
            ]
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, int(port), backlog=1024).start()
        log(f"listening on http://{host}:{port}, Janus at {args.janus}")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await janus.close()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Tiny stdlib-only HTTP server used to capture SDP offers from headless Chromium.

Usage: capture_server.py OUTDIR [PORT]

  GET  /capture.html        -> serves capture.html from this directory
  POST /sdp/<name>          -> writes the request body byte-for-byte to OUTDIR/<name>.sdp
  POST /meta                -> writes the body to OUTDIR/chromium-meta.json (userAgent etc.)
  POST /log                 -> prints the body to stdout
  POST /done                -> prints "DONE" and exits the server

Only ever run it inside `unshare -n` (loopback-only network namespace); it binds 127.0.0.1.
"""
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.abspath(sys.argv[1])
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8765
os.makedirs(OUT, exist_ok=True)


class H(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def _reply(self, code, body=b"", ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.split("?")[0] == "/capture.html":
            with open(os.path.join(HERE, "capture.html"), "rb") as f:
                self._reply(200, f.read(), "text/html; charset=utf-8")
        else:
            self._reply(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        m = re.fullmatch(r"/sdp/([A-Za-z0-9_.-]+)", self.path)
        if m:
            path = os.path.join(OUT, m.group(1) + ".sdp")
            with open(path, "wb") as f:  # byte-for-byte: CRLF kept as produced
                f.write(body)
            print(f"wrote {path} ({len(body)} bytes)", flush=True)
            self._reply(200, b"ok")
        elif self.path == "/meta":
            with open(os.path.join(OUT, "chromium-meta.json"), "wb") as f:
                f.write(body)
            print("meta:", body.decode(), flush=True)
            self._reply(200, b"ok")
        elif self.path == "/log":
            print("page:", body.decode(errors="replace"), flush=True)
            self._reply(200, b"ok")
        elif self.path == "/done":
            print("DONE", flush=True)
            self._reply(200, b"ok")
            threading.Thread(target=self.server.shutdown).start()
        else:
            self._reply(404)


srv = ThreadingHTTPServer(("127.0.0.1", PORT), H)
print(f"capture server on 127.0.0.1:{PORT}, writing to {OUT}", flush=True)
srv.serve_forever()

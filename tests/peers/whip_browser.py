#!/usr/bin/env python3
"""WHIP client in a real headless browser: Firefox ESR or Chromium (Debian packages).

  python3 tests/peers/whip_browser.py --browser firefox|chromium \
      --whip http://127.0.0.1:8080/whip/call-1 --token TOKEN --mode session|gateway \
      --audio a.wav [--audio2 b.wav] --seconds 8 --out DIR [--location DE]

Stdlib only. Serves tests/peers/whip-browser.html, the WAVs and a few hooks on
127.0.0.1:<free port>, starts the browser on it with a fresh profile, and
waits for the page's result (or the hard timeout). The page does WHIP itself
(POST, DELETE, with CORS); what it receives per m-line comes back here as PCM
and is written to DIR/received-<mid>.wav. The browser's own output goes to
DIR/<browser>.log. Prints one JSON object on the last stdout line.

Loopback: Chromium needs --allow-loopback-in-peer-connection, Firefox the prefs
media.peerconnection.ice.loopback=true and ...default_address_only=false.
Run inside `unshare -n` so neither browser reaches anything but 127.0.0.1.
"""

import array
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peerlib  # noqa: E402
from peerlib import Result, Whip, WavSink, log  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "whip-browser.html")

# Firefox: loopback ICE, media without prompts, autoplay, console to stdout, and
# nothing that phones home (updates, telemetry, safebrowsing, captive portal, ...).
FIREFOX_PREFS = {
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.default_address_only": False,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.peerconnection.ice.proxy_only_if_behind_proxy": False,
    "permissions.default.microphone": 1,
    "media.navigator.permission.disabled": True,
    "media.navigator.streams.fake": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "media.autoplay.block-webaudio": False,
    "devtools.console.stdout.content": True,
    "browser.dom.window.dump.enabled": True,
    # updates, add-ons, plugins (OpenH264/Widevine downloads)
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "app.update.disabledForTesting": True,
    "extensions.update.enabled": False,
    "extensions.update.autoUpdateDefault": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.blocklist.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-manager.url": "",
    "media.gmp-gmpopenh264.enabled": False,
    "media.gmp-gmpopenh264.autoupdate": False,
    "media.gmp-widevinecdm.enabled": False,
    "media.gmp-widevinecdm.autoupdate": False,
    "media.eme.enabled": False,
    # telemetry and studies
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.shutdownPingSender.enabled": False,
    "toolkit.telemetry.firstShutdownPing.enabled": False,
    "toolkit.telemetry.newProfilePing.enabled": False,
    "toolkit.telemetry.updatePing.enabled": False,
    "toolkit.telemetry.bhrPing.enabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.policy.firstRunURL": "",
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "browser.discovery.enabled": False,
    "browser.ping-centre.telemetry": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "breakpad.reportURL": "",
    "browser.tabs.crashReporting.sendReport": False,
    "browser.crashReports.unsubmittedCheck.autoSubmit2": False,
    # network services
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "network.trr.mode": 5,
    "network.proxy.type": 0,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "services.settings.server": "http://127.0.0.1:9/",
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "security.OCSP.enabled": 0,
    "geo.enabled": False,
    "geo.provider.network.url": "",
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "browser.search.update": False,
    "browser.search.geoip.url": "",
    "identity.fxaccounts.enabled": False,
    "services.sync.enabled": False,
    "extensions.pocket.enabled": False,
    "browser.contentblocking.report.lockwise.enabled": False,
    "signon.management.page.breach-alerts.enabled": False,
    "browser.topsites.contile.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "startup.homepage_welcome_url": "about:blank",
    "startup.homepage_welcome_url.additional": "",
    "browser.aboutwelcome.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.uitour.enabled": False,
    "trailhead.firstrun.didSeeAboutWelcome": True,
    "toolkit.startup.max_resumed_crashes": -1,
    "browser.sessionstore.resume_from_crash": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "browser.newtabpage.activity-stream.feeds.section.topstories": False,
    "browser.safebrowsing.update.enabled": False,
}

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--enable-logging=stderr",
    "--v=0",
]


def extra_args(p):
    p.add_argument("--browser", choices=["firefox", "chromium"], required=True)
    p.add_argument("--browser-path", default=None,
                   help="browser executable (default: firefox-esr or chromium on PATH)")
    p.add_argument("--keep-profile", action="store_true", help="keep the temporary browser profile")
    p.add_argument("--rsa-cert", action="store_true",
                   help="give the RTCPeerConnection an RSA-2048 DTLS certificate "
                        "(RTCPeerConnection.generateCertificate) instead of the browser's default ECDSA one")


class Runner:
    def __init__(self, args):
        self.args = args
        self.result = Result(args.browser, args.mode)
        self.whip = Whip(args.whip, args.token)
        self.files = [args.audio] + ([args.audio2] if args.mode == "gateway" else [])
        self.sinks = {}
        self.mlines = []
        self.page_result = None
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.proc = None
        self.session_url_seen = None
        self.profile = tempfile.mkdtemp(prefix=f"whip-{args.browser}-")

    # ------------------------------------------------------------ HTTP
    def handler(self):
        runner = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, fmt, *a):
                pass

            def reply(self, code, body=b"", ctype="text/plain"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                if path == "/page.html":
                    with open(PAGE, "rb") as f:
                        self.reply(200, f.read(), "text/html; charset=utf-8")
                elif path == "/config":
                    a = runner.args
                    cfg = {"whip": a.whip, "token": a.token, "mode": a.mode, "seconds": a.seconds,
                           "timeout": a.timeout, "rsa_cert": a.rsa_cert}
                    self.reply(200, json.dumps(cfg).encode(), "application/json")
                elif path.startswith("/audio/"):
                    i = int(path.rsplit("/", 1)[1])
                    with open(runner.files[i], "rb") as f:
                        self.reply(200, f.read(), "audio/wav")
                elif path == "/favicon.ico":
                    self.reply(404)
                else:
                    self.reply(404)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                path = self.path.split("?")[0]
                if path == "/log":
                    log(f"[{runner.args.browser}] {body.decode(errors='replace')}")
                    self.reply(200)
                elif path == "/hook/offer":
                    self.reply(200, json.dumps(runner.on_offer(json.loads(body)["sdp"])).encode(),
                               "application/json")
                elif path == "/hook/session":
                    runner.session_url_seen = body.decode()
                    self.reply(200)
                elif path.startswith("/pcm/"):
                    mid = urllib_unquote(path[5:])
                    pcm = array.array("h")
                    pcm.frombytes(body[: len(body) // 2 * 2])
                    if sys.byteorder == "big":
                        pcm.byteswap()
                    runner.sink(mid).write(pcm)
                    self.reply(200)
                elif path == "/result":
                    runner.page_result = json.loads(body)
                    self.reply(200)
                    runner.done.set()
                else:
                    self.reply(404)

        return H

    def sink(self, mid):
        with self.lock:
            if mid not in self.sinks:
                self.sinks[mid] = WavSink(os.path.join(self.args.out, f"received-{mid}.wav"))
            return self.sinks[mid]

    def on_offer(self, sdp):
        try:
            ids = [self.args.stream_id, self.args.stream_id2]
            if any(ids):
                sdp = peerlib.set_stream_ids(sdp, ids)
            self.mlines = peerlib.audio_mlines(sdp)
            log("offer", len(sdp), "bytes, audio m-lines", self.mlines)
            if self.args.location:
                for m in self.mlines:
                    self.whip.put_participant(m["stream_id"], self.args.location)
            return {"sdp": sdp, "mlines": self.mlines}
        except Exception as e:  # noqa: BLE001
            return {"error": f"{type(e).__name__}: {e}"}

    # ------------------------------------------------------------ browser
    def command(self, url):
        a = self.args
        if a.browser == "chromium":
            exe = a.browser_path or shutil.which("chromium") or "/usr/bin/chromium"
            return [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", url]
        exe = a.browser_path or shutil.which("firefox-esr") or shutil.which("firefox") or "/usr/bin/firefox-esr"
        with open(os.path.join(self.profile, "user.js"), "w") as f:
            for k, v in FIREFOX_PREFS.items():
                f.write(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n")
        return [exe, "--headless", "--no-remote", "--profile", self.profile, url]

    def browser_version(self):
        a = self.args
        exe = a.browser_path or shutil.which("chromium" if a.browser == "chromium" else "firefox-esr") or a.browser
        try:
            env = dict(os.environ, HOME=self.profile)
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20, env=env).stdout
            return [l for l in out.splitlines() if l.strip()][-1].strip()
        except Exception:  # noqa: BLE001
            return None

    def start_pulseaudio(self):
        """Firefox only runs an AudioContext (state 'running') when cubeb has a real,
        real-time clocked output device; a private PulseAudio with a null sink is one."""
        exe = shutil.which("pulseaudio")
        if not exe:
            raise RuntimeError("pulseaudio is not installed (Firefox needs an audio output for WebAudio); "
                               "run tests/peers/install.sh firefox")
        self.pa_dir = tempfile.mkdtemp(prefix="whip-pulse-")
        sock = os.path.join(self.pa_dir, "native")
        env = dict(os.environ, HOME=self.pa_dir, XDG_RUNTIME_DIR=self.pa_dir, XDG_CONFIG_HOME=self.pa_dir)
        cmd = [exe, "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit=yes", "--disable-shm=yes",
               "-n", "--use-pid-file=no", "--system=no", "--log-target=stderr",
               "--load=module-null-sink sink_name=hearken_null rate=48000",
               f"--load=module-native-protocol-unix socket={sock} auth-anonymous=1"]
        self.pa_log = open(os.path.join(self.args.out, "pulseaudio.log"), "wb")
        self.pa = subprocess.Popen(cmd, stdout=self.pa_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
        for _ in range(100):
            if os.path.exists(sock):
                return f"unix:{sock}"
            if self.pa.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"pulseaudio did not start (see {self.pa_log.name})")

    def stop_pulseaudio(self):
        pa = getattr(self, "pa", None)
        if pa is not None and pa.poll() is None:
            pa.terminate()
            try:
                pa.wait(5)
            except subprocess.TimeoutExpired:
                pa.kill()
                pa.wait(5)
        if getattr(self, "pa_dir", None):
            shutil.rmtree(self.pa_dir, ignore_errors=True)

    def stop_browser(self):
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)  # the browser's own process group (we started it)
            p.wait(5)
        except Exception:  # noqa: BLE001
            try:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            except Exception:  # noqa: BLE001
                pass

    def run(self):
        a = self.args
        hard = a.timeout + a.seconds + 45

        def cleanup():
            self.stop_browser()
            self.stop_pulseaudio()
            sess = (self.page_result or {}).get("session_url") or self.session_url_seen
            if sess and not (self.page_result or {}).get("delete_status"):
                self.whip.session_url = sess
                self.result.d["session_url"] = sess
                self.result.d["delete_status"] = self.whip.delete()

        peerlib.watchdog(self.result, hard + 10, cleanup=cleanup)
        self.result.d["version"] = self.browser_version()
        srv = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{srv.server_address[1]}/page.html"
        cmd = self.command(url)
        log("starting", " ".join(cmd))
        blog = open(os.path.join(a.out, f"{a.browser}.log"), "wb")
        env = dict(os.environ)
        if a.browser == "firefox":
            env["MOZ_HEADLESS"] = "1"
            env["MOZ_CRASHREPORTER_DISABLE"] = "1"
            env["MOZ_REMOTE_SETTINGS_DEVTOOLS"] = "1"  # lets services.settings.server point nowhere
            env["HOME"] = self.profile  # nothing of the caller's home is touched
            try:
                env["PULSE_SERVER"] = self.start_pulseaudio()
            except Exception as e:  # noqa: BLE001
                self.result.fail(str(e))
                self.stop_pulseaudio()
                srv.shutdown()
                return self.result.emit()
        self.proc = subprocess.Popen(cmd, stdout=blog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        deadline = time.monotonic() + hard
        while not self.done.is_set() and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.result.fail(f"{a.browser} exited with {self.proc.returncode} before the page finished "
                                 f"(see {blog.name})")
                break
            self.done.wait(0.2)
        if not self.done.is_set() and not self.result.d["error"]:
            self.result.fail(f"no result from the page within {hard:.0f} s (see {blog.name})")
        self.stop_browser()
        self.stop_pulseaudio()
        srv.shutdown()
        blog.close()
        self.merge()
        if not a.keep_profile:
            shutil.rmtree(self.profile, ignore_errors=True)
        return self.result.emit()

    def merge(self):
        d = self.result.d
        pr = self.page_result or {}
        for k in ("connected", "session_url", "delete_status"):
            if pr.get(k) is not None:
                d[k] = pr[k]
        if pr.get("error"):
            d["error"] = d["error"] or pr["error"]
        d["timings"].update(pr.get("timings", {}))
        d["user_agent"] = pr.get("user_agent")
        d["dtls_certificate"] = pr.get("dtls_certificate")
        page_tracks = {t.get("mid"): t for t in pr.get("tracks", [])}
        mids = [m["mid"] for m in self.mlines] or list(page_tracks)
        for i, mid in enumerate(mids):
            t = {"mid": mid, "stream_id": self.mlines[i]["stream_id"] if i < len(self.mlines) else None,
                 "audio_file": os.path.abspath(self.files[i]) if i < len(self.files) else None,
                 "sent_packets": None, "sent_seconds": 0.0, "received_packets": 0}
            for k, v in page_tracks.get(mid, {}).items():
                if v is not None:
                    t[k] = v
            s = self.sink(mid)
            s.close()
            t.update(s.stats())
            d["tracks"].append(t)
        # a session the page could not DELETE (timeout): delete it here
        d["session_url"] = d["session_url"] or self.session_url_seen
        if d["session_url"] and d["delete_status"] is None:
            self.whip.session_url = d["session_url"]
            try:
                d["delete_status"] = self.whip.delete()
            except Exception as e:  # noqa: BLE001
                log("DELETE from the runner failed:", e)


def urllib_unquote(s):
    import urllib.parse
    return urllib.parse.unquote(s)


def main():
    args = peerlib.parse_args("whip_browser.py", extra_args)
    sys.exit(Runner(args).run())


if __name__ == "__main__":
    main()

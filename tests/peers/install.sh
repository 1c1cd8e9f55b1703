#!/usr/bin/env bash
# Installs what the WHIP peer clients in tests/peers/ need, when it is missing.
# Idempotent: a second run installs nothing and takes about a second.
#
#   tests/peers/install.sh                 # everything
#   tests/peers/install.sh firefox werift  # only some stacks
#
# Stacks: firefox chromium gstreamer aiortc werift (and `wav`: opus-tools, to
# make speech WAVs with opusdec; `speech`: the English pocketsphinx model,
# espeak-ng and sox for crates/hearken-verbal's tests; `sipp`: SIPp and
# baresip, the SIP peers of tests/it/sip/; `cluster`: NATS (nats-server) and
# PostgreSQL, which the cluster tests start privately through
# crates/hearken-testkit/src/services.rs; none of these four is part of
# `all`).
#
# Sources: Debian packages (apt-get), PyPI (pip, into a venv) and npm
# (`npm ci` from the committed package-lock.json). Nothing else is downloaded,
# and no test tool downloads a browser.
#
# Environment:
#   HEARKEN_PEERS_VENV   the aiortc venv (default ${XDG_CACHE_HOME:-~/.cache}/hearken/peers/aiortc-venv)
#   PYTHON               the python that makes the venv (default python3)
#   APT_LOCK_WAIT        seconds to wait for another apt/dpkg to finish (default 900)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${HEARKEN_PEERS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hearken/peers/aiortc-venv}"
PYTHON="${PYTHON:-python3}"
APT_LOCK_WAIT="${APT_LOCK_WAIT:-900}"
AIORTC_REQ="aiortc==1.16.0"

log() { echo "install.sh: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# apt-get that waits for (and never disturbs) another apt/dpkg: DPkg::Lock::Timeout
# makes apt wait for the dpkg lock; on any other lock error we retry.
apt_get() {
  local deadline=$((SECONDS + APT_LOCK_WAIT)) out rc
  while :; do
    set +e
    out="$(as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=60 -y "$@" 2>&1)"
    rc=$?
    set -e
    if [ $rc = 0 ]; then return 0; fi
    if echo "$out" | grep -qiE 'could not get lock|unable to lock|is another process using it|lock-frontend'; then
      if [ $SECONDS -ge $deadline ]; then
        echo "$out" >&2
        log "apt/dpkg still locked after ${APT_LOCK_WAIT}s; giving up"
        return $rc
      fi
      log "apt/dpkg is busy (another apt-get is running); waiting"
      sleep 10
      continue
    fi
    echo "$out" >&2
    return $rc
  done
}

APT_UPDATED=0
apt_install() {
  local missing=() p
  for p in "$@"; do is_installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} = 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local t0=$SECONDS
  if ! apt_get install --no-install-recommends "${missing[@]}"; then
    if [ $APT_UPDATED = 0 ]; then
      log "install failed; running apt-get update and retrying"
      apt_get update
      APT_UPDATED=1
      apt_get install --no-install-recommends "${missing[@]}"
    else
      return 1
    fi
  fi
  log "installed ${missing[*]} in $((SECONDS - t0)) s"
}

install_firefox() {
  apt_install firefox-esr pulseaudio  # pulseaudio: a null sink so WebAudio runs headless
  # fonts are recommended, not required; a headless page without text rendering
  # needs none. Report the version for the record.
  log "$(firefox-esr --version 2>/dev/null || echo 'firefox-esr: version unknown')"
}

install_chromium() {
  apt_install chromium
  log "$(chromium --version 2>/dev/null | head -1 || echo 'chromium: version unknown')"
}

install_gstreamer() {
  apt_install python3-gi gir1.2-glib-2.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
    gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1 gstreamer1.0-tools gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice
  log "$(gst-launch-1.0 --version 2>/dev/null | sed -n 2p || echo 'gstreamer: version unknown')"
}

install_aiortc() {
  if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$AIORTC_REQ" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
want = sys.argv[1].split("==")[1]
sys.exit(0 if version("aiortc") == want else 1)
EOF
  then
    log "aiortc already in $VENV"
  else
    local t0=$SECONDS
    log "creating $VENV with $AIORTC_REQ"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$AIORTC_REQ"
    log "aiortc venv ready in $((SECONDS - t0)) s"
  fi
  "$VENV/bin/python" - <<'EOF' >&2
import sys
from importlib.metadata import version
print("install.sh: aiortc %s, aioice %s, av %s, Python %s"
      % (version("aiortc"), version("aioice"), version("av"), sys.version.split()[0]))
EOF
}

install_werift() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
  fi
  local dir="$HERE/werift" stamp="$HERE/werift/node_modules/.hearken-lock-sha256"
  local want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "werift node_modules up to date"
  else
    local t0=$SECONDS
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" >"$stamp"
    log "werift installed in $((SECONDS - t0)) s"
  fi
  log "$(cd "$dir" && node -e 'const fs=require("fs");const v=(p)=>JSON.parse(fs.readFileSync("node_modules/"+p+"/package.json")).version;console.log("werift "+v("werift")+", opusscript "+v("opusscript")+", Node.js "+process.version)')"
}

install_wav() {
  apt_install opus-tools
}

# The verbal-consent recogniser's tests: the model it loads (pocketsphinx-en-us),
# the voice that says the answers (espeak-ng) and the resampler to 48 kHz (sox).
install_speech() {
  apt_install pocketsphinx-en-us espeak-ng sox
  log "$(espeak-ng --version 2>/dev/null | head -1 || echo 'espeak-ng: version unknown')"
}

# SIP dial-in's tests (tests/it/sip/) drive Hearken with SIPp scenarios
# (tests/fixtures/sipp/) and dial in with baresip, a real phone (headless:
# baresip-core, no sound system).
install_sipp() {
  apt_install sip-tester baresip-core
  # `sipp -v` exits non-zero after printing its version.
  log "$( (sipp -v 2>/dev/null || true) | grep -m1 SIPp | sed 's/^ *//')"
  log "$( (baresip -h 2>&1 || true) | grep -m1 baresip)"
}

# A Hearken cluster's tests (issue 13) start their own NATS with JetStream
# and their own PostgreSQL on free loopback ports, inside the tests' network
# namespace (crates/hearken-testkit/src/services.rs); they need only the
# binaries. Debian starts a PostgreSQL cluster on port 5432 when it installs
# postgresql (and nats-server's service, if enabled); the tests never use
# them, and this script leaves the machine's services alone.
install_cluster() {
  apt_install nats-server postgresql
  log "$( (nats-server --version 2>/dev/null || /usr/sbin/nats-server --version 2>/dev/null || echo 'nats-server: version unknown') | head -1)"
  local bindir
  bindir="$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  log "$("$bindir/postgres" --version 2>/dev/null || echo 'postgres: version unknown')"
}

stacks=("$@")
[ ${#stacks[@]} = 0 ] && stacks=(all)
for s in "${stacks[@]}"; do
  case "$s" in
    all) install_firefox; install_chromium; install_gstreamer; install_aiortc; install_werift ;;
    firefox | firefox-esr) install_firefox ;;
    chromium) install_chromium ;;
    gstreamer | webrtcbin) install_gstreamer ;;
    aiortc) install_aiortc ;;
    werift) install_werift ;;
    wav | opus-tools) install_wav ;;
    speech) install_speech ;;
    sipp | sip-tester | sip | baresip) install_sipp ;;
    cluster | nats | nats-server | postgres | postgresql) install_cluster ;;
    *) log "unknown stack '$s' (firefox chromium gstreamer aiortc werift wav speech sipp cluster all)"; exit 2 ;;
  esac
done

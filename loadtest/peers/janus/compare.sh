#!/usr/bin/env bash
# Hearken side by side with Janus under the same load (issue 15): for each
# speaker count, a Janus run and a Hearken run, one after the other, each
# server pinned to CPU 0 and the same hearken-loadtest command pinned to
# CPU 1 (`chrt -r 10 taskset -c 1`, as loadtest/measure.sh runs it); then a
# markdown table of the pairs, written into loadtest/RESULTS.md under
# "## Side by side with Janus".
#
#   loadtest/peers/janus/compare.sh [--speakers "100 250 1000"] [--light 20]
#       [--duration 60] [--ramp 50] [--talk-ratio 1.0] [--rounds 1] [--out DIR]
#       [--no-write] [-- MORE_LOADTEST_ARGS]
#
# By default every speaker talks all the time (`--talk-ratio 1.0`), 5
# speakers per call; `--light N` adds a first pair at N speakers for the
# WHIP answer time of an idle server (0 to skip); `--rounds R` repeats the
# whole list. While each measurement runs, others.py notes the CPU that
# other processes (a build, a test suite) took on the machine; the table
# names them under the runs they skewed.
#
# Janus (Debian's `janus` 1.1.2; `install.sh` beside this script installs it
# and the adapter's aiohttp) runs with this folder's configuration
# (janus.jcfg: one static event loop, the HTTP transport with the Admin API,
# the VideoRoom plugin; each call a room recording every publisher to its
# own .mjr file) in a network namespace of its own: Janus leaves loopback
# interfaces out of its ICE candidates and libnice binds each ICE socket to
# its interface's address, so on one machine it needs an interface of its
# own. The namespace `hkjanus` holds the end 10.77.0.2 of a veth pair whose
# host end is 10.77.0.1; the generator and the WHIP adapter (whip_janus.py,
# on 127.0.0.1:18090, pinned with Janus to CPU 0) stay in the host
# namespace on 127.0.0.1. Packets from 127.0.0.1 to 10.77.0.2 and back need
# `route_localnet=1` on both ends, `arp_announce=2` on the host end (ARP
# from 10.77.0.1, not 127.0.0.1) and, in the namespace, the loopback
# interface left down (so that 127.0.0.1 is routed to the host) with
# `accept_local=1`. The namespace is made fresh at start and removed at
# exit. The adapter's /metrics gives the generator
# hearken_rtp_packets_received_total from Janus's Admin API (`handle_info`
# of every publisher), or, with JANUS_COUNT=mjr, from the frames in the
# .mjr files; the generator reads Janus's CPU and RSS from /proc of the
# Janus process (`--server-pid`).
#
# Hearken runs through loadtest/measure.sh (one media worker, CPU 0).
#
# Environment:
#   HEARKEN_BIN_DIR  where hearken and hearken-loadtest are (default
#                    ${CARGO_TARGET_DIR:-target}/release)
#   MEASURE_LOCK     a file to flock around every measurement, so that
#                    measurements of several people on one machine never
#                    overlap (unset: no lock)
#   HEARKEN_COMMIT   the commit the binaries were built from, for the
#                    table (default: this checkout's HEAD when the binaries
#                    are its own build; "unknown" with HEARKEN_BIN_DIR)
#   JANUS_COUNT      admin (default) or mjr: where Janus's packet count
#                    comes from
#
# Needs root (network namespace, sysctls, real-time priority).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cd "$repo"
bin="${HEARKEN_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/release}"
speakers_list="100 250 1000"
light=20
duration=60
ramp=50
talk=1.0
rounds=1
out=""
write=1
command_line="loadtest/peers/janus/compare.sh $*"
while (($#)); do
  case "$1" in
    --speakers) speakers_list="$2"; shift 2 ;;
    --light) light="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --ramp) ramp="$2"; shift 2 ;;
    --talk-ratio) talk="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-write) write=0; shift ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
extra=("$@")
count="${JANUS_COUNT:-admin}"

ns=hkjanus
host_if=hkjanus0
ns_if=hkjanus1
host_ip=10.77.0.1
janus_ip=10.77.0.2
adapter="127.0.0.1:18090"
per_call=5

die() { echo "compare.sh: $*" >&2; exit 2; }
say() { echo "compare.sh: $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (network namespace, sysctls)"
command -v janus >/dev/null || die "janus is missing: run $here/install.sh"
/usr/bin/python3 -c 'import aiohttp' 2>/dev/null || die "python3-aiohttp is missing: run $here/install.sh"
for b in hearken hearken-loadtest; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing: build with cargo build --release -p hearken -p hearken-loadtest, or set HEARKEN_BIN_DIR"
done
for n in $light $speakers_list; do
  [ "$n" = 0 ] || [ $((n % per_call)) = 0 ] || die "speaker counts must be multiples of $per_call ($n)"
done
if pgrep -x janus >/dev/null; then
  die "a janus process is already running (pid $(pgrep -x janus | tr '\n' ' ')); stop it first"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # the generator needs a socket per speaker

out="${out:-$(mktemp -d /tmp/janus-compare.XXXXXX)}"
mkdir -p "$out"
say "reports in $out"

teardown_netns() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  ip link del "$host_if" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}

setup_netns() {
  teardown_netns
  ip netns add "$ns"
  ip link add "$host_if" type veth peer name "$ns_if" netns "$ns"
  ip addr add "$host_ip/24" dev "$host_if"
  ip link set "$host_if" up
  sysctl -qw "net.ipv4.conf.$host_if.route_localnet=1" "net.ipv4.conf.$host_if.arp_announce=2"
  # The namespace's loopback stays down: 127.0.0.1 there is then no local
  # address, and Janus's packets to the generator (127.0.0.1) take the
  # default route to the host.
  ip netns exec "$ns" ip addr add "$janus_ip/24" dev "$ns_if"
  ip netns exec "$ns" ip link set "$ns_if" up
  ip netns exec "$ns" sysctl -qw "net.ipv4.conf.$ns_if.route_localnet=1" "net.ipv4.conf.$ns_if.accept_local=1"
  ip netns exec "$ns" ip route add default via "$host_ip"
}

janus_pid=""
adapter_pid=""
run_dir=""
stop_janus() {
  if [ -n "$adapter_pid" ]; then
    kill -TERM "$adapter_pid" 2>/dev/null || true
    wait "$adapter_pid" 2>/dev/null || true
    adapter_pid=""
  fi
  if [ -n "$janus_pid" ]; then
    kill -TERM "$janus_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$janus_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$janus_pid" 2>/dev/null || true
    wait "$janus_pid" 2>/dev/null || true
    janus_pid=""
  fi
  if [ -n "$run_dir" ]; then
    rm -rf "$run_dir"
    run_dir=""
  fi
}

cleanup() {
  stop_janus
  teardown_netns
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs "$@" in a subshell, holding $MEASURE_LOCK when it is set, with
# others.py watching the rest of the machine meanwhile (into the last
# argument, the report, plus .others). The lock's descriptor (9) is not
# passed on to the servers.
locked() {
  if [ -n "${MEASURE_LOCK:-}" ]; then
    mkdir -p "$(dirname "$MEASURE_LOCK")"
    (
      flock 9
      watched "$@"
    ) 9>>"$MEASURE_LOCK"
  else
    (watched "$@")
  fi
}

watched() {
  local report="${*: -1}" watcher
  /usr/bin/python3 "$here/others.py" "$report.others" --exclude-comm janus \
    --exclude-comm hearken --exclude-comm hearken-loadtes --exclude-comm whip_janus 9>&- &
  watcher=$!
  "$@"
  kill -TERM "$watcher"
  wait "$watcher" || true
  local busy
  busy="$(/usr/bin/python3 -c 'import json,sys; print(" ".join(f"{c}={s}s" for c, s in json.load(open(sys.argv[1]))["cpu_s"].items()))' "$report.others")"
  [ -z "$busy" ] || say "warning: other processes used CPU during this measurement: $busy"
}

rt=()
chrt -r 10 true 2>/dev/null && rt=(chrt -r 10)

loadtest_args() { # SPEAKERS ROUND
  echo --calls $(($1 / per_call)) --speakers-per-call "$per_call" --duration "$duration" \
    --ramp "$ramp" --talk-ratio "$talk" --seed $((1000 + $2)) --json "${extra[@]}"
}

# One Janus measurement: Janus and the adapter up, the generator, both down.
measure_janus() { # SPEAKERS ROUND REPORT
  local n=$1 round=$2 report=$3
  trap stop_janus EXIT
  trap 'exit 130' INT TERM
  run_dir="$(mktemp -d /tmp/janus-run.XXXXXX)"
  mkdir -p "$run_dir/rec"
  ip netns exec "$ns" taskset -c 0 janus -C "$here/janus.jcfg" -F "$here" \
    -L "$run_dir/janus.log" -N -o 9>&- >/dev/null 2>&1 &
  janus_pid=$!
  for _ in $(seq 100); do
    curl -fs "http://$janus_ip:8088/janus/info" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "http://$janus_ip:8088/janus/info" >/dev/null || {
    tail -n 20 "$run_dir/janus.log" >&2
    die "Janus did not start"
  }
  # Through a link named whip_janus, so that others.py can tell it apart.
  ln -s /usr/bin/python3 "$run_dir/whip_janus"
  taskset -c 0 "$run_dir/whip_janus" "$here/whip_janus.py" --listen "$adapter" \
    --janus "http://$janus_ip:8088/janus" --admin "http://$janus_ip:7088/admin" \
    --rec-dir "$run_dir/rec" --count "$count" 9>&- 2>"$run_dir/adapter.log" &
  adapter_pid=$!
  for _ in $(seq 100); do
    curl -fs "http://$adapter/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  say "janus, $n speakers (round $round): Janus pid $janus_pid"
  # shellcheck disable=SC2046
  "${rt[@]}" taskset -c 1 "$bin/hearken-loadtest" --url "http://$adapter" --token hearken-dev \
    --server-pid "$janus_pid" $(loadtest_args "$n" "$round") 9>&- \
    >"$report.out" 2>"$report.err" || say "the generator exited with $? (see $report.err)"
  tail -n 1 "$report.out" >"$report"
  grep -E "^\[ERR\]" "$run_dir/janus.log" | head -n 5 >&2 || true
  grep -v "^whip_janus: \(janus session\|listening\)" "$run_dir/adapter.log" | head -n 5 >&2 || true
  local recorded
  recorded="$(du -sh "$run_dir/rec" | cut -f1)"
  say "janus, $n speakers: $(summary "$report"); recordings $recorded"
  stop_janus
}

measure_hearken() { # SPEAKERS ROUND REPORT
  local n=$1 round=$2 report=$3
  say "hearken, $n speakers (round $round)"
  # shellcheck disable=SC2046
  HEARKEN_BIN_DIR="$bin" "$repo/loadtest/measure.sh" -- $(loadtest_args "$n" "$round") 9>&- \
    >"$report.out" 2>"$report.err" || say "measure.sh exited with $? (see $report.err)"
  tail -n 1 "$report.out" >"$report"
  say "hearken, $n speakers: $(summary "$report")"
}

summary() {
  /usr/bin/python3 - "$1" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"no report ({e})"); sys.exit()
f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
print(f"{r['speakers_connected']}/{r['speakers_requested']} connected, "
      f"{f(r.get('server_cpu_us_per_packet'))} us/pkt, "
      f"WHIP p99 {f(r['whip_answer_ms'].get('p99'))} ms, "
      f"RSS/spk {f(r.get('rss_kb_per_speaker_over_baseline'))} KB over baseline, "
      f"loss {f((r.get('loss') or 0) * 100, 2)} %, errors {r.get('errors_by_kind')}")
EOF
}

setup_netns
pairs=()
for round in $(seq "$rounds"); do
  list="$speakers_list"
  [ "$round" = 1 ] && [ "$light" != 0 ] && list="$light $list"
  for n in $list; do
    locked measure_janus "$n" "$round" "$out/janus-$n-r$round.json"
    locked measure_hearken "$n" "$round" "$out/hearken-$n-r$round.json"
    pairs+=("$n:$round")
  done
done

# Binaries from elsewhere need not be this checkout's: their commit is
# what HEARKEN_COMMIT says, never guessed from HEAD.
if [ -n "${HEARKEN_COMMIT:-}" ]; then
  commit="$HEARKEN_COMMIT"
elif [ -z "${HEARKEN_BIN_DIR:-}" ]; then
  commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
else
  commit=unknown
fi
janus_version="$(dpkg-query -W -f='${Version}' janus 2>/dev/null || echo unknown)"
results=()
[ "$write" = 1 ] && results=(--results "$repo/loadtest/RESULTS.md")
/usr/bin/python3 "$here/table.py" --dir "$out" --command "$command_line" --commit "$commit" \
  --janus-version "$janus_version" --count "$count" --duration "$duration" --ramp "$ramp" --talk-ratio "$talk" \
  --light "$light" "${results[@]}" "${pairs[@]}"

#!/usr/bin/env bash
# Where a transcribed speaker's memory goes: the same load twice under
# heaptrack, recording only and then transcribing (`linear16` to the
# generator's fake Deepgram), and the heap at its peak compared by where it
# was allocated (loadtest/heap_diff.py), per speaker.
#
#   loadtest/heap_profile.sh [--out DIR] [--encoding linear16|ogg-opus] -- LOADTEST_ARGS...
#
# e.g. loadtest/heap_profile.sh -- --calls 20 --speakers-per-call 5 --duration 40 --ramp 50 --talk-ratio 0.25 --seed 7
#
# The binaries come from $HEARKEN_BIN_DIR (as for measure.sh). A debug build
# is enough and runs better under heaptrack than its cost suggests: the
# sizes of the data are a release build's, though an async task's state may
# be larger than in release. Keep the load small (about 100 speakers): under
# heaptrack every allocation is recorded. heaptrack comes from Debian's
# package, installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
out=""
encoding=linear16
while (($#)); do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --encoding) encoding="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (loadtest arguments go after --)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "error: give the loadtest arguments after --" >&2; exit 2; }
command -v heaptrack >/dev/null || install_debian_packages heaptrack
target="${HEARKEN_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
out="${out:-$(mktemp -d)}"
mkdir -p "$out"
server="$(cd "$target" && pwd)/hearken"

# measure.sh stops the server with TERM: the wrapper passes it on to the
# server under heaptrack, which then writes the rest of its record.
cat >"$out/heaptrack-hearken" <<EOF
#!/usr/bin/env bash
trap 'pkill -TERM -xf "$server serve"' TERM
heaptrack -o "$out/heap-\$HEAP_RUN" "$server" "\$@" >"$out/heaptrack-\$HEAP_RUN.log" 2>&1 &
wait \$!
wait \$!
EOF
chmod +x "$out/heaptrack-hearken"

speakers=""
for run in recording transcribing; do
  extra=()
  [ "$run" = transcribing ] && extra=(--transcribe "$encoding")
  report=$(HEAP_RUN=$run loadtest/measure.sh "${extra[@]}" --server-bin "$out/heaptrack-hearken" -- "$@" --json | tail -n 1)
  echo "$report" >"$out/report-$run.json"
  speakers=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["speakers_connected"])' <<<"$report")
  # The server's record is complete once heaptrack has exited.
  for _ in $(seq 300); do pgrep -xf "$server serve" >/dev/null || break; sleep 0.2; done
  heaptrack_print -f "$out/heap-$run.zst" --print-peaks 0 --print-allocators 0 \
    --print-temporary 0 --print-leaks 0 \
    --flamegraph-cost-type peak --print-flamegraph "$out/peak-$run.folded" >"$out/summary-$run.txt"
  grep -E "peak heap memory" "$out/summary-$run.txt" | sed "s/^/$run: /"
done
python3 loadtest/heap_diff.py "$out/peak-recording.folded" "$out/peak-transcribing.folded" --speakers "$speakers"
echo "heaptrack records and reports are in $out" >&2

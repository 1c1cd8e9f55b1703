#!/usr/bin/env bash
# How cost grows with load: loadtest/measure.sh at 250, 500, 1,000, 2,000
# and 4,000 speakers (five per call), with 25 % and with 100 % of them
# talking, recording only; one JSON report per run goes to OUT, then
# loadtest/plot_scaling.py draws the plot and prints the table that
# loadtest/RESULTS.md shows.
#
#   loadtest/scale.sh [OUT.jsonl] [PLOT.png]
#
# Defaults: loadtest/scaling.jsonl and loadtest/scaling.png. The hold is
# HOLD seconds (default 30) after a ramp of RAMP sessions per second
# (default 100); SPEAKERS and TALK override the lists, e.g.
# SPEAKERS="250 500" TALK="0.25". Needs python3-matplotlib for the plot
# (installed with apt-get when missing) and the release binaries
# (`cargo build --release -p hearken -p hearken-loadtest`).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-loadtest/scaling.jsonl}"
plot="${2:-loadtest/scaling.png}"
hold="${HOLD:-30}"
ramp="${RAMP:-100}"
read -r -a speakers <<<"${SPEAKERS:-250 500 1000 2000 4000}"
read -r -a talk <<<"${TALK:-0.25 1.0}"
# One socket per speaker on the generator's side.
ulimit -n 65536 2>/dev/null || true
: >"$out"
for ratio in "${talk[@]}"; do
  for n in "${speakers[@]}"; do
    calls=$((n / 5))
    echo "scale: $n speakers, talk ratio $ratio" >&2
    report="$(loadtest/measure.sh -- --calls "$calls" --speakers-per-call 5 \
      --duration "$hold" --ramp "$ramp" --talk-ratio "$ratio" --json | tail -n 1)"
    echo "$report" >>"$out"
  done
done
# Debian's python3, where its python3-matplotlib is (another python3 may come
# first in PATH).
python=/usr/bin/python3
[ -x "$python" ] || python=python3
if ! "$python" -c 'import matplotlib' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-matplotlib >&2
fi
"$python" loadtest/plot_scaling.py "$out" "$plot"

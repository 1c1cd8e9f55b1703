#!/usr/bin/env bash
# Runs AFL++ on one fuzz target (or each in turn) for a while, then merges
# what it found back into the corpus and records how many executions it made.
#
#   fuzz/run.sh TARGET SECONDS   one target (see `fuzz/run.sh list`)
#   fuzz/run.sh all SECONDS      every target, one after another
#   fuzz/run.sh rest SECONDS [TARGET...]
#                                every target (or those named) short of the
#                                goal, in turn, each until it reaches the goal
#                                or for SECONDS
#   fuzz/run.sh totals           executions per target so far (EXECUTIONS.md)
#   fuzz/run.sh list             the targets
#
# Needs cargo-afl (`cargo install cargo-afl --locked`, then
# `cargo afl config --build` once). Seeds and findings live in
# fuzz/corpus/TARGET/ (replayed by `cargo test --lib fuzzing`); AFL's
# working directory is $FUZZ_OUT/TARGET (default fuzz/out/, not committed).
# The fuzzer runs under `nice -n 19`: it is a background job. The goal is
# $FUZZ_GOAL executions per target in total (default 10 million).
#
# After the run: the queue and the corpus are minimised together with
# afl-cmin (the seed-* files and the finding-* files, inputs of bugs found,
# are always kept, and at most $MAX_KEPT others, the smallest), crashes and hangs are copied
# to fuzz/findings/TARGET/ and the run is appended to fuzz/EXECUTIONS.md
# (target, executions, crashes, hangs, seconds, date, commit). The exit
# status is 1 if the run found a crash or a hang.
set -euo pipefail

FUZZ_DIR=$(cd "$(dirname "$0")" && pwd)
cd "$FUZZ_DIR"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FUZZ_DIR/target}/afl
FUZZ_OUT=${FUZZ_OUT:-$FUZZ_DIR/out}
LEDGER=$FUZZ_DIR/EXECUTIONS.md
# Per-execution time limit (ms): longer is a hang. The engine targets build
# an engine per input, which takes well under a millisecond.
EXEC_TIMEOUT_MS=${EXEC_TIMEOUT_MS:-1000}
# Most inputs kept per target besides the seeds. The engine targets are not
# perfectly stable (str0m's random ICE credentials and SSRCs, hash orders),
# so afl-cmin keeps more than it needs; the smallest inputs are kept.
MAX_KEPT=${MAX_KEPT:-200}
# Executions per target, in total over all runs, that `rest` works towards.
FUZZ_GOAL=${FUZZ_GOAL:-10000000}

targets() {
    sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^hearken-fuzz$'
}

usage() {
    sed -n '2,13p' "$FUZZ_DIR/run.sh" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

totals() {
    # Sums the executions column of the ledger per target.
    awk -F'|' '/^\| [a-z_]+ +\| [0-9]/ {
        gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4); gsub(/ /, "", $5)
        execs[$2] += $3; crashes[$2] += $4; hangs[$2] += $5
    } END {
        printf "%-15s %15s %8s %6s\n", "#target", "executions", "crashes", "hangs"
        for (t in execs) printf "%-15s %15d %8d %6d\n", t, execs[t], crashes[t], hangs[t]
    }' "$LEDGER" | sort -k1,1 | (
        read -r header
        echo "$header"
        sort
    )
}

max_len() {
    # The longest input AFL may make for a target (its -G; AFL's default is
    # 1 MB): room for hundreds of packets, pages, lines or records, so the
    # fuzzer does not spend its time on inputs that repeat what a shorter
    # one does (left alone, the dtmf queue grew inputs of 113 KB, 12,000
    # packets, and its rate fell from 11,000 to 200 a second; rtp's, with
    # 16 KB inputs of 100 packets, from 1,600 to 85).
    case $1 in
        dtmf | datagram | rtp | srtp_in) echo 4096 ;;
        roq | meetings_json) echo 16384 ;;
        *) echo 65536 ;;
    esac
}

total_of() {
    # The executions of one target so far (0 before its first run).
    totals | awk -v t="$1" '$1 == t { print $2; found = 1 } END { if (!found) print 0 }'
}

build() {
    nice -n 19 cargo afl build --release --quiet
}

stat_of() {
    # A value of AFL's fuzzer_stats (0 when absent).
    sed -n "s/^$1 *: *//p" "$2" | head -n1 | grep . || echo 0
}

run_one() {
    # TARGET SECONDS [EXECS]: at most SECONDS, and at most about EXECS
    # executions when given.
    local target=$1 seconds=$2 max_execs=${3:-}
    local binary=$CARGO_TARGET_DIR/release/$target
    local corpus=$FUZZ_DIR/corpus/$target
    local out=$FUZZ_OUT/$target
    [ -x "$binary" ] || { echo "no binary $binary (did the build fail?)" >&2; exit 1; }
    [ -d "$corpus" ] && [ -n "$(ls -A "$corpus")" ] || { echo "no seeds in $corpus" >&2; exit 1; }
    rm -rf "$out"
    mkdir -p "$out"
    local limit=(-V "$seconds" -G "$(max_len "$target")")
    [ -n "$max_execs" ] && limit+=(-E "$max_execs")
    echo "== $target: fuzzing for ${seconds}s${max_execs:+ or $max_execs executions}" >&2
    # AFL_NO_UI: a log, not a screen. The CPU-frequency and core-pattern
    # checks are the host's business, not the fuzzer's. The corpus comes
    # from earlier runs, so it is calibrated quickly and only new finds get
    # the (slow, uncounted) CmpLog pass: more executions in the same time.
    AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_NO_AFFINITY=1 AFL_AUTORESUME=0 AFL_FAST_CAL=1 AFL_CMPLOG_ONLY_NEW=1 \
        nice -n 19 cargo afl fuzz -i "$corpus" -o "$out" "${limit[@]}" \
        -t "$EXEC_TIMEOUT_MS" -m none -- "$binary" > "$out/afl.log" 2>&1 || {
        echo "afl-fuzz failed; the end of its log:" >&2
        tail -n 30 "$out/afl.log" >&2
        exit 1
    }
    local stats=$out/default/fuzzer_stats
    local execs crashes hangs
    execs=$(stat_of execs_done "$stats")
    # What it ran for: less than asked when it reached its executions.
    seconds=$(stat_of run_time "$stats")
    crashes=$(stat_of saved_crashes "$stats")
    hangs=$(stat_of saved_hangs "$stats")

    # Findings: kept for triage (and, once fixed, in the corpus).
    if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
        mkdir -p "$FUZZ_DIR/findings/$target"
        for f in "$out"/default/crashes/id* "$out"/default/hangs/id*; do
            [ -e "$f" ] || continue
            local kind=crash
            [ "$(basename "$(dirname "$f")")" = hangs ] && kind=hang
            cp "$f" "$FUZZ_DIR/findings/$target/$kind-$(sha1sum "$f" | cut -c1-16)"
        done
    fi

    merge "$target" "$binary" "$corpus" "$out"

    local commit
    commit=$(git -C "$FUZZ_DIR" rev-parse --short HEAD)
    [ -f "$LEDGER" ] || printf '%s\n' \
        '# Fuzzing executions' '' \
        'One line per run of `fuzz/run.sh` (AFL++ `fuzzer_stats`); `fuzz/run.sh totals` sums them.' '' \
        '| target | executions | crashes | hangs | seconds | date | commit |' \
        '| --- | --- | --- | --- | --- | --- | --- |' > "$LEDGER"
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$target" "$execs" "$crashes" "$hangs" \
        "$seconds" "$(date -u +%Y-%m-%dT%H:%MZ)" "$commit" >> "$LEDGER"
    echo "== $target: $execs executions, $crashes crashes, $hangs hangs; corpus $(ls "$corpus" | wc -l) files" >&2
    [ "$crashes" = 0 ] && [ "$hangs" = 0 ]
}

merge() {
    # The smallest set of corpus and queue entries that covers every edge
    # either covers, named by content; the seeds stay whatever they cover.
    local target=$1 binary=$2 corpus=$3 out=$4
    local pool=$out/merge-in min=$out/merge-out
    mkdir -p "$pool"
    cp "$corpus"/* "$pool"/
    find "$out/default/queue" -maxdepth 1 -type f -name 'id*' -exec cp {} "$pool"/ \;
    # afl-cmin sizes its map from the target's own (a few hundred edges for
    # the small targets), and then records no edge at all: give it room.
    AFL_MAP_SIZE=262144 AFL_SKIP_CPUFREQ=1 nice -n 19 cargo afl cmin -i "$pool" -o "$min" -t "$EXEC_TIMEOUT_MS" \
        -m none -- "$binary" > "$out/cmin.log" 2>&1 || {
        echo "afl-cmin failed (corpus left as it was); the end of its log:" >&2
        tail -n 20 "$out/cmin.log" >&2
        return 0
    }
    find "$corpus" -maxdepth 1 -type f ! -name 'seed-*' ! -name 'finding-*' -delete
    # Sorted into a file first: `head` closing a pipe early would fail the
    # pipeline (pipefail).
    find "$min" -maxdepth 1 -type f ! -name 'seed-*' ! -name 'finding-*' -printf '%s %p\n' | sort -n > "$out/kept"
    head -n "$MAX_KEPT" "$out/kept" | cut -d' ' -f2- | while read -r f; do
        cp "$f" "$corpus/$(sha1sum "$f" | cut -c1-16)"
    done
    # A seed or finding whose exact bytes the queue also holds needs no
    # second copy.
    for s in "$corpus"/seed-* "$corpus"/finding-*; do
        [ -e "$s" ] || continue
        local twin
        twin=$corpus/$(sha1sum "$s" | cut -c1-16)
        [ -e "$twin" ] && rm -f "$twin"
    done
    return 0
}

case ${1:-} in
    list) targets ;;
    totals) totals ;;
    all)
        [ $# -eq 2 ] || usage
        build
        status=0
        for t in $(targets); do run_one "$t" "$2" || status=1; done
        totals
        exit $status
        ;;
    rest)
        [ $# -ge 2 ] || usage
        seconds=$2
        shift 2
        chosen=$(targets)
        [ $# -eq 0 ] || chosen=$*
        for t in $chosen; do
            targets | grep -qx "$t" || { echo "unknown target $t; targets: $(targets | xargs)" >&2; exit 2; }
        done
        build
        status=0
        for t in $chosen; do
            done_so_far=$(total_of "$t")
            [ "$done_so_far" -lt "$FUZZ_GOAL" ] || continue
            run_one "$t" "$seconds" $((FUZZ_GOAL - done_so_far)) || status=1
        done
        totals
        exit $status
        ;;
    "" | -h | --help) usage ;;
    *)
        [ $# -eq 2 ] || usage
        targets | grep -qx "$1" || { echo "unknown target $1; targets: $(targets | xargs)" >&2; exit 2; }
        build
        run_one "$1" "$2"
        ;;
esac

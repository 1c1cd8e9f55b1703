#!/usr/bin/env python3
"""What a second run holds at its heap's peak beyond a first, by where it was
allocated, per speaker: a markdown table from two of heaptrack_print's
folded stacks (`--flamegraph-cost-type peak --print-flamegraph`).

    heap_diff.py BASE.folded OTHER.folded --speakers N [--rows 25]

Each stack is named by its last few frames that say something (the
allocator's own frames, the runtime's and the standard library's are left
out), so that the same allocation site in both runs has the same name.
"""

import argparse
import collections
import re

# Frames that name no site of their own: the allocator, std's collections
# and the async runtime's plumbing between a task and its code.
NOISE = re.compile(
    r"^(0x|_R|alloc_impl|finish_grow|new<>$|new$|__rust|malloc|calloc|realloc|"
    r"allocate|alloc$|box_new|poll<>|pin<>|call<>|\{closure#0\}<>|grow|do_reserve|"
    r"reserve|try_|with_capacity|to_vec|clone|do_call<>|with_mut<>|poll_future<>|"
    r"catch_unwind<>|poll_inner<>|run_task|from_iter<>|push_mut<>|push_back_mut<>|"
    r"from_elem<>)"
)
HASH = re.compile(r"::h[0-9a-f]{16}$")
DEPTH = 3


def site(stack):
    frames = [HASH.sub("", f.split(" (")[0]) for f in stack.split(";") if f]
    named = [
        f
        for f in frames
        if not NOISE.match(f)
        and "tokio::runtime" not in f
        and "AssertUnwindSafe" not in f
        and not f.startswith(("std::", "core::", "alloc::", "_$LT$alloc", "_$LT$core"))
    ]
    return " ← ".join(reversed(named[-DEPTH:])) or "(unnamed)"


def load(path):
    bytes_at = collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, cost = line.rstrip("\n").rpartition(" ")
            if cost.isdigit():
                bytes_at[site(stack)] += int(cost)
    return bytes_at


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("other")
    parser.add_argument("--speakers", type=int, required=True)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    base, other = load(args.base), load(args.other)
    per = 1024 * args.speakers
    total = (sum(other.values()) - sum(base.values())) / per
    print(f"At the peak, {total:.1f} KB more per speaker ({args.speakers} speakers).\n")
    print("| KB per speaker | allocated at (innermost first) |")
    print("|---:|---|")
    sites = sorted(set(base) | set(other), key=lambda s: base[s] - other[s])
    for s in sites[: args.rows]:
        print(f"| {(other[s] - base[s]) / per:.1f} | `{s[:160]}` |")


if __name__ == "__main__":
    main()

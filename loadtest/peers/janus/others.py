#!/usr/bin/python3
"""Watches the CPU that processes other than a measurement's own use while
it runs (a build or a test suite on the same two cores skews what the
servers are measured to cost). Every second it reads /proc/*/stat and adds
up, by command name, the CPU each process used since the last reading;
on SIGTERM it writes to OUT a JSON object: the seconds watched and the CPU
seconds of each command name that used at least 2 % of a core on average.

  others.py OUT [--exclude-comm NAME]...

Processes whose command name is excluded (the servers, the generator, the
adapter) and kernel threads are not counted. A process that lives less
than a second is missed."""

import argparse
import json
import os
import signal
import time

TICKS = os.sysconf("SC_CLK_TCK")


def read():
    seen = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[6]) & 0x00200000:  # a kernel thread (PF_KTHREAD)
            continue
        seen[pid] = (comm, int(fields[11]) + int(fields[12]))
    return seen


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--exclude-comm", action="append", default=[])
    args = p.parse_args()
    excluded = set(args.exclude_comm) | {"others.py"}
    me = str(os.getpid())
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    started = time.monotonic()
    used = {}
    last = read()
    parent = os.getppid()
    while not stop and os.getppid() == parent:  # the measurement's shell may die
        time.sleep(1)
        now = read()
        for pid, (comm, ticks) in now.items():
            if pid == me or comm in excluded:
                continue
            before = last.get(pid)
            delta = ticks - before[1] if before and before[0] == comm else 0
            if delta > 0:
                used[comm] = used.get(comm, 0) + delta / TICKS
        last = now
    watched = time.monotonic() - started
    busy = {c: round(s, 1) for c, s in sorted(used.items(), key=lambda x: -x[1]) if s >= 0.02 * watched}
    with open(args.out, "w") as f:
        json.dump({"watched_s": round(watched, 1), "cpu_s": busy}, f)


if __name__ == "__main__":
    main()

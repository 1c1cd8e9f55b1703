#!/usr/bin/env python3
"""Draws how the server's cost grows with load, from loadtest/scale.sh's
reports (one hearken-loadtest JSON report per line), and prints the
markdown table loadtest/RESULTS.md shows.

    python3 loadtest/plot_scaling.py REPORTS.jsonl PLOT.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display: a file only
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def fmt(value, digits=1):
    return "" if value is None else f"{value:,.{digits}f}"


def speakers(report):
    connected, requested = report["speakers_connected"], report["speakers_requested"]
    return f"{connected:,}" if connected == requested else f"{connected:,} of {requested:,}"


def table(reports):
    rows = [
        "| speakers | talk | packets/s | server µs/pkt | server core busy | "
        "RSS/speaker (KB) | p99 datagram-to-sink (ms) | p99 WHIP answer (ms) | "
        "p99 setup (ms) | generator µs/pkt | late sends | lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(reports, key=lambda r: (r["talk_ratio"], r["speakers_requested"])):
        hold = r.get("hold_s") or 1
        received = r.get("server_packets_received") or 0
        busy = (r.get("server_cpu_seconds") or 0) / hold
        rows.append(
            "| {spk} | {talk:.0%} | {pps:,.0f} | {us} | {busy:.0%} | {rss} | {d2s} | {whip} | "
            "{setup} | {gen} | {late:,} | {lost} |".format(
                spk=speakers(r),
                talk=r["talk_ratio"],
                pps=received / hold,
                us=fmt(r.get("server_cpu_us_per_packet")),
                busy=busy,
                rss=fmt(r.get("rss_kb_per_speaker"), 0),
                d2s=fmt((r.get("datagram_to_sink_ms") or {}).get("p99"), 2),
                whip=fmt((r.get("whip_answer_ms") or {}).get("p99")),
                setup=fmt((r.get("setup_ms") or {}).get("p99")),
                gen=fmt(r.get("generator_cpu_us_per_packet")),
                late=r.get("late_sends_hold") or 0,
                lost=fmt(r.get("server_packets_lost"), 0),
            )
        )
    return "\n".join(rows)


def generator_bound(report):
    """Whether the generator, not the server, set the pace: more than 1 % of
    its packets late, or sessions that never connected."""
    sent = report.get("packets_sent_hold") or 0
    late = report.get("late_sends_hold") or 0
    return (sent and late / sent > 0.01) or report["speakers_connected"] < report[
        "speakers_requested"
    ]


def plot(reports, path):
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    panels = [
        ("server_cpu_us_per_packet", "server CPU per packet (µs)", None, "linear"),
        ("rss_kb_per_speaker", "server RSS per speaker (KB)", None, "linear"),
        ("datagram_to_sink_ms", "p99 datagram-to-sink (ms)", "p99", "log"),
        ("whip_answer_ms", "p99 WHIP answer (ms)", "p99", "log"),
    ]
    requested = sorted({r["speakers_requested"] for r in reports})
    for ratio, marker, colour in ((0.25, "o", "tab:blue"), (1.0, "s", "tab:orange")):
        runs = sorted(
            (r for r in reports if abs(r["talk_ratio"] - ratio) < 1e-9),
            key=lambda r: r["speakers_requested"],
        )
        if not runs:
            continue
        xs = [r["speakers_requested"] for r in runs]
        for ax, (key, title, sub, scale) in zip(axes.flat, panels):
            ys = [(r.get(key) or {}).get(sub) if sub else r.get(key) for r in runs]
            ax.plot(xs, ys, color=colour, label=f"{ratio:.0%} talking")
            ax.plot(
                [x for x, r in zip(xs, runs) if not generator_bound(r)],
                [y for y, r in zip(ys, runs) if not generator_bound(r)],
                marker, color=colour,
            )
            ax.plot(
                [x for x, r in zip(xs, runs) if generator_bound(r)],
                [y for y, r in zip(ys, runs) if generator_bound(r)],
                marker, color=colour, fillstyle="none", markersize=9,
            )
            ax.set_title(title)
            ax.set_yscale(scale)
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(requested)
        ax.set_xticklabels([f"{x:,}" for x in requested])
        ax.minorticks_off()
        if ax.get_yscale() == "linear":
            ax.set_ylim(bottom=0)
        else:
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("speakers (one media worker, one core)")
    axes[0][0].legend(title="hollow: generator-bound")
    fig.suptitle("Hearken, recording only: cost as load grows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot_scaling.py REPORTS.jsonl PLOT.png")
    reports = load(sys.argv[1])
    if not reports:
        sys.exit(f"{sys.argv[1]}: no reports")
    plot(reports, sys.argv[2])
    print(table(reports))


if __name__ == "__main__":
    main()

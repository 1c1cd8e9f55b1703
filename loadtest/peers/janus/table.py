#!/usr/bin/python3
"""The table of compare.sh: reads the generator's JSON reports of each pair
(DIR/janus-N-rR.json, DIR/hearken-N-rR.json), prints a markdown table and,
with --results, writes it into RESULTS.md between the markers of the
section "## Side by side with Janus" (made before "## Reproducing" when
missing). Text of the section outside the markers is kept."""

import argparse
import datetime
import json
import os
import re
import shlex
import textwrap

HEADING = "## Side by side with Janus"
BEGIN = "<!-- compare.sh: begin (generated; edit outside these markers) -->"
END = "<!-- compare.sh: end -->"


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def num(value, digits=1, scale=1.0):
    if value is None:
        return "-"
    return f"{value * scale:,.{digits}f}"


def busy(r):
    cpu, hold = r.get("server_cpu_seconds"), r.get("hold_s")
    if cpu is None or not hold:
        return None
    return cpu / hold


def late(r):
    sent = r.get("packets_sent_hold") or 0
    return (r.get("late_sends_hold") or 0) / sent if sent else None


def row(n, janus, hearken):
    j, h = janus or {}, hearken or {}
    ju, hu = j.get("server_cpu_us_per_packet"), h.get("server_cpu_us_per_packet")
    ratio = f"**{ju / hu:.2f}×**" if ju and hu else "-"

    def pair(f):
        return f"{f(j) if janus else 'no report'} / {f(h) if hearken else 'no report'}"

    def errors(r):
        return str(r.get("errors", 0)) if r else "-"

    return [
        str(n),
        pair(lambda r: str(r.get("speakers_connected", "-"))),
        num(ju),
        num(hu),
        ratio,
        pair(lambda r: num(busy(r), 0, 100) + " %"),
        pair(lambda r: num(r.get("rss_kb_per_speaker_over_baseline"), 0)),
        pair(lambda r: num(r.get("whip_answer_ms", {}).get("p50"), 1)),
        pair(lambda r: num(r.get("whip_answer_ms", {}).get("p99"), 1)),
        pair(lambda r: num(r.get("loss"), 2, 100) + " %"),
        pair(lambda r: num(late(r), 1, 100) + " %"),
        pair(errors),
    ]


COLUMNS = [
    "speakers",
    "connected (J / H)",
    "Janus µs/pkt",
    "Hearken µs/pkt",
    "Janus ÷ Hearken",
    "server core busy (J / H)",
    "RSS/speaker KB (J / H)",
    "WHIP answer p50 ms (J / H)",
    "WHIP answer p99 ms (J / H)",
    "packets lost (J / H)",
    "generator late sends (J / H)",
    "errors (J / H)",
]


def table(args):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    notes = []
    for pair in args.pairs:
        n, rnd = pair.split(":")
        janus = load(os.path.join(args.dir, f"janus-{n}-r{rnd}.json"))
        hearken = load(os.path.join(args.dir, f"hearken-{n}-r{rnd}.json"))
        label = f"{n} (light load)" if n == str(args.light) and rnd == "1" else n
        lines.append("| " + " | ".join(row(label, janus, hearken)) + " |")
        for server in ("janus", "hearken"):
            others = load(os.path.join(args.dir, f"{server}-{n}-r{rnd}.json.others"))
            if others and others.get("cpu_s"):
                used = ", ".join(f"`{c}` {s} s" for c, s in others["cpu_s"].items())
                notes.append(
                    f"- {server.capitalize()} run at {n} speakers: other processes used "
                    f"CPU during its {others['watched_s']} s ({used})."
                )
    if notes:
        lines += ["", "Runs skewed by other work on the machine:", ""] + notes
    return "\n".join(lines)


def reproducing(command):
    """The command as recorded: without where the reports went and whether
    RESULTS.md was written."""
    words = shlex.split(command)
    kept = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif not (word.startswith("--out=") or word == "--no-write"):
            kept.append(word)
    return shlex.join(kept)


def generated(args, body):
    source = {
        "admin": "the Admin API (`handle_info`: RTP packets in, summed over the publishers)",
        "mjr": "the frames of the .mjr recordings",
    }[args.count]
    today = datetime.date.today().isoformat()
    fill = lambda text: textwrap.fill(text, width=76, break_on_hyphens=False)
    return "\n".join(
        [
            BEGIN,
            "",
            fill(
                f"Measured on {today} with Hearken at commit `{args.commit}` and Janus "
                f"{args.janus_version} (Debian `janus`), by:"
            ),
            "",
            "```sh",
            "cargo build --release -p hearken -p hearken-loadtest",
            "loadtest/peers/janus/install.sh",
            reproducing(args.command),
            "```",
            "",
            fill(
                (
                    "Every speaker talks all the time (`--talk-ratio 1.0`)"
                    if float(args.talk_ratio) == 1.0
                    else f"Each speaker talks a fraction {args.talk_ratio} of the time"
                )
                + f", 5 per call, ramp "
                f"{args.ramp}/s, hold {args.duration} s; each pair is a Janus run, then a "
                f"Hearken run of the same generator command (same seed). J = Janus, "
                f"H = Hearken. Janus's packets are counted from {source}. \"RSS/speaker\" "
                f"is the server's resident memory at the end of the hold less its baseline "
                f"before any session, per connected speaker; \"packets lost\" is "
                f"1 − received / sent over the hold; \"generator late sends\" are the "
                f"packets sent more than 5 ms after due (the generator's core was short)."
            ),
            "",
            body,
            "",
            END,
        ]
    )


def write(path, block):
    with open(path) as f:
        text = f.read()
    if BEGIN in text and END in text:
        start = text.index(BEGIN)
        end = text.index(END) + len(END)
        text = text[:start] + block + text[end:]
    else:
        section = f"{HEADING}\n\n{block}\n\n"
        match = re.search(r"^## Reproducing", text, re.M)
        if match:
            text = text[: match.start()] + section + text[match.start() :]
        else:
            text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--commit", default="unknown")
    p.add_argument("--janus-version", default="unknown")
    p.add_argument("--count", default="admin", choices=["admin", "mjr"])
    p.add_argument("--duration", default="?")
    p.add_argument("--ramp", default="?")
    p.add_argument("--talk-ratio", default="1.0")
    p.add_argument("--light", default="0")
    p.add_argument("--results", help="RESULTS.md to write the table into")
    p.add_argument("pairs", nargs="*", help="N:ROUND")
    args = p.parse_args()
    body = table(args)
    print(body)
    if args.results:
        write(args.results, generated(args, body))
        print(f"written into {args.results}")


if __name__ == "__main__":
    main()

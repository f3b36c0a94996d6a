#!/usr/bin/env python3
"""Draws pipeline schedules from real `loom train --strategy pipeline --trace` files.

  python3 scripts/pipeline_timeline.py --out docs/pipeline-schedules.svg --step 4 \
      "GPipe=gpipe.json" "1F1B=1f1b.json"

One panel per trace, one row per stage (rank), the same time scale for all panels:
forwards in blue, backwards in orange (the number is the micro-batch), time blocked on a
neighbour hatched grey, the optimizer step in purple, and under each stage a thin row
with its sends and receives. Each panel's title gives the measured bubble of that step
per stage and the theory (P-1)/(M+P-1). Pure Python (no matplotlib), writes SVG.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_trace as pt  # noqa: E402

ROW_H, COMM_H, GAP, LEFT, TITLE_H, WIDTH = 26, 7, 8, 70, 34, 1100


def color(e):
    cat = e.get("cat")
    if cat == "forward":
        return "#4c78a8"
    if cat == "backward":
        return "#f58518"
    if cat == "idle":
        return "url(#hatch)"
    if e["name"] == "optimizer":
        return "#9467bd"
    if cat == "comm":
        return "#54a24b" if e["name"].startswith("send") else "#b279a2"
    return None


def panel(title, events, step, y0, scale, out):
    start, end = pt.pipeline_window(events, step)
    s0 = pt.steps(events, 0)[step]
    t0 = s0["ts"]  # draw from rank 0's step start
    t1 = s0["ts"] + s0["dur"]
    stages = pt.ranks(events)
    micro = len([e for e in pt.compute_spans(events, 0, start, end + 1) if e["cat"] == "forward"])
    measured = pt.bubble(events, step)
    label = ", ".join(f"stage {r}: {100 * b:.0f}%" for r, b in enumerate(measured))
    out.append(f'<text x="{LEFT}" y="{y0 + 14}" font-size="13" font-weight="bold">{title}</text>')
    out.append(f'<text x="{LEFT}" y="{y0 + 28}" font-size="11">P={len(stages)}, M={micro}, step {step}: '
               f'{(t1 - t0) / 1e3:.1f} ms; idle share of the pipeline window {label} '
               f'(theory {100 * pt.theory(len(stages), micro):.0f}%)</text>')
    y = y0 + TITLE_H
    for r in stages:
        out.append(f'<text x="4" y="{y + ROW_H * 0.7}" font-size="11">stage {r}</text>')
        out.append(f'<rect x="{LEFT}" y="{y}" width="{(t1 - t0) * scale}" height="{ROW_H}" fill="#f4f4f4"/>')
        for e in events:
            if e["pid"] != r or e["ts"] + e["dur"] < t0 or e["ts"] > t1 or e.get("cat") == "step":
                continue
            c = color(e)
            if c is None:
                continue
            a, b = max(e["ts"], t0), min(e["ts"] + e["dur"], t1)
            x, w = LEFT + (a - t0) * scale, max((b - a) * scale, 0.5)
            if e.get("tid", 0) == 1:
                out.append(f'<rect x="{x:.1f}" y="{y + ROW_H + 1}" width="{w:.1f}" height="{COMM_H - 2}" fill="{c}">'
                           f'<title>{e["name"]}</title></rect>')
                continue
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW_H}" fill="{c}" stroke="white" '
                       f'stroke-width="0.5"><title>{e["name"]} ({e["dur"] / 1e3:.2f} ms)</title></rect>')
            if e.get("cat") in ("forward", "backward") and w > 12:
                out.append(f'<text x="{x + w / 2:.1f}" y="{y + ROW_H * 0.68}" font-size="10" fill="white" '
                           f'text-anchor="middle">{e["name"].split()[-1]}</text>')
        y += ROW_H + COMM_H + GAP
    return y + 10, t1 - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("traces", nargs="+", help="TITLE=trace.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--step", type=int, default=4, help="which step to draw (0-based; skip the first, it warms up)")
    args = ap.parse_args()
    loaded = []
    for spec in args.traces:
        title, _, path = spec.partition("=")
        loaded.append((title, pt.load(path)))
    longest = 0
    for _, ev in loaded:
        s0 = pt.steps(ev, 0)[args.step]
        longest = max(longest, s0["dur"])
    scale = (WIDTH - LEFT - 20) / longest
    body = []
    y = 10
    for title, ev in loaded:
        y, _ = panel(title, ev, args.step, y, scale, body)
    legend = [("forward", "#4c78a8"), ("backward", "#f58518"), ("blocked on a neighbour", "url(#hatch)"),
              ("optimizer", "#9467bd"), ("send", "#54a24b"), ("receive", "#b279a2")]
    x = LEFT
    for name, c in legend:
        body.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{c}" stroke="#888" stroke-width="0.5"/>')
        body.append(f'<text x="{x + 16}" y="{y + 10}" font-size="11">{name}</text>')
        x += 30 + 7 * len(name)
    y += 24
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" font-family="sans-serif">',
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="6" height="6" fill="#e0e0e0"/>'
           '<line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="2"/></pattern></defs>',
           '<rect width="100%" height="100%" fill="white"/>'] + body + ["</svg>"]
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(svg) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The planner's accuracy on this machine (issue 18): predicted against measured samples/s.

  bench/planner_accuracy.py [--loom build/loom] [--nproc 4] [--steps 40] [--warmup 10]
      [--rounds 1] [--cluster FILE] [--shapes cnn,mlp-compute,mlp-overhead] [--json OUT]

1. Calibrates this machine once (`loom plan --calibrate --save-cluster`), unless
   --cluster names a file.
2. For each model shape: `loom plan --json --cluster F --nproc N` with the shape's
   flags, then picks configurations that cover every strategy: the best predicted plan
   of each strategy (single, allreduce, ps sync, ps async, pipeline, hybrid) and the
   first-ranked plan overall, plus allreduce with 2 and with all N processes and the
   other pipeline schedule (so a shape gives 6-10 configurations).
3. Runs each with the plan's own `args` (which carry --predicted-samples-per-s) plus
   --steps S --log-every 5 --metrics, and takes the steady-state rate of the step
   records after the warm-up (benchlib.timed_rate). With --rounds R > 1 the rounds run
   the configurations in alternating order and the median rate is used.
4. Prints, per configuration, predicted, measured and error = predicted / measured - 1;
   then the median and worst |error| over all, and per shape whether the first-ranked
   plan measured within 10% of the best measured configuration of that shape.

The shapes (all on Fashion-MNIST, --threads 1):
  cnn            loom's CNN, batch 64                                  (421,642 parameters)
  mlp-compute    deep MLP, width 1024, depth 4, batch 256: big matmuls  (~3.9M parameters)
  mlp-overhead   deep MLP, width 64, depth 16, batch 64: tiny layers, per-step and
                 per-message overheads dominate                          (~110K parameters)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

SHAPES = {
    "cnn": ["--model", "cnn", "--batch-size", "64"],
    "mlp-compute": ["--model", "deep-mlp", "--width", "1024", "--depth", "4", "--batch-size", "256"],
    "mlp-overhead": ["--model", "deep-mlp", "--width", "64", "--depth", "16", "--batch-size", "64"],
}
COMMON = ["--data", "fashion-mnist", "--threads", "1", "--lr", "0.01"]


def plan(args, shape_flags, cluster):
    cmd = [args.loom, "plan", "--json", "--nproc", str(args.nproc), "--cluster", cluster,
           "--log-level", "warn"] + shape_flags + COMMON
    p = subprocess.run(cmd, env=benchlib.ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise SystemExit(f"loom plan failed: {benchlib.shell(cmd)}\n{p.stderr.strip()}")
    return json.loads(p.stdout)


def key(p):
    return " ".join(p["args"])


def pick(plans, nproc):
    """The configurations to measure, each once, first-ranked first."""
    fits = [p for p in plans if p["fits"]]
    chosen = [fits[0]]

    def first(pred):
        for p in fits:
            if pred(p):
                return p
        return None

    wanted = [
        lambda p: p["strategy"] == "single",
        lambda p: p["strategy"] == "allreduce",
        lambda p: p["strategy"] == "allreduce" and p["processes"] == nproc,
        lambda p: p["strategy"] == "allreduce" and p["processes"] == 2,
        lambda p: p["strategy"] == "ps" and p["degrees"]["consistency"] == "sync",
        lambda p: p["strategy"] == "ps" and p["degrees"]["consistency"] == "async",
        lambda p: p["strategy"] == "pipeline",
        lambda p: p["strategy"] == "hybrid",
    ]
    for w in wanted:
        p = first(w)
        if p is not None:
            chosen.append(p)
    best_pipe = first(lambda p: p["strategy"] == "pipeline")
    if best_pipe is not None:
        other = "gpipe" if best_pipe["degrees"]["schedule"] == "1f1b" else "1f1b"
        p = first(lambda p: p["strategy"] == "pipeline" and p["degrees"]["schedule"] == other)
        if p is not None:
            chosen.append(p)
    seen, out = set(), []
    for p in chosen:
        if key(p) not in seen:
            seen.add(key(p))
            out.append(p)
    return out


def describe(p):
    d = p["degrees"]
    s = p["strategy"]
    if s == "single":
        return "1 process"
    if s == "allreduce":
        return f"N={d['workers']}" + (f" zero={d['zero']}" if d["zero"] else "")
    if s == "ps":
        return f"W={d['workers']} S={d['servers']} {d['consistency']}"
    pipe = f"P={d['stages']} M={d['micro_batches']} {d['schedule']} split={','.join(map(str, d['split']))}"
    return (f"dp={d['dp']} " if s == "hybrid" else "") + pipe


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loom", default=benchlib.DEFAULT_LOOM)
    ap.add_argument("--nproc", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cluster", default="")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--json", default="", help="write every row as JSON here")
    ap.add_argument("--svg", default="", help="draw predicted against measured samples/s here")
    ap.add_argument("--from-json", default="", help="do not run: summarise and draw the rows of an earlier --json")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            rows = json.load(f)
        summarise(rows, args)
        return

    tmp = tempfile.mkdtemp(prefix="loom-planner-accuracy-")
    cluster = args.cluster
    if not cluster:
        cluster = os.path.join(tmp, "cluster.toml")
        cmd = [args.loom, "plan", "--calibrate", "--save-cluster", cluster, "--nproc", str(args.nproc),
               "--log-level", "warn", "--json", "--out", os.path.join(tmp, "first.json")] + \
            SHAPES["cnn"] + COMMON
        print(f"# calibrating: {benchlib.shell(cmd)}", flush=True)
        subprocess.run(cmd, env=benchlib.ENV, check=True)
    print(f"# cluster file: {cluster}; load {benchlib.load()}", flush=True)

    rows = []
    for shape in args.shapes.split(","):
        plans = plan(args, SHAPES[shape], cluster)
        chosen = pick(plans, args.nproc)
        rates = {key(p): [] for p in chosen}
        for r in range(args.rounds):
            order = chosen if r % 2 == 0 else list(reversed(chosen))
            for p in order:
                run = benchlib.train(args.loom, p["args"] + ["--steps", str(args.steps), "--log-every", "5",
                                                             "--no-eval"], args.warmup, check=False)
                if "error" in run:
                    print(f"# {shape} {describe(p)}: {run['error']}", flush=True)
                    continue
                rates[key(p)].append(run["rate"])
        for i, p in enumerate(chosen):
            if not rates[key(p)]:
                continue
            measured = statistics.median(rates[key(p)])
            rows.append({"shape": shape, "strategy": p["strategy"], "degrees": describe(p),
                         "rank": plans.index(p) + 1, "first_ranked": i == 0,
                         "predicted": p["predicted_samples_per_s"], "measured": measured,
                         "error": p["predicted_samples_per_s"] / measured - 1, "dominant": p["dominant"],
                         "args": p["args"]})
            row = rows[-1]
            print(f"{shape:<13} {row['strategy']:<10} {row['degrees']:<36} rank {row['rank']:>3}  "
                  f"predicted {row['predicted']:9.1f}  measured {row['measured']:9.1f}  "
                  f"error {100 * row['error']:+6.1f}%", flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    summarise(rows, args)


def summarise(rows, args):
    print()
    print("| shape | strategy | degrees | plan rank | predicted samples/s | measured samples/s | error |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['strategy']} | {r['degrees']} | {r['rank']} | {r['predicted']:.0f} | "
              f"{r['measured']:.0f} | {100 * r['error']:+.1f}% |")
    errors = sorted(abs(r["error"]) for r in rows)
    if errors:
        worst = max(rows, key=lambda r: abs(r["error"]))
        print(f"\n{len(rows)} configurations, strategies "
              f"{', '.join(sorted(set(r['strategy'] for r in rows)))}: median |error| "
              f"{100 * statistics.median(errors):.1f}%, worst {100 * errors[-1]:.1f}% "
              f"({worst['shape']} {worst['strategy']} {worst['degrees']})")
    for shape in args.shapes.split(","):
        mine = [r for r in rows if r["shape"] == shape]
        if not mine:
            continue
        best = max(mine, key=lambda r: r["measured"])
        first = [r for r in mine if r["first_ranked"]]
        if first:
            ratio = first[0]["measured"] / best["measured"]
            print(f"{shape}: the first-ranked plan ({first[0]['strategy']} {first[0]['degrees']}) measured "
                  f"{ratio:.3f} of the best measured ({best['strategy']} {best['degrees']}): "
                  f"{'within' if ratio >= 0.9 else 'NOT within'} 10%")
    if args.svg:
        draw(rows, args.svg)


def draw(rows, path):
    """Predicted against measured samples/s, log-log, one colour per shape, the diagonal
    and the +-15% band. Plain SVG (no plotting library on this machine)."""
    import math
    w, h, m = 560, 460, 60
    values = [r["predicted"] for r in rows] + [r["measured"] for r in rows]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))

    def x(v):
        return m + (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (w - 2 * m)

    def y(v):
        return h - m - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (h - 2 * m)

    colours = {"cnn": "#1f77b4", "mlp-compute": "#d62728", "mlp-overhead": "#2ca02c"}
    marks = {"single": "circle", "allreduce": "square", "ps": "diamond", "pipeline": "triangle", "hybrid": "star"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>']
    out.append(f'<polygon points="{x(lo)},{y(lo * 1.15)} {x(hi / 1.15)},{y(hi)} {x(hi)},{y(hi)} {x(hi)},{y(hi * 0.85)} '
               f'{x(lo / 0.85)},{y(lo)} {x(lo)},{y(lo)}" fill="#eeeeee"/>')
    out.append(f'<line x1="{x(lo)}" y1="{y(lo)}" x2="{x(hi)}" y2="{y(hi)}" stroke="#888" stroke-dasharray="4,3"/>')
    decade = lo
    while decade <= hi:
        for k in (1, 2, 5):
            v = decade * k
            if lo <= v <= hi:
                out.append(f'<text x="{x(v)}" y="{h - m + 16}" text-anchor="middle">{v:g}</text>')
                out.append(f'<text x="{m - 6}" y="{y(v) + 4}" text-anchor="end">{v:g}</text>')
                out.append(f'<line x1="{x(v)}" y1="{h - m}" x2="{x(v)}" y2="{h - m + 4}" stroke="black"/>')
                out.append(f'<line x1="{m - 4}" y1="{y(v)}" x2="{m}" y2="{y(v)}" stroke="black"/>')
        decade *= 10
    out.append(f'<rect x="{m}" y="{m}" width="{w - 2 * m}" height="{h - 2 * m}" fill="none" stroke="black"/>')
    out.append(f'<text x="{w / 2}" y="{h - 20}" text-anchor="middle">measured samples/s</text>')
    out.append(f'<text x="16" y="{h / 2}" text-anchor="middle" transform="rotate(-90 16 {h / 2})">'
               f'predicted samples/s</text>')
    out.append(f'<text x="{w / 2}" y="24" text-anchor="middle" font-size="14">loom plan: predicted against measured '
               f'(grey: within 15%)</text>')
    for r in rows:
        cx, cy, c = x(r["measured"]), y(r["predicted"]), colours.get(r["shape"], "black")
        shape = marks.get(r["strategy"], "circle")
        if shape == "circle":
            out.append(f'<circle cx="{cx}" cy="{cy}" r="5" fill="{c}"/>')
        elif shape == "square":
            out.append(f'<rect x="{cx - 4.5}" y="{cy - 4.5}" width="9" height="9" fill="{c}"/>')
        elif shape == "diamond":
            out.append(f'<polygon points="{cx},{cy - 6} {cx + 6},{cy} {cx},{cy + 6} {cx - 6},{cy}" fill="{c}"/>')
        elif shape == "triangle":
            out.append(f'<polygon points="{cx},{cy - 6} {cx + 6},{cy + 5} {cx - 6},{cy + 5}" fill="{c}"/>')
        else:
            out.append(f'<polygon points="{cx},{cy - 6} {cx + 2},{cy - 2} {cx + 6},{cy - 2} {cx + 3},{cy + 1} '
                       f'{cx + 4},{cy + 6} {cx},{cy + 3} {cx - 4},{cy + 6} {cx - 3},{cy + 1} {cx - 6},{cy - 2} '
                       f'{cx - 2},{cy - 2}" fill="{c}"/>')
    ly = m + 14
    for name, c in colours.items():
        out.append(f'<rect x="{m + 10}" y="{ly - 9}" width="10" height="10" fill="{c}"/>'
                   f'<text x="{m + 26}" y="{ly}">{name}</text>')
        ly += 16
    for name in marks:
        out.append(f'<text x="{m + 26}" y="{ly}">{name}: {marks[name]}</text>')
        ly += 16
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Pipeline bubble and activation memory, measured from real runs.

  bench/pipeline_bubble.py [--loom build/loom] [--rounds 3] [--micro 1,2,4,8]
      [--memory-micro 1,2,4,8,16] [--depth 25] [--width 523] [--batch-size 512]
      [--json OUT]

Bubble: for P = 2 stages (a deep MLP cut into two equal halves, `--split`) and each M,
both schedules: `loom train --strategy pipeline --trace`, and for every step after the
first two, each stage's idle share of the pipeline window (scripts/pipeline_trace.py:
the share of [first forward, last backward] of stage 0 that the stage spent neither in
forward nor in backward), against the theory (P-1)/(M+P-1). Rounds alternate the
schedules; medians over rounds and steps.

Memory: each stage's peak stashed activations per step (the bytes of its input and of
every layer's output held between a micro-batch's forward and its backward, as the
stage logs them at the end), GPipe against 1F1B, as M grows at a fixed global batch.

--json OUT also writes the bubble medians, for bench/pipeline_simulation --measured:
{"stages": 2, "depth", "width", "batch_size", "traces": DIR,
 "rows": [{"schedule", "micro_batches", "theory", "idle_share": [stage 0, stage 1],
           "forward_s": [s0, s1], "backward_s": [s0, s1], "message_s"}]}
with each stage's mean forward / backward span (seconds, one micro-batch, the same
steps) and the median gap from stage 0's end of forward 0 to stage 1's start of it.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
import pipeline_trace as pt  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS="1")
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(k, None)


def run(args, schedule, micro, steps, trace):
    layers = 2 * args.depth  # flatten + depth linear + (depth-1) relu
    cmd = [args.loom, "train", "--strategy", "pipeline", "--nproc", "2", "--model", "deep-mlp", "--depth",
           str(args.depth), "--width", str(args.width), "--data", "synthetic", "--batch-size", str(args.batch_size),
           "--micro-batches", str(micro), "--schedule", schedule, "--split", f"{layers // 2},{layers - layers // 2}",
           "--steps", str(steps), "--threads", "1", "--no-eval", "--progress", "off", "--lr", "0.01"]
    if trace:
        cmd += ["--trace", trace]
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    stash = {}
    for m in re.finditer(r"pipeline stage (\d+): peak stashed activations (\d+) bytes \((\d+) micro", p.stderr):
        stash[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return stash


def record_costs(acc, events, step):
    """For --json: each stage's forward and backward span durations in `step` (us), and
    the gap from stage 0's end of forward 0 to stage 1's start of it (a message, while
    stage 1 waits for it)."""
    first = {}
    for stage in (0, 1):
        s = pt.steps(events, stage)[step]
        for e in pt.compute_spans(events, stage, s["ts"], s["ts"] + s["dur"]):
            acc.setdefault(e["cat"], [[], []])[stage].append(e["dur"])
            if e["name"] == "forward 0":
                first[stage] = e
    if len(first) == 2:
        acc.setdefault("message", []).append(first[1]["ts"] - first[0]["ts"] - first[0]["dur"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loom", default=os.path.join(HERE, "..", "build", "loom"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--micro", default="1,2,4,8")
    ap.add_argument("--memory-micro", default="1,2,4,8,16")
    # Balanced halves: depth 25 gives 24 linear layers of width x width (the first has
    # 784 inputs) plus the small output layer; --split 25,25 puts 12 on each stage.
    # Stage 0 skips its input's gradient, stage 1 adds the output layer and the loss;
    # width 523 (784 / 1.5) evens the first layer's extra inputs against the former, so
    # forward and backward each differ by ~4% between the stages.
    ap.add_argument("--depth", type=int, default=25)
    ap.add_argument("--width", type=int, default=523)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--json", help="also write the bubble medians here (for bench/pipeline_simulation)")
    args = ap.parse_args()
    micro = [int(x) for x in args.micro.split(",")]
    tmp = tempfile.mkdtemp(prefix="loom_bubble_")

    print(f"# bubble: P=2, deep-mlp depth {args.depth} width {args.width}, global batch {args.batch_size}, "
          f"1 thread per stage, {args.rounds} rounds x {args.steps - 2} steps, medians")
    shares = {}  # (schedule, M) -> [per-stage lists]
    costs = {}  # (schedule, M) -> {"forward": [[s0 us], [s1 us]], "backward": ..., "message": [us]}
    for r in range(args.rounds):
        for m in micro:
            order = ["gpipe", "1f1b"] if r % 2 == 0 else ["1f1b", "gpipe"]
            for s in order:
                trace = os.path.join(tmp, f"{s}_{m}_{r}.json")
                run(args, s, m, args.steps, trace)
                ev = pt.load(trace)
                per = shares.setdefault((s, m), [[], []])
                for k in range(2, args.steps):
                    for stage, b in enumerate(pt.bubble(ev, k)):
                        per[stage].append(b)
                    if args.json:
                        record_costs(costs.setdefault((s, m), {}), ev, k)
    print(f"{'schedule':8} {'M':>3} {'theory':>7} {'stage 0':>8} {'stage 1':>8} {'rel.err 0':>9} {'rel.err 1':>9}")
    rows = []
    for s in ("gpipe", "1f1b"):
        for m in micro:
            th = pt.theory(2, m)
            med = [statistics.median(x) for x in shares[(s, m)]]
            errs = [abs(x - th) / th for x in med]
            print(f"{s:8} {m:>3} {th:7.3f} {med[0]:8.3f} {med[1]:8.3f} {errs[0]:9.1%} {errs[1]:9.1%}")
            c = costs.get((s, m), {})
            rows.append({"schedule": s, "micro_batches": m, "theory": th, "idle_share": med,
                         "forward_s": [statistics.mean(x) * 1e-6 for x in c.get("forward", [])],
                         "backward_s": [statistics.mean(x) * 1e-6 for x in c.get("backward", [])],
                         "message_s": statistics.median(c["message"]) * 1e-6 if c.get("message") else -1})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stages": 2, "depth": args.depth, "width": args.width, "batch_size": args.batch_size,
                       "traces": tmp, "rows": rows}, f, indent=1)
        print(f"# wrote {args.json} (traces in {tmp})")

    print()
    print(f"# memory: peak stashed activations per stage (bytes), global batch {args.batch_size}")
    print(f"{'M':>3} {'gpipe s0':>10} {'gpipe s1':>10} {'1f1b s0':>10} {'1f1b s1':>10}  in flight gpipe / 1f1b")
    for m in [int(x) for x in args.memory_micro.split(",")]:
        g = run(args, "gpipe", m, 3, None)
        o = run(args, "1f1b", m, 3, None)
        print(f"{m:>3} {g[0][0]:>10} {g[1][0]:>10} {o[0][0]:>10} {o[1][0]:>10}  "
              f"{g[0][1]},{g[1][1]} / {o[0][1]},{o[1][1]}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""How much of the gradient allreduce is hidden behind backward, read from loom's trace.

  bench/allreduce_overlap.py [--loom build/loom] [--model deep-mlp] [--depth 16]
      [--width 256] [--bucket-mb 1] [--batch-size 64] [--steps 30] [--nproc 2]

Runs `loom train --strategy allreduce --trace` once and, for every rank and every step
after the first two (the first step rebuilds the buckets), compares each bucket's
allreduce span (launch to completion, timed by a completion callback on the
communication thread) with that step's backward span:

  hidden share = sum over buckets of |allreduce ∩ backward| / sum of |allreduce|

i.e. the share of communication time during which the worker was still computing
gradients. Also prints the exposed time: the "allreduce wait" span after backward, the
time the step actually waited for communication. Prints per-rank and overall numbers."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, OMP_NUM_THREADS="1")
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(k, None)


def overlap(a0, a1, b0, b1):
    return max(0, min(a1, b1) - max(a0, b0))


def analyse(events, skip_steps):
    by_rank = defaultdict(lambda: defaultdict(list))
    for e in events:
        if e.get("ph") == "X":
            by_rank[e["pid"]][e["name"]].append((e["ts"], e["ts"] + e["dur"]))
    results = {}
    for rank, spans in sorted(by_rank.items()):
        backward = sorted(spans["backward"])[skip_steps:]
        waits = sorted(spans["allreduce wait"])[skip_steps:]
        buckets = sorted(s for name, v in spans.items() if name.startswith("allreduce bucket") for s in v)
        total = hidden = 0
        nbuckets = sum(1 for name in spans if name.startswith("allreduce bucket"))
        for (b0, b1) in backward:
            # The buckets of this step were launched during this backward.
            for (a0, a1) in buckets:
                if b0 <= a0 <= b1:
                    total += a1 - a0
                    hidden += overlap(a0, a1, b0, b1)
        back_us = sum(b1 - b0 for b0, b1 in backward)
        wait_us = sum(w1 - w0 for w0, w1 in waits)
        results[rank] = dict(buckets=nbuckets, steps=len(backward), comm_us=total, hidden_us=hidden,
                             share=hidden / total if total else float("nan"), backward_us=back_us, wait_us=wait_us)
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loom", default=os.path.join(HERE, "..", "build", "loom"))
    p.add_argument("--model", default="deep-mlp")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--bucket-mb", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64, help="GLOBAL batch")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    shares = []
    print(f"allreduce_overlap: {a.model} (depth {a.depth}, width {a.width}), bucket cap {a.bucket_mb} MB, "
          f"{a.nproc} workers x {a.threads} thread, global batch {a.batch_size}, {a.steps} steps")
    print(f"{'run':>3} {'rank':>4} {'buckets':>7} {'comm ms/step':>12} {'hidden':>7} {'backward ms':>11} "
          f"{'exposed ms':>10}")
    for run in range(a.runs):
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "trace.json")
            cmd = [a.loom, "train", "--strategy", "allreduce", "--nproc", str(a.nproc), "--model", a.model,
                   "--depth", str(a.depth), "--width", str(a.width), "--data", "synthetic",
                   "--synthetic-samples", "8192", "--batch-size", str(a.batch_size), "--steps", str(a.steps),
                   "--threads", str(a.threads), "--bucket-mb", str(a.bucket_mb), "--no-eval", "--progress", "off",
                   "--log-level", "warn", "--trace", trace]
            subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
            with open(trace) as f:
                data = json.load(f)
        events = data["traceEvents"] if isinstance(data, dict) else data
        for rank, r in analyse(events, skip_steps=2).items():
            n = max(r["steps"], 1)
            print(f"{run + 1:>3} {rank:>4} {r['buckets']:>7} {r['comm_us'] / n / 1e3:>12.2f} {r['share']:>7.3f} "
                  f"{r['backward_us'] / n / 1e3:>11.2f} {r['wait_us'] / n / 1e3:>10.2f}", flush=True)
            shares.append(r["share"])
    print(f"median hidden share of allreduce behind backward: {statistics.median(shares):.3f}")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Hybrid dp x pp against pipeline, allreduce and single at the same total thread count,
and the share of each stage's data-parallel allreduce hidden behind backward.

  bench/hybrid_throughput.py [--loom build/loom] [--rounds 3] [--depth 12] [--width 512]
      [--batch-size 256] [--micro-batches 4] [--steps 40] [--threads 4]

Same deep MLP, synthetic data, same global batch; --threads T in total:
  single     1 process  x T threads
  allreduce  T workers  x 1 thread
  pipeline   T stages   x 1 thread (1f1b, --balance time)
  hybrid     dp 2 x pp T/2, 1 thread each (1f1b, --balance time)
samples_per_s from each run's --metrics summary; rounds rotate the order; medians.

Overlap: one more hybrid run with --trace; per rank, the share of its "allreduce bucket"
spans (launch to completion) that lies inside its own backward spans, and the share that
ends before its replica's last backward of the step, over the steps after the first two
(the first rebuilds the buckets).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, OMP_NUM_THREADS="1")
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(k, None)


def run(args, extra, metrics, trace=None):
    cmd = [args.loom, "train", "--model", "deep-mlp", "--depth", str(args.depth), "--width", str(args.width),
           "--data", "synthetic", "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--lr", "0.01",
           "--no-eval", "--progress", "off", "--log-every", "10", "--metrics", metrics] + extra
    if trace:
        cmd += ["--trace", trace]
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    with open(metrics) as f:
        return json.loads(f.read().strip().splitlines()[-1])["samples_per_s"]


def hidden_share(trace, pp, skip_steps=2):
    """Per rank: (share hidden behind its own backward, share hidden behind its
    pipeline's backward, allreduce ms). The second counts the part of each bucket's
    allreduce that ends before the last backward of any stage of the same replica in
    that step: time when the pipeline still computed, so the step was not waiting."""
    with open(trace) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    by_rank = {}
    for e in events:
        by_rank.setdefault(e["pid"], []).append(e)
    steps = {r: sorted((e for e in ev if e["name"] == "step"), key=lambda e: e["ts"]) for r, ev in by_rank.items()}

    def in_step(rank, k, cat=None, prefix=None):
        st = steps[rank][k]
        lo, hi = st["ts"], st["ts"] + st["dur"]
        return [(e["ts"], e["ts"] + e["dur"]) for e in by_rank[rank] if lo <= e["ts"] < hi
                and (cat is None or e.get("cat") == cat) and (prefix is None or e["name"].startswith(prefix))]

    out = {}
    for rank in sorted(by_rank):
        replica = rank // pp
        total = own = piped = 0
        for k in range(skip_steps, len(steps[rank])):
            backward = in_step(rank, k, cat="backward")
            pipeline_end = max(b for r in range(replica * pp, replica * pp + pp)
                               for _, b in in_step(r, k, cat="backward"))
            for a, b in in_step(rank, k, prefix="allreduce bucket"):
                total += b - a
                own += sum(max(0, min(b, d) - max(a, c)) for c, d in backward)
                piped += max(0, min(b, pipeline_end) - a)
        out[rank] = (own / total if total else float("nan"), piped / total if total else float("nan"), total / 1e3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loom", default=os.path.join(HERE, "..", "build", "loom"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--micro-batches", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    T = args.threads
    pipe = ["--schedule", "1f1b", "--balance", "time", "--micro-batches", str(args.micro_batches), "--threads", "1"]
    configs = {
        f"single ({T} threads)": ["--strategy", "single", "--threads", str(T)],
        f"allreduce ({T} workers)": ["--strategy", "allreduce", "--nproc", str(T), "--threads", "1"],
        f"pipeline ({T} stages)": ["--strategy", "pipeline", "--nproc", str(T)] + pipe,
        f"hybrid (dp 2 x pp {T // 2})": ["--strategy", "hybrid", "--dp", "2", "--pp", str(T // 2)] + pipe,
    }
    names = list(configs)
    tmp = tempfile.mkdtemp(prefix="loom_hybrid_")
    results = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            results[n].append(run(args, configs[n], os.path.join(tmp, "m.jsonl")))
    print(f"# deep-mlp depth {args.depth} width {args.width}, global batch {args.batch_size}, "
          f"M={args.micro_batches}, {args.steps} steps, {T} threads in total, {args.rounds} rounds")
    hybrid = names[-1]
    for n in names:
        ratios = [a / b for a, b in zip(results[hybrid], results[n])]
        print(f"{n:26} median {statistics.median(results[n]):8.0f} samples/s   hybrid / this "
              f"{statistics.median(ratios):.3f}   runs {[round(x) for x in results[n]]}")
    trace = os.path.join(tmp, "hybrid.json")
    run(args, configs[hybrid], os.path.join(tmp, "h.jsonl"), trace)
    print("# each rank's stage allreduce: share hidden behind its own backward / behind its replica's backward")
    for rank, (own, piped, ms) in hidden_share(trace, T // 2).items():
        print(f"rank {rank} (replica {rank // (T // 2)}, stage {rank % (T // 2)}): own {own:.3f}, "
              f"pipeline {piped:.3f}  ({ms:.0f} ms of allreduce)")


if __name__ == "__main__":
    main()

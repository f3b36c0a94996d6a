#!/usr/bin/python3
"""Throughput of a deep MLP: 2 pipeline stages vs one process with 2 threads vs 2 allreduce workers.

  bench/pipeline_throughput.py [--loom build/loom] [--rounds 3] [--depth 12] [--width 512]
      [--batch-size 256] [--micro-batches 8] [--steps 60]

Same model, synthetic data, same global batch, 2 cores' worth of threads in each
configuration: `--strategy single --threads 2`, `--strategy pipeline --nproc 2
--threads 1 --schedule 1f1b --balance time`, `--strategy allreduce --nproc 2
--threads 1`. samples_per_s from each run's --metrics summary (training steps only).
Rounds rotate the order; prints the medians and the median ratios.
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


def run(args, name, extra, tmp):
    metrics = os.path.join(tmp, f"{name}.jsonl")
    cmd = [args.loom, "train", "--model", "deep-mlp", "--depth", str(args.depth), "--width", str(args.width),
           "--data", "synthetic", "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--lr", "0.01",
           "--no-eval", "--progress", "off", "--log-every", "20", "--metrics", metrics] + extra
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    with open(metrics) as f:
        return json.loads(f.read().strip().splitlines()[-1])["samples_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loom", default=os.path.join(HERE, "..", "build", "loom"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--micro-batches", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    configs = {
        "single (2 threads)": ["--strategy", "single", "--threads", "2"],
        "pipeline (2 stages)": ["--strategy", "pipeline", "--nproc", "2", "--threads", "1", "--schedule", "1f1b",
                                "--balance", "time", "--micro-batches", str(args.micro_batches)],
        "allreduce (2 workers)": ["--strategy", "allreduce", "--nproc", "2", "--threads", "1"],
    }
    names = list(configs)
    tmp = tempfile.mkdtemp(prefix="loom_pipe_tp_")
    results = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % 3:] + names[:r % 3]
        for n in order:
            results[n].append(run(args, n.split()[0], configs[n], tmp))
    print(f"# deep-mlp depth {args.depth} width {args.width}, global batch {args.batch_size}, "
          f"M={args.micro_batches}, {args.steps} steps, {args.rounds} rounds")
    for n in names:
        print(f"{n:24} median {statistics.median(results[n]):8.0f} samples/s   runs {[round(x) for x in results[n]]}")
    pipe = results["pipeline (2 stages)"]
    for other in ("single (2 threads)", "allreduce (2 workers)"):
        ratios = [a / b for a, b in zip(pipe, results[other])]
        print(f"pipeline / {other:22} median ratio {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()

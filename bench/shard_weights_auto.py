#!/usr/bin/python3
"""Equal shard weights against --shard-weights auto when one of two workers is slow.

  bench/shard_weights_auto.py [--loom build/loom] [--rounds 3] [--slowdown 2]

Worker 1 is made FACTOR times slower with loom's benchmark aid --bench-slowdown (it
sleeps (FACTOR-1) x its compute time each step, standing in for older hardware or a
shared machine). Both runs: --strategy allreduce --nproc 2 --partition proportional,
the CNN on synthetic data, global batch 128, 1 thread per worker, one epoch; A and B
alternate. Prints the epoch time (training steps only) and the median speed-up."""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {k: v for k, v in os.environ.items()
       if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}


def epoch_seconds(a, weights):
    with tempfile.TemporaryDirectory() as d:
        m = os.path.join(d, "m.jsonl")
        cmd = [a.loom, "train", "--strategy", "allreduce", "--nproc", "2", "--partition", "proportional",
               "--model", "cnn", "--data", "synthetic", "--synthetic-samples", str(a.samples), "--batch-size", "128",
               "--epochs", "1", "--threads", "1", "--no-eval", "--progress", "off", "--log-level", "error",
               "--bench-slowdown", f"1:{a.slowdown}", "--metrics", m]
        if weights:
            cmd += ["--shard-weights", weights]
        subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
        with open(m) as f:
            return json.loads(f.readlines()[-1])["train_s"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loom", default=os.path.join(HERE, "..", "build", "loom"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--slowdown", type=float, default=2.0)
    p.add_argument("--samples", type=int, default=12288)
    a = p.parse_args()
    print(f"shard_weights_auto: 2 workers, worker 1 {a.slowdown}x slower, CNN, {a.samples} samples, batch 128")
    print(f"{'round':>5} {'equal s':>9} {'auto s':>9} {'speed-up':>9}")
    ups = []
    for r in range(a.rounds):
        if r % 2 == 0:
            e, u = epoch_seconds(a, ""), epoch_seconds(a, "auto")
        else:
            u, e = epoch_seconds(a, "auto"), epoch_seconds(a, "")
        ups.append(e / u)
        print(f"{r + 1:>5} {e:>9.2f} {u:>9.2f} {e / u:>9.3f}", flush=True)
    print(f"median speed-up of auto over equal weights: {statistics.median(ups):.3f}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""A straggler under the parameter server: sync vs ssp vs async in the same wall time.

  bench/ps_straggler.py [--loom build/loom] [--seconds 60] [--rounds 1]

2 workers + 1 server, the CNN on Fashion-MNIST, global batch 128, 1 thread per worker;
worker 1 made 2x slower with the benchmark aid `--bench-slowdown 1:2` (it sleeps as
long again as it computed, each step). Each mode trains for the same `--time-limit`
(seconds of training, decided per worker in async / ssp) and is then evaluated.
Reported per mode: the steps each worker pushed (from the server's log), steps per
second of both workers together, and the test accuracy reached. The modes run one
after the other in each round, in rotated order."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ)
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(k, None)
MODES = [("sync", []), ("ssp s=2", ["--consistency", "ssp", "--staleness", "2"]),
         ("async", ["--consistency", "async"])]


def run(a, extra):
    with tempfile.TemporaryDirectory() as d:
        m = os.path.join(d, "m.jsonl")
        cmd = [a.loom, "train", "--strategy", "ps", "--nproc", "2", "--servers", "1", "--model", "cnn",
               "--data", "fashion-mnist", "--epochs", "20", "--time-limit", str(a.seconds), "--log-every", "10",
               "--batch-size", "128", "--lr", "0.05", "--momentum", "0.9", "--threads", "1",
               "--bench-slowdown", "1:2", "--progress", "off", "--timeout", "120", "--metrics", m] + extra
        p = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"ps_straggler: {' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
        found = re.search(r"steps pushed by each worker: ([0-9, ]+)", p.stderr)
        steps = [int(x) for x in found.group(1).split(",")] if found else []
        with open(m) as f:
            summary = json.loads(f.readlines()[-1])
        return steps, summary["train_s"], summary["test_accuracy"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loom", default=os.path.join(HERE, "..", "build", "loom"))
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--rounds", type=int, default=1)
    a = p.parse_args()
    print(f"ps_straggler: 2 workers (worker 1 2x slower) + 1 server, CNN on Fashion-MNIST, batch 128, "
          f"{a.seconds:.0f} s of training per run")
    print(f"{'round':>5} {'mode':>8} {'w0 steps':>9} {'w1 steps':>9} {'steps/s':>8} {'accuracy':>9}")
    rates = {name: [] for name, _ in MODES}
    accs = {name: [] for name, _ in MODES}
    for r in range(a.rounds):
        order = MODES[r % 3:] + MODES[:r % 3]
        for name, extra in order:
            steps, train_s, acc = run(a, extra)
            rate = sum(steps) / train_s if train_s > 0 else 0
            rates[name].append(rate)
            accs[name].append(acc)
            print(f"{r + 1:>5} {name:>8} {steps[0] if steps else -1:>9} {steps[1] if len(steps) > 1 else -1:>9} "
                  f"{rate:>8.2f} {acc:>9.4f}", flush=True)
    sync_rate = statistics.median(rates["sync"])
    for name, _ in MODES:
        print(f"median {name:>8}: {statistics.median(rates[name]):.2f} steps/s "
              f"({statistics.median(rates[name]) / sync_rate:.2f}x sync), accuracy {statistics.median(accs[name]):.4f}")


if __name__ == "__main__":
    sys.exit(main())

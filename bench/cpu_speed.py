#!/usr/bin/python3
"""Is every CPU of this machine equally fast? One thread of libtorch matmuls pinned to
each CPU in turn, rounds alternating the CPUs, medians.

  bench/cpu_speed.py [--rounds 4] [--iters 3000]

A pipeline stage (or a data-parallel rank) that the scheduler keeps on a slower CPU is
slower for the whole run, and its neighbours wait for it: docs/performance.md, "Pipeline
bubble at M = 8". The matmul is one 64 x 523 micro-batch through a 523 x 523 layer, the
shape of bench/pipeline_bubble.py's layers.
"""
import argparse
import os
import statistics
import subprocess
import sys

CHILD = """
import time, torch
torch.set_num_threads(1)
a, w = torch.randn(64, 523), torch.randn(523, 523)
for _ in range(50):
    a @ w
t = time.perf_counter()
for _ in range({iters}):
    a @ w
print(time.perf_counter() - t)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--iters", type=int, default=3000)
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    times = {c: [] for c in cpus}
    for r in range(args.rounds):
        for c in (cpus if r % 2 == 0 else list(reversed(cpus))):
            out = subprocess.run(["taskset", "-c", str(c), sys.executable, "-c", CHILD.format(iters=args.iters)],
                                 capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
            times[c].append(float(out.stdout.strip()) * 1e3)
    fastest = min(statistics.median(t) for t in times.values())
    print(f"# {args.iters} matmuls [64 x 523] @ [523 x 523], 1 thread pinned per CPU, {args.rounds} rounds, medians")
    print(f"{'cpu':>4} {'ms':>8} {'/ fastest':>10}  rounds")
    for c in cpus:
        m = statistics.median(times[c])
        print(f"{c:>4} {m:8.1f} {m / fastest:10.3f}  {' '.join(f'{x:.0f}' for x in times[c])}")


if __name__ == "__main__":
    main()

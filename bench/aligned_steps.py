#!/usr/bin/python3
"""Does starting every step at the same moment slow two processes down, with no
communication at all? (issue 19, the CNN's forward +0.25 ms in docs/performance.md)

  /usr/bin/python3 bench/aligned_steps.py [--pairs 5] [--steps 400] [--batch-size 32]

Two processes (PyTorch, one intra-op thread each) train loom's `cnn` (two 3x3
convolutions, 32 and 64 channels, each with ReLU and 2x2 max-pooling, then 3136 -> 128 -> 10) on one
fixed random batch of 28x28 images, for --steps steps; each process times its forward
(with the loss) and its backward, medians over the steps after the first 20. Mode
"free": the two run independently, as the target's two single-process runs do. Mode
"aligned": a Gloo barrier before every step's forward (no gradient or parameter
crosses), so both start forward together, as synchronous data parallelism makes them.
Pairs alternate free and aligned; printed per pair: each mode's forward and backward
(mean of the two ranks' medians) and aligned / free, then the medians of the ratios.
Set MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ as for the other CNN benches.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn


def rank_main(rank, mode, steps, batch, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(rank)
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    forward, backward = [], []
    for step in range(steps):
        if mode == "aligned":
            dist.barrier()
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        if step >= 20:
            forward.append(t1 - t0)
            backward.append(t2 - t1)
    dist.barrier()
    out[rank] = (statistics.median(forward), statistics.median(backward))
    dist.destroy_process_group()


def run(mode, args, port):
    out = mp.Manager().dict()
    mp.spawn(rank_main, args=(mode, args.steps, args.batch_size, port, out), nprocs=2)
    return tuple(statistics.mean(out[r][k] for r in (0, 1)) * 1e3 for k in (0, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--port", type=int, default=29650)
    args = ap.parse_args()
    print(f"# {args.pairs} pairs, {args.steps} steps, batch {args.batch_size}, 1 thread per process; ms")
    print(f"{'pair':>4} {'free fwd':>9} {'aligned fwd':>11} {'ratio':>6} {'free bwd':>9} {'aligned bwd':>11} {'ratio':>6}")
    fr, br = [], []
    for p in range(args.pairs):
        free = run("free", args, args.port + 2 * p)
        aligned = run("aligned", args, args.port + 2 * p + 1)
        fr.append(aligned[0] / free[0])
        br.append(aligned[1] / free[1])
        print(f"{p + 1:>4} {free[0]:9.3f} {aligned[0]:11.3f} {fr[-1]:6.3f} {free[1]:9.3f} {aligned[1]:11.3f} {br[-1]:6.3f}",
              flush=True)
    print(f"median aligned / free: forward {statistics.median(fr):.3f}, backward {statistics.median(br):.3f}")


if __name__ == "__main__":
    sys.exit(main())

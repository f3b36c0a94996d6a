#!/usr/bin/python3
"""PyTorch DDP peer for bench/allreduce_vs_ddp.py: the same models and batch sizes as
loom, gloo backend, 1 intra-op thread per process, data preloaded as tensors.
Started under `loom run --nproc N` (it sets RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT,
since `python3 -m torch.distributed.run` crashes on Debian's Python 3.11).
Rank 0 prints one JSON line: {"samples_per_s": ...} (all workers together)."""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


def make_model(name, depth, width):
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "deep-mlp":
        layers = [nn.Flatten(), nn.Linear(784, width), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Linear(width, width), nn.ReLU()]
        layers.append(nn.Linear(width, 10))
        return nn.Sequential(*layers)
    raise SystemExit(f"unknown model {name}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="cnn")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128, help="GLOBAL batch per step")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--samples", type=int, default=8192)
    a = p.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(a.samples, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (a.samples,), generator=g)
    model = nn.parallel.DistributedDataParallel(make_model(a.model, a.depth, a.width))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    local = a.batch_size // world
    perm = torch.randperm(a.samples, generator=g)
    start = time.perf_counter()
    for t in range(a.steps):
        idx = perm[(t * local) % (a.samples - local):][:local]
        opt.zero_grad()
        loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
        loss.backward()
        opt.step()
        loss.item()
    elapsed = time.perf_counter() - start  # every step timed, like loom's summary
    if rank == 0:
        print(json.dumps({"samples_per_s": a.steps * a.batch_size / elapsed}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

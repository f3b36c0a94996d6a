#!/usr/bin/python3
"""PyTorch DDP peer for bench/allreduce_vs_ddp.py: the same models and batch sizes as
loom, data preloaded as tensors, at PyTorch's fastest documented CPU settings:

* gloo backend (the only CPU backend), default 25 MB buckets (loom's default too);
* `gradient_as_bucket_view=True`: gradients are views into the allreduce buckets, no
  copy in or out (DDP's documented memory/speed setting; loom always does this);
* 1 intra-op thread and 1 inter-op thread per process (`torch.set_num_threads`,
  `torch.set_num_interop_threads`), as loom's `--threads 1` sets; the driver also sets
  OMP_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1 for OpenBLAS's own pool;
* `--foreach` / `--static-graph` switch on SGD's multi-tensor update and DDP's
  `static_graph=True` (measured by the driver's `--ddp-foreach` / `--ddp-static-graph`).

Started under `loom run --nproc N` (it sets RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT,
since `python3 -m torch.distributed.run` crashes on Debian's Python 3.11).

Timing: `--warmup` steps run first and are not timed (the first step builds DDP's
buckets and faults in every buffer); then rank 0 times the next `--steps` steps by wall
clock, from the end of the last warm-up step to the end of the last step (each step
ends with the loss read back). Rank 0 prints one JSON line:
{"samples_per_s": ..., "settings": {...}} (samples of all workers together)."""
import argparse
import json
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
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--steps", type=int, default=60, help="timed steps")
    p.add_argument("--samples", type=int, default=8192)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bucket-mb", type=float, default=25)
    p.add_argument("--foreach", action="store_true", help="SGD(foreach=True)")
    p.add_argument("--static-graph", action="store_true", help="DDP(static_graph=True)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(a.samples, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (a.samples,), generator=g)
    model = nn.parallel.DistributedDataParallel(make_model(a.model, a.depth, a.width),
                                                bucket_cap_mb=a.bucket_mb, gradient_as_bucket_view=True,
                                                static_graph=a.static_graph)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=a.foreach or None)
    local = a.batch_size // world
    perm = torch.randperm(a.samples, generator=g)
    start = None
    for t in range(a.warmup + a.steps):
        if t == a.warmup:
            start = time.perf_counter()
        idx = perm[(t * local) % (a.samples - local):][:local]
        opt.zero_grad()  # set_to_none=False (1.13's default): the gradients stay bucket views
        loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
        loss.backward()
        opt.step()
        loss.item()
    elapsed = time.perf_counter() - start
    if rank == 0:
        settings = {"torch": torch.__version__, "backend": "gloo", "gradient_as_bucket_view": True,
                    "bucket_cap_mb": a.bucket_mb, "static_graph": a.static_graph, "sgd_foreach": a.foreach,
                    "intra_op_threads": torch.get_num_threads(), "inter_op_threads": torch.get_num_interop_threads(),
                    "warmup_steps": a.warmup, "timed_steps": a.steps}
        print(json.dumps({"samples_per_s": a.steps * a.batch_size / elapsed, "settings": settings}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

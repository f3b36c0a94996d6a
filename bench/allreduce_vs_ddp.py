#!/usr/bin/python3
"""loom --strategy allreduce against PyTorch DDP (gloo), side by side, alternating.

  bench/allreduce_vs_ddp.py [--loom build/loom] [--rounds 5] [--nproc 2]
      [--model cnn|deep-mlp] [--batch-size 128] [--steps 60]

Both sides: N processes x 1 intra-op thread, the same model and GLOBAL batch, data
preloaded as tensors, every step timed, and the same allocator setting (glibc's
M_MMAP_THRESHOLD / M_TRIM_THRESHOLD through the MALLOC_*_ environment variables, which
is what loom::init_process() sets). Also runs loom single-process with 1 thread to give
the scaling efficiency: allreduce throughput / (N x single throughput), and N
independent single-process runs at once (no communication at all), which is the most N
processes get from this machine: the ceiling of any scaling efficiency here.
Prints each round and the medians of the ratios."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(1 << 30),
           OMP_NUM_THREADS="1")
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(k, None)


def loom_run(a, strategy, nproc):
    with tempfile.TemporaryDirectory() as d:
        m = os.path.join(d, "m.jsonl")
        cmd = [a.loom, "train", "--strategy", strategy, "--nproc", str(nproc), "--model", a.model,
               "--depth", str(a.depth), "--width", str(a.width), "--data", "synthetic",
               "--synthetic-samples", "8192", "--batch-size", str(a.batch_size // (1 if nproc > 1 else a.nproc)),
               "--steps", str(a.steps), "--threads", "1", "--lr", "0.01", "--momentum", "0.9",
               "--no-eval", "--progress", "off", "--log-level", "warn", "--metrics", m]
        if a.bucket_mb > 0 and strategy == "allreduce":
            cmd += ["--bucket-mb", str(a.bucket_mb)]
        subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
        with open(m) as f:
            return json.loads(f.readlines()[-1])["samples_per_s"]


def pair_run(a):
    """N independent single-process runs at once (no communication): what this machine
    gives N processes, the ceiling for any data-parallel run on it."""
    with tempfile.TemporaryDirectory() as d:
        procs, files = [], []
        for i in range(a.nproc):
            m = os.path.join(d, f"m{i}.jsonl")
            files.append(m)
            cmd = [a.loom, "train", "--strategy", "single", "--model", a.model, "--depth", str(a.depth),
                   "--width", str(a.width), "--data", "synthetic", "--synthetic-samples", "8192",
                   "--batch-size", str(a.batch_size // a.nproc), "--steps", str(a.steps), "--threads", "1",
                   "--lr", "0.01", "--momentum", "0.9", "--no-eval", "--progress", "off", "--log-level", "warn",
                   "--metrics", m, "--seed", str(i + 1)]
            procs.append(subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL))
        for pr in procs:
            if pr.wait() != 0:
                raise SystemExit("independent single run failed")
        total = 0
        for m in files:
            with open(m) as f:
                total += json.loads(f.readlines()[-1])["samples_per_s"]
        return total


def ddp_run(a):
    cmd = [a.loom, "run", "--nproc", str(a.nproc), "--no-prefix", "--", "/usr/bin/python3",
           os.path.join(HERE, "peers", "ddp_peer.py"), "--model", a.model, "--depth", str(a.depth),
           "--width", str(a.width), "--batch-size", str(a.batch_size), "--steps", str(a.steps)]
    out = subprocess.run(cmd, check=True, env=ENV, capture_output=True, text=True).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])["samples_per_s"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loom", default=os.path.join(HERE, "..", "build", "loom"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--model", default="cnn")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128, help="GLOBAL batch (64 per process with 2)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--bucket-mb", type=float, default=0, help="loom's --bucket-mb (0: loom's default)")
    a = p.parse_args()
    print(f"allreduce_vs_ddp: model {a.model}, {a.nproc} processes x 1 thread, global batch {a.batch_size}, "
          f"{a.steps} steps, {a.rounds} rounds")
    print(f"{'round':>5} {'loom s/s':>10} {'ddp s/s':>10} {'single s/s':>10} {'indep s/s':>10} {'loom/ddp':>9} "
          f"{'scaling':>8} {'ceiling':>8} {'vs ceil':>8}")
    ratios, scaling, ceiling, vs_ceiling = [], [], [], []
    for r in range(a.rounds):
        if r % 2 == 0:
            l, d, s, i = loom_run(a, "allreduce", a.nproc), ddp_run(a), loom_run(a, "single", 1), pair_run(a)
        else:
            i, s, d, l = pair_run(a), loom_run(a, "single", 1), ddp_run(a), loom_run(a, "allreduce", a.nproc)
        ratios.append(l / d)
        scaling.append(l / (a.nproc * s))
        ceiling.append(i / (a.nproc * s))
        vs_ceiling.append(l / i)
        print(f"{r + 1:>5} {l:>10.1f} {d:>10.1f} {s:>10.1f} {i:>10.1f} {l / d:>9.3f} {scaling[-1]:>8.3f} "
              f"{ceiling[-1]:>8.3f} {vs_ceiling[-1]:>8.3f}", flush=True)
    print(f"median loom/ddp: {statistics.median(ratios):.3f}   median scaling efficiency: "
          f"{statistics.median(scaling):.3f}   machine ceiling ({a.nproc} independent processes): "
          f"{statistics.median(ceiling):.3f}   allreduce / independent: {statistics.median(vs_ceiling):.3f}")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""loom --strategy allreduce against PyTorch DDP (gloo), side by side, alternating.

  bench/allreduce_vs_ddp.py [--loom build/loom] [--rounds 5] [--nproc 2]
      [--model cnn|deep-mlp] [--batch-size 128] [--warmup 10] [--steps 60]
      [--transport both|shm|tcp] [--no-scaling] [--ddp-foreach] [--ddp-static-graph]

Two loom transports, both against the same DDP runs:
  shm  loom as shipped: float buckets of ranks on one machine go through shared memory
       (docs/allreduce.md). loom/DDP with shm is what a user gets.
  tcp  loom with LOOM_SHM_ALLREDUCE=0: Gloo over loopback TCP, the transport DDP uses,
       so loom/DDP with tcp is the worth of loom's loop alone.

Both sides: N processes x 1 intra-op thread (and 1 inter-op thread; OMP_NUM_THREADS=1
and OPENBLAS_NUM_THREADS=1 for OpenBLAS's own pool), the same model, GLOBAL batch and
25 MB buckets, data preloaded as tensors, SGD with momentum, the same allocator setting
(glibc's M_MMAP_THRESHOLD / M_TRIM_THRESHOLD through the MALLOC_*_ environment
variables, which is what loom::init_process() sets). PyTorch DDP runs with
gradient_as_bucket_view=True (its fastest documented setting; loom's gradients are
always bucket views), see bench/peers/ddp_peer.py.

Timing, the same on both sides: --warmup steps run untimed, then rank 0's wall clock
over the next --steps steps, from the end of the last warm-up step to the end of the
last step. DDP's rank 0 times itself; loom's rank 0 writes a metrics record after step
--warmup and after the last step (--log-every = --warmup), into a FIFO this driver
reads, and the driver takes the wall clock between the two records' arrival.

Unless --no-scaling: also loom single-process with 1 thread (the per-process batch) for
the scaling efficiency = allreduce(shm) / (N x single), and N independent single-process
runs at once (no communication at all), the most N processes get from this machine:
the ceiling of any scaling efficiency here. Timed the same way.

Each round runs every configuration once; the order reverses every other round.
Prints each round, then the median and range of each per-round ratio."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(1 << 30),
           OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
          "LOOM_SHM_ALLREDUCE"):
    ENV.pop(k, None)


class RecordClock:
    """Reads loom's --metrics through a FIFO and notes when each step record arrives.
    loom writes `path.partial` and renames it at the end, so the FIFO takes that name."""

    def __init__(self, path):
        self.path = path
        os.mkfifo(path + ".partial")
        self.arrivals = []  # (step, perf_counter seconds)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        with open(self.path + ".partial", "rb") as f:  # blocks until loom opens it
            for line in f:
                now = time.perf_counter()
                rec = json.loads(line)
                if rec.get("event") == "step":
                    self.arrivals.append((rec["step"], now))

    def samples_per_s(self, warmup, steps, batch):
        self.thread.join(timeout=30)
        got = dict(self.arrivals)
        if warmup not in got or warmup + steps not in got:
            raise SystemExit(f"loom's metrics lack step {warmup} or {warmup + steps}: {sorted(got)}")
        return steps * batch / (got[warmup + steps] - got[warmup])


def loom_cmd(a, strategy, nproc, batch, metrics, seed=None):
    cmd = [a.loom, "train", "--strategy", strategy, "--nproc", str(nproc), "--model", a.model,
           "--depth", str(a.depth), "--width", str(a.width), "--data", "synthetic",
           "--synthetic-samples", "8192", "--batch-size", str(batch), "--steps", str(a.warmup + a.steps),
           "--log-every", str(a.warmup), "--threads", "1", "--lr", "0.01", "--momentum", "0.9",
           "--no-eval", "--progress", "off", "--log-level", "warn", "--metrics", metrics]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if a.bucket_mb > 0 and strategy == "allreduce":
        cmd += ["--bucket-mb", str(a.bucket_mb)]
    return cmd


def loom_runs(a, specs):
    """Starts every (strategy, nproc, batch, env, seed) in specs at once; returns each
    one's samples/s over the timed steps."""
    with tempfile.TemporaryDirectory() as d:
        started = []
        for i, (strategy, nproc, batch, env, seed) in enumerate(specs):
            m = os.path.join(d, f"m{i}.jsonl")
            clock = RecordClock(m)
            proc = subprocess.Popen(loom_cmd(a, strategy, nproc, batch, m, seed), env=env, stdout=subprocess.DEVNULL)
            started.append((proc, clock, batch))
        for proc, _, _ in started:
            if proc.wait() != 0:
                raise SystemExit("a loom run failed")
        return [clock.samples_per_s(a.warmup, a.steps, batch) for _, clock, batch in started]


def loom_allreduce(a, transport):
    env = dict(ENV, LOOM_SHM_ALLREDUCE="0") if transport == "tcp" else ENV
    return loom_runs(a, [("allreduce", a.nproc, a.batch_size, env, None)])[0]


def loom_single(a):
    return loom_runs(a, [("single", 1, a.batch_size // a.nproc, ENV, None)])[0]


def independent(a):
    """N independent single-process runs at once (no communication): what this machine
    gives N processes, the ceiling for any data-parallel run on it."""
    return sum(loom_runs(a, [("single", 1, a.batch_size // a.nproc, ENV, i + 1) for i in range(a.nproc)]))


def ddp_args(a):
    args = ["--model", a.model, "--depth", str(a.depth), "--width", str(a.width), "--batch-size",
            str(a.batch_size), "--warmup", str(a.warmup), "--steps", str(a.steps), "--threads", "1",
            "--bucket-mb", str(a.bucket_mb if a.bucket_mb > 0 else 25)]
    if a.ddp_foreach:
        args.append("--foreach")
    if a.ddp_static_graph:
        args.append("--static-graph")
    return args


def ddp_run(a):
    cmd = [a.loom, "run", "--nproc", str(a.nproc), "--no-prefix", "--", "/usr/bin/python3",
           os.path.join(HERE, "peers", "ddp_peer.py")] + ddp_args(a)
    out = subprocess.run(cmd, check=True, env=ENV, capture_output=True, text=True).stdout
    rec = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    a.ddp_settings = rec["settings"]
    return rec["samples_per_s"]


def spread(v):
    return f"{statistics.median(v):.3f} (range {min(v):.3f}-{max(v):.3f}, n={len(v)})"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loom", default=os.path.join(HERE, "..", "build", "loom"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--model", default="cnn")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128, help="GLOBAL batch (64 per process with 2)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first, on every side (>= 1)")
    p.add_argument("--steps", type=int, default=60, help="timed steps after the warm-up")
    p.add_argument("--bucket-mb", type=float, default=0, help="loom's and DDP's bucket cap (0: both defaults, 25)")
    p.add_argument("--transport", choices=("both", "shm", "tcp"), default="both",
                   help="loom's allreduce transport(s): shm (default, as shipped), tcp (LOOM_SHM_ALLREDUCE=0)")
    p.add_argument("--no-scaling", action="store_true", help="skip the single and independent runs")
    p.add_argument("--ddp-foreach", action="store_true", help="DDP peer: SGD(foreach=True)")
    p.add_argument("--ddp-static-graph", action="store_true", help="DDP peer: DDP(static_graph=True)")
    a = p.parse_args()
    if a.warmup < 1:
        raise SystemExit("--warmup must be at least 1")
    transports = ["shm", "tcp"] if a.transport == "both" else [a.transport]

    configs = [(f"loom-{t}", (lambda t=t: loom_allreduce(a, t))) for t in transports] + [("ddp", lambda: ddp_run(a))]
    if not a.no_scaling:
        configs += [("single", lambda: loom_single(a)), ("indep", lambda: independent(a))]
    names = [n for n, _ in configs]

    print(f"allreduce_vs_ddp: model {a.model}"
          f"{f' depth {a.depth} width {a.width}' if a.model == 'deep-mlp' else ''}, {a.nproc} processes x 1 thread, "
          f"global batch {a.batch_size}, {a.warmup} warm-up + {a.steps} timed steps (wall clock, rank 0), "
          f"{a.rounds} rounds, order reversed every other round")
    print("  loom: --threads 1, bucket cap " + (f"{a.bucket_mb} MB" if a.bucket_mb > 0 else "25 MB (default)") +
          ", gradients as bucket views (always); shm = as shipped, tcp = LOOM_SHM_ALLREDUCE=0 (Gloo over TCP)")
    print(f"  ddp: {' '.join(ddp_args(a))} (gloo, gradient_as_bucket_view=True, 1 intra-op + 1 inter-op thread)")
    print(f"  both: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_={32 << 20} "
          f"MALLOC_TRIM_THRESHOLD_={1 << 30}")
    print(f"  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)

    ratio_names = [f"{n}/ddp" for n in names if n.startswith("loom-")]
    if "loom-shm" in names and "loom-tcp" in names:
        ratio_names.append("shm/tcp")
    if not a.no_scaling:
        first = names[0]
        ratio_names += [f"scaling({first[5:]})", "ceiling", f"{first[5:]}/indep"]
    print(f"{'round':>5} " + " ".join(f"{n + ' s/s':>13}" for n in names) + " " +
          " ".join(f"{n:>12}" for n in ratio_names))
    ratios = {n: [] for n in ratio_names}
    for r in range(a.rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        v = {}
        for name, run in order:
            v[name] = run()
        row = {}
        for n in names:
            if n.startswith("loom-"):
                row[f"{n}/ddp"] = v[n] / v["ddp"]
        if "shm/tcp" in ratios:
            row["shm/tcp"] = v["loom-shm"] / v["loom-tcp"]
        if not a.no_scaling:
            first = names[0]
            row[f"scaling({first[5:]})"] = v[first] / (a.nproc * v["single"])
            row["ceiling"] = v["indep"] / (a.nproc * v["single"])
            row[f"{first[5:]}/indep"] = v[first] / v["indep"]
        for n, x in row.items():
            ratios[n].append(x)
        print(f"{r + 1:>5} " + " ".join(f"{v[n]:>13.1f}" for n in names) + " " +
              " ".join(f"{row[n]:>12.3f}" for n in ratio_names), flush=True)
    print(f"  ddp settings reported by the peer: {json.dumps(getattr(a, 'ddp_settings', {}))}")
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for n in ratio_names:
        print(f"median {n}: {spread(ratios[n])}")


if __name__ == "__main__":
    sys.exit(main())

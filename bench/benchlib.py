"""Shared by the issue-16 benches (scripted_vs_builtin.py, npy_vs_memory.py,
mmap_shard_memory.py): run `loom train` with --metrics, read the timed steps' rate
from its step records, and summarise per-round ratios. Not a test; nothing registers it.

Timing. loom's step records carry `samples_per_s` and `step_ms` over the window since
the previous record, counting only the steps' own time (batch gather + the strategy's
step; start-up, rendezvous, evaluation and metric writes excluded). With --log-every W
and W warm-up steps, every record after step W is a timed window, so the timed rate is
  sum(samples in those windows) / sum(seconds of those windows),
seconds = step_ms * steps_in_window / 1000, samples = samples_per_s * seconds.
The summary record's samples_per_s counts the warm-up steps too (a TorchScript module's
first calls run the profiling executor), so it is printed beside, never used for ratios."""
import json
import os
import statistics
import subprocess
import tempfile
import time

MiB = 1 << 20

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LOOM = os.path.join(HERE, "..", "build", "loom")

# One thread everywhere, on every side: loom's --threads 1 sets intra-op threads and
# OpenBLAS's pool; these cover anything started before loom reads its flags.
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
          "LOOM_SHM_ALLREDUCE", "LOOM_FAULT_INJECT", "LOOM_MALLOC_TUNING"):
    ENV.pop(k, None)


def read_metrics(path):
    steps, summary, evals = [], None, []
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("event") == "step":
                steps.append(rec)
            elif rec.get("event") == "summary":
                summary = rec
            elif rec.get("event") == "eval":
                evals.append(rec)
    return steps, summary, evals


def timed_rate(steps, warmup):
    """(samples/s, ms per step) over the step records after step `warmup`."""
    by_step = sorted(steps, key=lambda r: r["step"])
    if not any(r["step"] == warmup for r in by_step):
        raise SystemExit(f"loom's metrics lack a record at step {warmup} (the end of the warm-up): "
                         f"{[r['step'] for r in by_step]}")
    prev, seconds, samples, n = warmup, 0.0, 0.0, 0
    for r in by_step:
        if r["step"] <= warmup:
            continue
        k = r["step"] - prev
        s = r["step_ms"] * k / 1e3
        seconds += s
        samples += r["samples_per_s"] * s
        n += k
        prev = r["step"]
    if n == 0 or seconds <= 0:
        raise SystemExit("no timed steps after the warm-up")
    return samples / seconds, 1e3 * seconds / n


def train(loom, args, warmup, env=None, check=True):
    """Runs `loom train ARGS` with its metrics in a temporary file. Returns a dict:
    rate (timed samples/s), step_ms, summary (the summary record), evals, wall (s)."""
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as d:
        m = os.path.join(d, "m.jsonl")
        cmd = [loom, "train"] + list(args) + ["--metrics", m, "--progress", "off", "--log-level", "warn"]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            msg = f"loom failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.strip()}"
            if check:
                raise SystemExit(msg)
            return {"error": msg}
        steps, summary, evals = read_metrics(m)
    rate, step_ms = timed_rate(steps, warmup) if warmup is not None else (None, None)
    return {"rate": rate, "step_ms": step_ms, "summary": summary, "evals": evals, "wall": wall, "cmd": cmd}


def spread(v, fmt="{:.3f}"):
    return (f"{fmt.format(statistics.median(v))} (range {fmt.format(min(v))}-{fmt.format(max(v))}, "
            f"n={len(v)})")


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def shell(cmd):
    """A command list as one copy-pasteable line."""
    return " ".join(c if c and all(ch.isalnum() or ch in "-_./:,=+" for ch in c) else repr(c) for c in cmd)


# ---- Page cache of one file (never the whole machine's) ----------------------------

def drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def fill_cache(path):
    """Reads the whole file with read(2), as `cat` would: all of it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * MiB):
            pass


def cached_bytes(path):
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path], capture_output=True,
                         text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.split() else None

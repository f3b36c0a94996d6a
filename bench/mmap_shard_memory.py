#!/usr/bin/python3
"""Resident memory of memory-mapped shards (issue 16): does a worker of
`--partition random` map only the pages of its own rows of a NumPy file?

  bench/mmap_shard_memory.py [--loom build/loom] [--rows 24576] [--sample-shape 16384]
      [--nproc 4] [--batch-size 256] [--epochs 2] [--cache cold,warm] [--dir /tmp/loom-npy-big]
      [--no-single] [--no-reference] [--keep]

Writes DIR/x.npy, float32 [rows, *sample_shape] (default 24576 rows of 16384 floats =
64 KiB each, 1.5 GiB) of seeded normal noise, and DIR/y.npy, int64 [rows] in [0, 10).
Then trains a tiny model (deep-mlp --depth 2 --width 16: linear(16384 -> 16) -> relu ->
linear(16 -> 10)) on `--data npy:DIR/x.npy,DIR/y.npy`:

  shards  --strategy allreduce --nproc 4 --partition random, global batch 256 (64 each),
          --epochs 2: random shards are fixed for the whole run, so epoch 1 reads each
          worker's whole shard (a quarter of the rows) and epoch 2 reads the same rows again
  single  --strategy single, batch 64, --epochs 2: one process reads every row

While a job runs, every 0.1 s, for the launcher and each process below it: the resident
size of its mapping of x.npy (the `Rss:` of that mapping in /proc/PID/smaps: pages
mapped into THIS process's page tables; pages that sit in the page cache but that the
process never mapped do not count), and VmRSS, RssFile, RssAnon, VmHWM from
/proc/PID/status. The peak of each is reported against the file size and against what
the worker's own rows need, computed from --record-indices (the rows each rank read):
its rows' bytes, the 4 KiB pages they span, the 64 KiB-aligned windows (fault-around)
and the 2 MiB-aligned blocks they touch.
After each job, `fincore` gives the file's pages in the page cache (all processes
together).

Page cache state, both by default (--cache):
  cold  before the job: fdatasync, then posix_fadvise(POSIX_FADV_DONTNEED) on x.npy only
        (other files' cache is left alone); `fincore` confirms 0 bytes cached
  warm  before the job, the whole file is read with read(2) (as `cat` would), so all of
        it is in the page cache, as right after writing or reading it
A fault on a cached page may map more than the page: Linux maps cached neighbours
("fault-around"), and since 6.18 a whole large folio (up to 2 MiB on ext4, which writes
large folios); a cold fault maps what readahead brought in. So cold is the state that
shows what the process itself asked for, and warm the worst case.

Unless --no-reference: a Python process memory-maps the same file with NumPy and
copies exactly rank 0's rows (from --record-indices) in the same order, then reports
the same Rss, with and without madvise(MADV_RANDOM): what any mmap reader gets from this
kernel for that access pattern, to tell loom's behaviour from the kernel's.
Deletes DIR at the end unless --keep."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
import benchlib  # noqa: E402

MiB = 1 << 20


def write_files(d, rows, shape, seed=0):
    import numpy as np
    os.makedirs(d, exist_ok=True)
    x_path, y_path = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
    rng = np.random.default_rng(seed)
    x = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32, shape=(rows,) + tuple(shape))
    chunk = max(1, (64 * MiB) // (x.itemsize * int(np.prod(shape))))
    for i in range(0, rows, chunk):
        x[i:i + chunk] = rng.standard_normal((min(chunk, rows - i),) + tuple(shape), dtype=np.float32)
    x.flush()
    del x
    np.save(y_path, rng.integers(0, 10, size=rows, dtype=np.int64))
    return x_path, y_path


def data_offset(path):
    import numpy as np
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        np.lib.format._read_array_header(f, version)
        return f.tell()


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def mapping_rss_kib(pid, path):
    """Sum of Rss over the mappings of `path` in /proc/PID/smaps, KiB (None if gone)."""
    total, cur = 0, False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(maxsplit=1)[0] if line.strip() else ""
                if "-" in head and not head.endswith(":"):
                    cur = line.rstrip("\n").endswith(" " + path)
                elif cur and head == "Rss:":
                    total += int(line.split()[1])
    except OSError:
        return None
    return total


def status_kib(pid):
    got = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k = line.split(":")[0]
                if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                    got[k] = int(line.split()[1])
    except OSError:
        return None
    return got


def label(pid, root):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        if b"RANK" in env:
            return f"rank {env[b'RANK'].decode()}"
    except OSError:
        pass
    return "launcher" if pid == root else f"pid {pid}"


class Sampler:
    def __init__(self, path):
        self.path = path
        self.peak = {}  # label -> {"map": KiB, "VmRSS":..., ...}
        self.pids = {}

    def sample(self, root):
        for pid in tree(root):
            lab = self.pids.get(pid)
            if lab is None:
                lab = self.pids[pid] = label(pid, root)
            m = mapping_rss_kib(pid, self.path)
            s = status_kib(pid)
            if m is None or s is None:
                continue
            peak = self.peak.setdefault(lab, {"map": 0, "VmRSS": 0, "RssAnon": 0, "RssFile": 0, "VmHWM": 0})
            peak["map"] = max(peak["map"], m)
            for k, v in s.items():
                peak[k] = max(peak[k], v)

    def watch(self, proc, interval):
        while proc.poll() is None:
            self.sample(proc.pid)
            time.sleep(interval)


def own_rows(record_dir):
    rows = {}
    for name in sorted(os.listdir(record_dir)):
        with open(os.path.join(record_dir, name)) as f:
            rec = json.load(f)
        rows[f"rank {rec['rank']}"] = sorted({i for step in rec["steps"] for i in step})
    return rows


def footprint(rows, offset, row_bytes):
    """Bytes of the rows, of the 4 KiB pages they span, of the 64 KiB-aligned windows
    (Linux's default fault-around) and of the 2 MiB-aligned blocks they touch."""
    pages, windows, blocks = set(), set(), set()
    for i in rows:
        a, b = offset + i * row_bytes, offset + (i + 1) * row_bytes - 1
        pages.update(range(a >> 12, (b >> 12) + 1))
        windows.update(range(a >> 16, (b >> 16) + 1))
        blocks.update(range(a >> 21, (b >> 21) + 1))
    return len(rows) * row_bytes, len(pages) << 12, len(windows) << 16, len(blocks) << 21


def reference(x_path, rows, advise_random, interval):
    """A NumPy mmap reader copying `rows` in order; returns its peak Rss of the mapping (KiB)."""
    code = f"""
import mmap, numpy as np, sys, time
x = np.load({x_path!r}, mmap_mode="r")
if {advise_random!r}:
    x._mmap.madvise(mmap.MADV_RANDOM)
rows = [int(r) for r in sys.stdin.read().split()]
for i in range(0, len(rows), 64):
    batch = np.array(x[rows[i:i + 64]])
print("done", flush=True)
time.sleep(1.0)
"""
    proc = subprocess.Popen(["/usr/bin/python3", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    proc.stdin.write(" ".join(map(str, rows)))
    proc.stdin.close()
    proc.stdout.readline()  # "done": every row copied, the process still alive
    rss = mapping_rss_kib(proc.pid, x_path)
    proc.wait()
    return rss


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loom", default=benchlib.DEFAULT_LOOM)
    p.add_argument("--dir", default="/tmp/loom-npy-big")
    p.add_argument("--rows", type=int, default=24576)
    p.add_argument("--sample-shape", default="16384", help="one row's shape, e.g. 16384 or 4,64,64")
    p.add_argument("--nproc", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256, help="global batch of the sharded job")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--cache", default="cold,warm")
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--no-single", action="store_true")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    a.loom = os.path.abspath(a.loom)
    shape = tuple(int(s) for s in a.sample_shape.split(","))
    try:
        t0 = time.time()
        x_path, y_path = write_files(a.dir, a.rows, shape)
        size = os.path.getsize(x_path)
        offset = data_offset(x_path)
        row_bytes = (size - offset) // a.rows
        print(f"mmap_shard_memory: loom {a.loom}; {x_path}: float32 {[a.rows] + list(shape)}, {size} B "
              f"({size / MiB:.1f} MiB; rows of {row_bytes} B from offset {offset}), written in {time.time() - t0:.1f} s; "
              f"{y_path}: int64 [{a.rows}]")
        print(f"  kernel {os.uname().release}; load average before: {benchlib.load()}", flush=True)
        jobs = [("shards", ["--strategy", "allreduce", "--nproc", str(a.nproc), "--partition", "random",
                            "--batch-size", str(a.batch_size)])]
        if not a.no_single:
            jobs.append(("single", ["--strategy", "single", "--batch-size", str(a.batch_size // a.nproc)]))
        first_rows = None
        for cache in a.cache.split(","):
            for name, extra in jobs:
                with tempfile.TemporaryDirectory(prefix="loom-rec-") as rec:
                    args = extra + ["--model", "deep-mlp", "--depth", "2", "--width", "16", "--data",
                                    f"npy:{x_path},{y_path}", "--epochs", str(a.epochs), "--threads", "1",
                                    "--lr", "0.01", "--seed", "0", "--no-eval", "--progress", "off",
                                    "--log-level", "warn", "--record-indices", rec]
                    benchlib.drop_cache(x_path) if cache == "cold" else benchlib.fill_cache(x_path)
                    before = benchlib.cached_bytes(x_path)
                    sampler = Sampler(x_path)
                    t = time.perf_counter()
                    proc = subprocess.Popen([a.loom, "train"] + args, env=benchlib.ENV)
                    sampler.watch(proc, a.interval)
                    if proc.returncode != 0:
                        raise SystemExit(f"loom failed ({proc.returncode}): loom train {benchlib.shell(args)}")
                    took = time.perf_counter() - t
                    after = benchlib.cached_bytes(x_path)
                    rows = own_rows(rec)
                if name == "shards" and first_rows is None:
                    first_rows = rows.get("rank 0")
                print(f"\n[{name}, {cache} cache] loom train {benchlib.shell(args)}")
                print(f"  {took:.1f} s; x.npy in the page cache: {before / MiB:.1f} MiB before, "
                      f"{after / MiB:.1f} MiB after (fincore, all processes)")
                print(f"  {'process':>9} {'rows read':>9} {'rows MiB':>9} {'pages MiB':>9} {'64K-win MiB':>11} {'2M-blk MiB':>10} "
                      f"{'x.npy Rss':>10} {'of file':>8} {'/pages':>7} {'VmHWM':>8} {'RssFile':>8} {'RssAnon':>8}")
                for lab in sorted(sampler.peak, key=lambda s: (not s.startswith("rank"), s)):
                    pk = sampler.peak[lab]
                    key = lab if lab in rows else ("rank 0" if name == "single" else None)
                    if key in rows:
                        rb, pb, wb, bb = footprint(rows[key], offset, row_bytes)
                        own = f"{len(rows[key]):>9} {rb / MiB:>9.1f} {pb / MiB:>9.1f} {wb / MiB:>11.1f} {bb / MiB:>10.1f}"
                        rel = f"{pk['map'] * 1024 / pb:>7.2f}"
                    else:
                        own, rel = f"{'-':>9} {'-':>9} {'-':>9} {'-':>11} {'-':>10}", f"{'-':>7}"
                    print(f"  {lab:>9} {own} {pk['map'] / 1024:>9.1f}M {pk['map'] * 1024 / size:>8.3f} {rel} "
                          f"{pk['VmHWM'] / 1024:>7.1f}M {pk['RssFile'] / 1024:>7.1f}M {pk['RssAnon'] / 1024:>7.1f}M",
                          flush=True)
        if not a.no_reference and first_rows:
            print(f"\n[reference: NumPy mmap reader copying rank 0's {len(first_rows)} rows, in 64-row batches]")
            for cache in a.cache.split(","):
                for advise in (False, True):
                    benchlib.drop_cache(x_path) if cache == "cold" else benchlib.fill_cache(x_path)
                    rss = reference(x_path, first_rows, advise, a.interval)
                    _, pb, _, _ = footprint(first_rows, offset, row_bytes)
                    print(f"  {cache} cache, {'MADV_RANDOM' if advise else 'no madvise '}: x.npy Rss "
                          f"{rss / 1024:.1f} MiB = {rss * 1024 / size:.3f} of the file, {rss * 1024 / pb:.2f} x its "
                          f"rows' pages", flush=True)
        print(f"\n  load average after: {benchlib.load()}")
    finally:
        if not a.keep:
            shutil.rmtree(a.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

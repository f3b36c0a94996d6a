#!/usr/bin/python3
"""Memory-mapped NumPy files against loom's in-memory Fashion-MNIST (issue 16).

  bench/npy_vs_memory.py [--loom build/loom] [--rounds 5] [--warmup 10]
      [--steps 200] [--mlp-steps 800] [--models cnn,mlp] [--cold] [--dir /tmp/loom-npy-fmnist] [--keep]

Exports Fashion-MNIST (the Debian package's gzipped IDX files) to NumPy files with
exactly loom's normalisation, computed with torch's own float32 ops in loom's order
(src/loom/data/fashion_mnist.cpp): x = u8.float().div(255).sub(0.2860).div(0.3530),
  DIR/train-x.npy  float32 [60000, 1, 28, 28], C order    DIR/train-y.npy  int64 [60000]
  DIR/test-x.npy   float32 [10000, 1, 28, 28]             DIR/test-y.npy   int64 [10000]
Then, each round, for every model, single process, --threads 1, batch 64, SGD lr 0.01
momentum 0.9, seed 0, no evaluation, the same steps:
  memory  loom train --data fashion-mnist        (decoded into RAM at start-up)
  npy     loom train --data npy:DIR/train-x.npy,DIR/train-y.npy   (memory-mapped)
  npy-cold  (with --cold) the same, the .npy files' pages dropped from the page cache first
Page cache: before every `memory` run the four .gz files, and before every `npy` run
the two train .npy files, are read whole with read(2), so each side starts with its
files in the page cache (this machine also evicts cold cached pages on its own, a few
MB a minute, so "written an hour ago" is not "cached"). `npy-cold` drops the .npy
files' pages first (fdatasync + posix_fadvise DONTNEED on those two files only): each
row is then read from disk inside a step, while `memory` reads its files before the
first step, outside the timed steps.
Every run is its own process; each model's runs go back to back, in an order reversed
every other round. Timing: --warmup
untimed steps, then samples/s of the timed steps from loom's step records (batch
gather + step; start-up excluded: see benchlib.py). Ratio npy/memory per round (>= 1.0:
npy not slower per step, issue 16's target), median and range.

Check that both read identical values: the final training losses of the two sides
(same seed and steps) must be equal, and one extra run per model with evaluation
(--eval on fashion-mnist's test split; --eval --eval-data npy:DIR/test-x.npy,... on npy)
must give the same test loss and accuracy. Both are printed."""
import argparse
import gzip
import os
import shutil
import statistics
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in bench/
import benchlib  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise SystemExit(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def export(d):
    """Writes the four .npy files into d (if missing); returns {split: (x, y)}."""
    import numpy as np
    import torch
    os.makedirs(d, exist_ok=True)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x_path, y_path = os.path.join(d, f"{split}-x.npy"), os.path.join(d, f"{split}-y.npy")
        if not (os.path.exists(x_path) and os.path.exists(y_path)):
            images = read_idx(os.path.join(FMNIST, f"{prefix}-images-idx3-ubyte.gz"))
            labels = read_idx(os.path.join(FMNIST, f"{prefix}-labels-idx1-ubyte.gz"))
            n = images.shape[0]
            # loom: images.to(kFloat).div_(255.0).sub_(kFashionMnistMean).div_(kFashionMnistStd).view({n,1,28,28})
            x = torch.from_numpy(images.copy()).to(torch.float32).div_(255.0).sub_(0.2860).div_(0.3530)
            x = x.view(n, 1, 28, 28).numpy()
            y = labels.astype(np.int64)
            assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"] and y.dtype == np.int64
            np.save(x_path, x)
            np.save(y_path, y)
        out[split] = (x_path, y_path)
    return out


def run_args(model, data, steps, warmup, evaluate=None):
    args = ["--strategy", "single", "--model", model, "--data", data, "--batch-size", "64", "--steps",
            str(warmup + steps), "--log-every", str(warmup), "--threads", "1", "--lr", "0.01", "--momentum", "0.9",
            "--seed", "0"]
    if evaluate is None:
        return args + ["--no-eval"]
    return args + ["--eval"] + (["--eval-data", evaluate] if evaluate != "builtin" else [])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loom", default=benchlib.DEFAULT_LOOM)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=200, help="timed steps of the cnn")
    p.add_argument("--mlp-steps", type=int, default=800, help="timed steps of the mlp (one epoch is 937 steps)")
    p.add_argument("--models", default="cnn,mlp")
    p.add_argument("--dir", default="/tmp/loom-npy-fmnist", help="where the .npy files go")
    p.add_argument("--cold", action="store_true", help="also npy-cold: the .npy pages dropped from the cache first")
    p.add_argument("--keep", action="store_true", help="keep the .npy files (default: delete them at the end)")
    a = p.parse_args()
    a.loom = os.path.abspath(a.loom)
    models = a.models.split(",")
    try:
        files = export(a.dir)
        npy_train = "npy:" + ",".join(files["train"])
        npy_test = "npy:" + ",".join(files["test"])
        steps = {m: a.mlp_steps if m == "mlp" else a.steps for m in models}
        gz = [os.path.join(FMNIST, f"{p}-{k}-idx{n}-ubyte.gz") for p in ("train", "t10k")
              for k, n in (("images", 3), ("labels", 1))]
        prep = {"memory": lambda: [benchlib.fill_cache(f) for f in gz],
                "npy": lambda: [benchlib.fill_cache(f) for f in files["train"]],
                "npy-cold": lambda: [benchlib.drop_cache(f) for f in files["train"]]}
        sides = ["npy", "npy-cold"] if a.cold else ["npy"]
        runs = []
        for m in models:
            runs.append((m, "memory", run_args(m, "fashion-mnist", steps[m], a.warmup)))
            for side in sides:
                runs.append((m, side, run_args(m, npy_train, steps[m], a.warmup)))
        print(f"npy_vs_memory: loom {a.loom}; .npy files in {a.dir} "
              f"({', '.join(f'{os.path.basename(f)} {os.path.getsize(f)} B' for k in files for f in files[k])})")
        print(f"  {a.rounds} rounds, each model's runs back to back, order reversed every other round; {a.warmup} warm-up steps, then timed steps "
              f"({', '.join(f'{m} {steps[m]}' for m in models)}); OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1")
        for m, side, args in runs:
            print(f"  {m:>4} {side:>6}: loom train {benchlib.shell(args)}")
        print(f"  load average before: {benchlib.load()}", flush=True)
        print(f"{'round':>5} " + " ".join(f"{m + ' mem s/s':>13} " + " ".join(f"{m + ' ' + s + ' s/s':>18} {'ratio':>6}"
                                                                         for s in sides) for m in models))
        ratios = {(m, s): [] for m in models for s in sides}
        ms = {(m, s): [] for m, s, _ in runs}
        walls = {(m, s): [] for m, s, _ in runs}
        losses = {}
        for r in range(a.rounds):
            # Each configuration's runs back to back (so A and B see the same load), their
            # order reversed every other round.
            order = [run for group in dict.fromkeys(x[0] for x in runs)
                     for run in ([x for x in runs if x[0] == group][::1 if r % 2 == 0 else -1])]
            got = {}
            for m, side, args in order:
                prep[side]()
                got[(m, side)] = res = benchlib.train(a.loom, args, a.warmup)
                ms[(m, side)].append(res["step_ms"])
                walls[(m, side)].append(res["summary"]["wall_s"] - res["summary"]["train_s"])
                losses.setdefault((m, side), []).append(res["summary"]["final_train_loss"])
            cells = []
            for m in models:
                cell = f"{got[(m, 'memory')]['rate']:>13.1f}"
                for s in sides:
                    ratios[(m, s)].append(got[(m, s)]["rate"] / got[(m, "memory")]["rate"])
                    cell += f" {got[(m, s)]['rate']:>18.1f} {ratios[(m, s)][-1]:>6.3f}"
                cells.append(cell)
            print(f"{r + 1:>5} " + " ".join(cells), flush=True)
        print(f"  load average after: {benchlib.load()}")
        for m in models:
            for s in sides:
                print(f"{m}: median {s}/memory {benchlib.spread(ratios[(m, s)])}  (target >= 1.0: npy not slower "
                      f"per step)")
            print("    ms per timed step (medians): " + ", ".join(
                f"{s} {statistics.median(ms[(m, s)]):.3f}" for s in ["memory"] + sides) +
                "; outside the steps (start-up, loading, evaluation; wall_s - train_s): " + ", ".join(
                f"{s} {statistics.median(walls[(m, s)]):.2f} s" for s in ["memory"] + sides))
            lm = set(losses[(m, "memory")])
            for s in sides:
                ln = set(losses[(m, s)])
                print(f"    final train loss over all rounds: memory {sorted(lm)}, {s} {sorted(ln)} "
                      f"({'identical' if lm == ln and len(lm) == 1 else 'NOT identical'})")
        # One evaluated run per side: the test splits must read the same values too.
        for m in models:
            ev = {}
            for side, data, evaluate in (("memory", "fashion-mnist", "builtin"), ("npy", npy_train, npy_test)):
                prep[side]()
                res = benchlib.train(a.loom, run_args(m, data, steps[m], a.warmup, evaluate), a.warmup)
                s = res["summary"]
                ev[side] = (s["final_train_loss"], s.get("test_loss"), s.get("test_accuracy"))
                print(f"  check {m} {side}: loom train {benchlib.shell(run_args(m, data, steps[m], a.warmup, evaluate))}")
            same = ev["memory"] == ev["npy"]
            print(f"{m} with evaluation: memory (train loss, test loss, test accuracy) = {ev['memory']}, "
                  f"npy = {ev['npy']} ({'identical' if same else 'DIFFERENT'})")
    finally:
        if not a.keep:
            shutil.rmtree(a.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

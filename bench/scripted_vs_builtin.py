#!/usr/bin/python3
"""A TorchScript model file against the same network built into loom (issue 16).

  bench/scripted_vs_builtin.py [--loom build/loom] [--rounds 5] [--warmup 10]
      [--steps 100] [--mlp-steps 400] [--configs cnn-single,cnn-allreduce,mlp-single]
      [--python-init] [--keep DIR]

Exports, with this interpreter's torch, an nn.Sequential with exactly the layers of
loom's built-in model (include/loom/models/registry.h):
  cnn  Conv2d(1,32,3,padding=1) ReLU MaxPool2d(2) Conv2d(32,64,3,padding=1) ReLU
       MaxPool2d(2) Flatten Linear(64*7*7,128) ReLU Linear(128,10)
  mlp  Flatten Linear(784,256) ReLU Linear(256,128) ReLU Linear(128,10)
as torch.jit.script(model).save(DIR/<model>.pt). By default the Python model first takes
the built-in model's initial parameters (loom train --steps 1 --lr 1e-30 --save: no weight above 1e-20 moves in float32; loaded with
load_state_dict), so both sides compute the same numbers and their final losses can be
compared; --python-init keeps PyTorch's own initialisation instead.

Then, each round, for every configuration:
  builtin   loom train --model cnn ...
  scripted  loom train --model DIR/cnn.pt ...
on Fashion-MNIST, the same seed, flags and steps, --threads 1 (OMP_NUM_THREADS=1,
OPENBLAS_NUM_THREADS=1), SGD lr 0.01 momentum 0.9, no evaluation:
  cnn-single     --strategy single, batch 64
  cnn-allreduce  --strategy allreduce --nproc 2, global batch 128 (64 per process)
  mlp-single     --strategy single, batch 64 (--mlp-steps timed steps)
Every run is its own process; each configuration's runs go back to back, in an order
reversed every other round.
Timing: --warmup untimed steps, then the timed steps' samples/s from loom's step records
(see benchlib.py). Prints each round, the median and range of the per-round ratios
scripted/builtin (issue 16's target: >= 0.9), and both sides' final training losses."""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in bench/
import benchlib  # noqa: E402

CONFIGS = {
    "cnn-single": ("cnn", "single", 1, 64),
    "cnn-allreduce": ("cnn", "allreduce", 2, 128),
    "mlp-single": ("mlp", "single", 1, 64),
}


def python_model(name):
    import torch.nn as nn
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    raise SystemExit(f"no Python twin for model {name}")


def export(a, name, d):
    """Writes d/<name>.pt (TorchScript) and returns its path."""
    import torch
    torch.manual_seed(0)
    model = python_model(name)
    if not a.python_init:
        init = os.path.join(d, f"{name}-init.state.pt")
        benchlib.train(a.loom, ["--strategy", "single", "--model", name, "--data", "fashion-mnist", "--steps", "1",
                                "--batch-size", "64", "--lr", "1e-30", "--momentum", "0", "--no-eval", "--save", init],
                       warmup=None)
        state = torch.load(init)
        mine = model.state_dict()
        if set(state) != set(mine) or any(state[k].shape != mine[k].shape for k in mine):
            raise SystemExit(f"the Python {name} does not match loom's: loom has "
                             f"{ {k: tuple(v.shape) for k, v in state.items()} }, Python "
                             f"{ {k: tuple(v.shape) for k, v in mine.items()} }")
        model.load_state_dict(state)
    path = os.path.join(d, f"{name}.pt")
    torch.jit.script(model).save(path)
    return path


def run_args(a, model, strategy, nproc, batch, steps):
    return ["--strategy", strategy, "--nproc", str(nproc), "--model", model, "--data", "fashion-mnist",
            "--batch-size", str(batch), "--steps", str(a.warmup + steps), "--log-every", str(a.warmup),
            "--threads", "1", "--lr", "0.01", "--momentum", "0.9", "--seed", "0", "--no-eval"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loom", default=benchlib.DEFAULT_LOOM)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (>= 1)")
    p.add_argument("--steps", type=int, default=100, help="timed steps of the cnn configurations")
    p.add_argument("--mlp-steps", type=int, default=400, help="timed steps of mlp-single")
    p.add_argument("--configs", default="cnn-single,cnn-allreduce,mlp-single")
    p.add_argument("--python-init", action="store_true", help="keep PyTorch's initialisation (no loss check)")
    p.add_argument("--keep", help="write the .pt files here and keep them (default: a temporary directory)")
    a = p.parse_args()
    a.loom = os.path.abspath(a.loom)
    configs = a.configs.split(",")
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"unknown configuration {c} (known: {', '.join(CONFIGS)})")
    d = a.keep or tempfile.mkdtemp(prefix="loom-scripted-")
    os.makedirs(d, exist_ok=True)
    try:
        import torch
        files = {m: export(a, m, d) for m in sorted({CONFIGS[c][0] for c in configs})}
        runs = []  # (config, side, args)
        for c in configs:
            model, strategy, nproc, batch = CONFIGS[c]
            steps = a.mlp_steps if model == "mlp" else a.steps
            runs.append((c, "builtin", run_args(a, model, strategy, nproc, batch, steps)))
            runs.append((c, "scripted", run_args(a, files[model], strategy, nproc, batch, steps)))

        print(f"scripted_vs_builtin: loom {a.loom}; TorchScript exported by /usr/bin/python3, torch "
              f"{torch.__version__}, into {d}; init: {'PyTorch default' if a.python_init else 'the built-in model'}")
        print(f"  {a.rounds} rounds, each configuration's runs back to back, their order reversed every other round; {a.warmup} warm-up steps, "
              f"then the timed steps (cnn {a.steps}, mlp {a.mlp_steps}); OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1")
        for c, side, args in runs:
            print(f"  {c:>14} {side:>8}: loom train {benchlib.shell(args)}")
        print(f"  load average before: {benchlib.load()}", flush=True)
        header = " ".join(f"{c + ' b/s':>18} {c + ' s/s':>18} {'ratio':>6}" for c in configs)
        print(f"{'round':>5} {header}")
        ratios = {c: [] for c in configs}
        summary_ratios = {c: [] for c in configs}
        step_ms = {(c, s): [] for c, s, _ in runs}
        losses = {}
        for r in range(a.rounds):
            # Each configuration's runs back to back (so A and B see the same load), their
            # order reversed every other round.
            order = [run for group in dict.fromkeys(x[0] for x in runs)
                     for run in ([x for x in runs if x[0] == group][::1 if r % 2 == 0 else -1])]
            got = {}
            for c, side, args in order:
                got[(c, side)] = benchlib.train(a.loom, args, a.warmup)
                step_ms[(c, side)].append(got[(c, side)]["step_ms"])
                losses.setdefault((c, side), got[(c, side)]["summary"]["final_train_loss"])
            cells = []
            for c in configs:
                b, s = got[(c, "builtin")], got[(c, "scripted")]
                ratios[c].append(s["rate"] / b["rate"])
                summary_ratios[c].append(s["summary"]["samples_per_s"] / b["summary"]["samples_per_s"])
                cells.append(f"{b['rate']:>18.1f} {s['rate']:>18.1f} {ratios[c][-1]:>6.3f}")
            print(f"{r + 1:>5} {' '.join(cells)}", flush=True)
        print(f"  load average after: {benchlib.load()}")
        for c in configs:
            print(f"{c}: median scripted/builtin {benchlib.spread(ratios[c])}  (target >= 0.9)")
            print(f"    ms per timed step: builtin {statistics.median(step_ms[(c, 'builtin')]):.2f}, scripted "
                  f"{statistics.median(step_ms[(c, 'scripted')]):.2f} (medians); summary samples_per_s ratio "
                  f"(warm-up included) {benchlib.spread(summary_ratios[c])}")
            lb, ls = losses[(c, "builtin")], losses[(c, "scripted")]
            verdict = ("same" if lb == ls else f"differ by {abs(lb - ls):.3g}") if not a.python_init else "n/a"
            print(f"    final train loss: builtin {lb!r}, scripted {ls!r} ({verdict})")
    finally:
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

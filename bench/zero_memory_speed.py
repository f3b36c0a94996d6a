#!/usr/bin/python3
"""ZeRO stage 1 (issue 17): memory per worker and step time, `--zero 1` against plain
`--strategy allreduce`. Not a test; nothing registers it.

  bench/zero_memory_speed.py [--loom build/loom] [--rounds 5] [--skip-memory] [--skip-speed]
      [--depth 14] [--width 2048] [--mem-steps 5] [--mem-batch 8] [--nprocs 1,2,4]
      [--steps 150] [--mlp-steps 600] [--warmup 10] [--batch-size 64]

1. Memory. `--model deep-mlp --depth D --width W --data synthetic`, Adam, --threads 1,
   a few steps, at N = 1 (`--strategy single`) and N = 2, 4 (`--strategy allreduce`,
   plain and `--zero 1`), one configuration at a time. The launcher (`loom train`)
   re-executes itself once per worker; every 20 ms the bench finds the launcher's
   children (ppid in /proc/PID/stat), names each by the RANK in its environment, and
   reads VmHWM (peak resident set) from /proc/PID/status; VmHWM only grows, so the last
   reading is the peak but for the last 20 ms. Cross-check: os.wait4() on the launcher
   gives the largest ru_maxrss over it and all its workers (the kernel's own number).
   Beside it: the summary record's optimizer_state_bytes and gradient_bytes per rank,
   and the prediction of docs/zero.md: params*4 + grads*4 + Adam's 8 bytes per
   parameter, all of them (plain, single) or this rank's 1/N (--zero 1).
   "rest" = peak RSS - prediction: libtorch, the data set, activations, buffers.
2. Speed. 2 workers, Adam, --threads 1, `--model cnn` and `--model deep-mlp --depth 16
   --width 256` on fashion-mnist. Each round runs plain and --zero 1 back to back (the
   order reversed every other round); rate = samples/s over the timed steps after
   --warmup from loom's step records (bench/benchlib.py). Prints per-round ratios
   zero/plain and their median and range. Target (issue 17): >= 0.9."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import MiB


def mlp_params(depth, width, inputs=784, classes=10):
    """deep-mlp: Linear(inputs, W), depth-2 x Linear(W, W), Linear(W, classes), with biases."""
    return inputs * width + width + (depth - 2) * (width * width + width) + width * classes + classes


def read_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        if int(s[s.rindex(")") + 2:].split()[1]) == ppid:
            out.append(int(d))
    return out


def rank_of(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read().split(b"\0"):
                if kv.startswith(b"RANK="):
                    return int(kv[5:])
    except (OSError, ValueError):
        pass
    return None


def memory_run(a, nproc, zero):
    """One job; returns peaks {rank: bytes}, launcher peak, wait4 maxrss, summary."""
    strategy = "single" if nproc == 1 else "allreduce"
    with tempfile.TemporaryDirectory(prefix="loom-zbench-") as d:
        m = os.path.join(d, "m.jsonl")
        cmd = [a.loom, "train", "--strategy", strategy, "--nproc", str(nproc), "--model", "deep-mlp",
               "--depth", str(a.depth), "--width", str(a.width), "--data", "synthetic",
               "--synthetic-samples", "1024", "--optimizer", "adam", "--lr", "1e-4",
               "--steps", str(a.mem_steps), "--batch-size", str(a.mem_batch * nproc), "--threads", "1",
               "--no-eval", "--log-every", "1", "--metrics", m, "--progress", "off", "--log-level", "warn"]
        if zero:
            cmd += ["--zero", "1"]
        a.mem_cmds.append(["loom"] + [("M.jsonl" if c == m else c) for c in cmd[1:]])
        p = subprocess.Popen(cmd, env=benchlib.ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peaks, pids, launcher = {}, {}, 0
        status = rusage = None
        while True:
            launcher = max(launcher, read_status(p.pid, "VmHWM") or 0)
            for c in children(p.pid):
                if pids.get(c) is None:  # a fork not yet exec'd has the launcher's environment
                    pids[c] = rank_of(c)
                hwm = read_status(c, "VmHWM")
                if pids[c] is not None and hwm is not None:
                    peaks[pids[c]] = max(peaks.get(pids[c], 0), hwm)
            got, st, ru = os.wait4(p.pid, os.WNOHANG)
            if got == p.pid:
                status, rusage = st, ru
                break
            time.sleep(0.02)
        err = p.stderr.read().decode(errors="replace")
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"loom failed: {benchlib.shell(cmd)}\n{err.strip()}")
        if not peaks:  # ran in the launcher itself
            peaks = {0: launcher}
        _, summary, _ = benchlib.read_metrics(m)
    return {"peaks": peaks, "launcher": launcher, "maxrss": rusage.ru_maxrss * 1024, "summary": summary}


def memory(a):
    params = mlp_params(a.depth, a.width)
    print(f"\n== Memory: deep-mlp depth {a.depth} width {a.width} = {params:,} parameters "
          f"({params * 4 / MiB:.1f} MiB fp32), Adam, {a.mem_steps} steps, batch {a.mem_batch} per worker, "
          f"--threads 1, synthetic data (1024 samples)")
    if params < 50_000_000:
        print(f"  warning: {params:,} parameters < 50M")
    print(f"  load average before: {benchlib.load()}", flush=True)
    configs = [(n, z) for n in a.nprocs for z in ((False,) if n == 1 else (False, True))]
    res = {}
    hdr = (f"{'N':>2} {'mode':>6} {'rank':>4} {'peak RSS':>9} {'opt state':>9} {'grads':>8} "
           f"{'predicted':>9} {'rest':>7}   (MiB)")
    rows = []
    for n, z in configs:
        r = memory_run(a, n, z)
        res[(n, z)] = r
        s = r["summary"]
        opt, grad = s["optimizer_state_bytes"], s["gradient_bytes"]
        mode = "single" if n == 1 else ("zero1" if z else "plain")
        if sorted(r["peaks"]) != list(range(n)):
            raise SystemExit(f"N={n} {mode}: found the workers of ranks {sorted(r['peaks'])}")
        for i in range(n):
            rank = i
            pred = params * 4 + params * 4 + (params * 8 // n if z else params * 8)
            rows.append(f"{n:>2} {mode:>6} {rank:>4} {r['peaks'][rank] / MiB:>9.1f} {opt[i] / MiB:>9.1f} "
                        f"{grad[i] / MiB:>8.1f} {pred / MiB:>9.1f} {(r['peaks'][rank] - pred) / MiB:>7.1f}")
        print(f"  N={n} {mode}: done (launcher VmHWM {r['launcher'] / MiB:.1f} MiB, wait4 max ru_maxrss "
              f"{r['maxrss'] / MiB:.1f} MiB, max polled {max(r['peaks'].values()) / MiB:.1f} MiB; "
              f"final loss {s['final_train_loss']:.4g})", flush=True)
    print(hdr)
    for row in rows:
        print(row)

    print(f"\n{'N':>2} {'plain RSS/rank':>15} {'zero1 RSS/rank':>15} {'plain opt':>10} {'zero1 opt':>10} "
          f"{'opt zero/plain':>14} {'1/N':>6} {'RSS zero/plain':>14} {'predicted':>9}   (MiB, mean over ranks)")
    for n in a.nprocs:
        if n == 1:
            continue
        pl, zr = res[(n, False)], res[(n, True)]
        mean = lambda v: sum(v) / len(v)
        rp, rz = mean(list(pl["peaks"].values())), mean(list(zr["peaks"].values()))
        op, oz = mean(pl["summary"]["optimizer_state_bytes"]), mean(zr["summary"]["optimizer_state_bytes"])
        pred = (8 + 8 / n) / 16
        print(f"{n:>2} {rp / MiB:>15.1f} {rz / MiB:>15.1f} {op / MiB:>10.1f} {oz / MiB:>10.1f} {oz / op:>14.3f} "
              f"{1 / n:>6.3f} {rz / rp:>14.3f} {pred:>9.3f}")
        saved, opt_saved = rp - rz, op - oz
        print(f"   saved per rank: {saved / MiB:.1f} MiB of peak RSS against {opt_saved / MiB:.1f} MiB of "
              f"optimizer state; state (params+grads+Adam, predicted) is {16 * params / rp:.0%} of plain's "
              f"peak RSS, {(8 + 8 / n) * params / rz:.0%} of zero1's")
    print("  ('predicted' RSS zero/plain = (4+4+8/N)/16: the ratio if state were all of RSS)")
    print(f"  load average after: {benchlib.load()}")


def speed(a):
    models = [("cnn", ["--model", "cnn"], a.steps),
              ("deep-mlp 16x256", ["--model", "deep-mlp", "--depth", "16", "--width", "256"], a.mlp_steps)]
    print(f"\n== Speed: 2 workers x --threads 1, Adam lr 1e-3, fashion-mnist, --batch-size {a.batch_size} "
          f"(global), {a.warmup} warm-up steps then timed steps (cnn {a.steps}, deep-mlp {a.mlp_steps}); "
          f"{a.rounds} rounds, plain and zero1 back to back, order reversed every other round")
    print(f"  load average before: {benchlib.load()}", flush=True)
    out = {}
    for name, margs, steps in models:
        base = ["--strategy", "allreduce", "--nproc", "2"] + margs + [
            "--data", "fashion-mnist", "--optimizer", "adam", "--lr", "1e-3", "--threads", "1",
            "--batch-size", str(a.batch_size), "--steps", str(a.warmup + steps), "--log-every", str(a.warmup),
            "--no-eval"]
        runs = {"plain": base, "zero1": base + ["--zero", "1"]}
        print(f"  {name}: {benchlib.shell(['loom', 'train'] + base)} [--zero 1]")
        print(f"  {'round':>5} {'plain s/s':>10} {'zero1 s/s':>10} {'plain ms':>9} {'zero1 ms':>9} "
              f"{'zero/plain':>10} {'first':>6}")
        ratios, ms = [], {"plain": [], "zero1": []}
        losses = set()
        for r in range(a.rounds):
            order = ["plain", "zero1"] if r % 2 == 0 else ["zero1", "plain"]
            v = {}
            for k in order:
                v[k] = benchlib.train(a.loom, runs[k], a.warmup)
                ms[k].append(v[k]["step_ms"])
                losses.add((k, v[k]["summary"]["final_train_loss"]))
            ratio = v["zero1"]["rate"] / v["plain"]["rate"]
            ratios.append(ratio)
            print(f"  {r + 1:>5} {v['plain']['rate']:>10.1f} {v['zero1']['rate']:>10.1f} "
                  f"{v['plain']['step_ms']:>9.2f} {v['zero1']['step_ms']:>9.2f} {ratio:>10.3f} {order[0]:>6}",
                  flush=True)
        print(f"  {name}: zero1/plain samples/s {benchlib.spread(ratios)}; ms/step median plain "
              f"{statistics.median(ms['plain']):.2f}, zero1 {statistics.median(ms['zero1']):.2f}; "
              f"target >= 0.9 {'met' if statistics.median(ratios) >= 0.9 else 'MISSED'} (median)")
        print(f"  final train losses: {sorted(losses)}")
        out[name] = ratios
    print(f"  load average after: {benchlib.load()}")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loom", default=benchlib.DEFAULT_LOOM)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--depth", type=int, default=14, help="memory: deep-mlp linear layers (14 x 2048: 52.0M params)")
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--mem-steps", type=int, default=5)
    p.add_argument("--mem-batch", type=int, default=8, help="memory: samples per worker per step")
    p.add_argument("--nprocs", default="1,2,4")
    p.add_argument("--steps", type=int, default=150, help="speed: timed steps of the CNN")
    p.add_argument("--mlp-steps", type=int, default=600, help="speed: timed steps of the deep MLP (~2 ms each)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="speed: GLOBAL batch (32 per worker)")
    a = p.parse_args()
    a.nprocs = [int(x) for x in a.nprocs.split(",")]
    a.mem_cmds = []
    a.loom = os.path.abspath(a.loom)
    print(f"zero_memory_speed: {benchlib.shell([sys.argv[0]] + sys.argv[1:])}")
    print(f"  loom: {a.loom}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; "
          f"{os.cpu_count()} CPUs; env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1")
    if not a.skip_memory:
        memory(a)
        print("  memory commands (N=4 zero1 shown): " + benchlib.shell(a.mem_cmds[-1]))
    if not a.skip_speed:
        speed(a)
    print(f"done {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")


if __name__ == "__main__":
    sys.exit(main())

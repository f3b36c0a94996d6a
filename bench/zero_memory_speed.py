#!/usr/bin/python3
"""ZeRO stages 1 and 2 (issue 17): memory per worker and step time, `--zero 1` and
`--zero 2` against plain `--strategy allreduce`. Not a test; nothing registers it.

  bench/zero_memory_speed.py [--loom build/loom] [--rounds 5] [--skip-memory] [--skip-speed]
      [--depth 14] [--width 2048] [--mem-steps 5] [--mem-batch 8] [--nprocs 1,2,4]
      [--steps 150] [--mlp-steps 600] [--warmup 10] [--batch-size 64]

1. Memory. `--model deep-mlp --depth D --width W --data synthetic`, Adam, --threads 1,
   a few steps, at N = 1 (`--strategy single`) and N = 2, 4 (`--strategy allreduce`,
   plain, `--zero 1` and `--zero 2`), one configuration at a time. The launcher (`loom train`)
   re-executes itself once per worker; every 20 ms the bench finds the launcher's
   children (ppid in /proc/PID/stat), names each by the RANK in its environment, and
   reads VmHWM (peak resident set) from /proc/PID/status; VmHWM only grows, so the last
   reading is the peak but for the last 20 ms. Cross-check: os.wait4() on the launcher
   gives the largest ru_maxrss over it and all its workers (the kernel's own number).
   Beside it: the summary record's optimizer_state_bytes and gradient_bytes per rank,
   and the prediction of docs/zero.md: params*4 + grads*4 + Adam's 8 bytes per
   parameter, all of them (plain, single), Adam's 1/N (--zero 1), or grads' and Adam's
   1/N plus the bucket buffers summary's gradient_bytes reports (--zero 2).
   "rest" = peak RSS - prediction: libtorch, the data set, activations, buffers.
3. A memory limit (--limit-mib, 0 = skip): the memory model at N = 4, plain, --zero 1
   and --zero 2, each worker under `ulimit -v` (RLIMIT_AS, inherited from the launcher),
   with --save; prints each run's exit status and first error line, and whether the
   model file was written.
2. Speed. 2 workers, Adam, --threads 1, `--model cnn` and `--model deep-mlp --depth 16
   --width 256` on fashion-mnist. Each round runs plain, --zero 1 and --zero 2 back to
   back (the order rotated every round); rate = samples/s over the timed steps after
   --warmup from loom's step records (bench/benchlib.py). Prints per-round ratios
   zero/plain and their median and range. Target (issue 17): >= 0.9."""
import argparse
import os
import resource
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
            cmd += ["--zero", str(zero)]
        a.mem_cmds.append(["loom"] + [("M.jsonl" if c == m else c) for c in cmd[1:]])
        p = subprocess.Popen(cmd, env=benchlib.ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peaks, vpeaks, pids, launcher = {}, {}, {}, 0
        status = rusage = None
        while True:
            launcher = max(launcher, read_status(p.pid, "VmHWM") or 0)
            for c in children(p.pid):
                if pids.get(c) is None:  # a fork not yet exec'd has the launcher's environment
                    pids[c] = rank_of(c)
                hwm = read_status(c, "VmHWM")
                if pids[c] is not None and hwm is not None:
                    peaks[pids[c]] = max(peaks.get(pids[c], 0), hwm)
                    vpeaks[pids[c]] = max(vpeaks.get(pids[c], 0), read_status(c, "VmPeak") or 0)
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
    return {"peaks": peaks, "vpeaks": vpeaks, "launcher": launcher, "maxrss": rusage.ru_maxrss * 1024,
            "summary": summary}


def memory(a):
    params = mlp_params(a.depth, a.width)
    print(f"\n== Memory: deep-mlp depth {a.depth} width {a.width} = {params:,} parameters "
          f"({params * 4 / MiB:.1f} MiB fp32), Adam, {a.mem_steps} steps, batch {a.mem_batch} per worker, "
          f"--threads 1, synthetic data (1024 samples)")
    if params < 50_000_000:
        print(f"  warning: {params:,} parameters < 50M")
    print(f"  load average before: {benchlib.load()}", flush=True)
    configs = [(n, z) for n in a.nprocs for z in ((0,) if n == 1 else (0, 1, 2))]
    res = {}
    hdr = (f"{'N':>2} {'mode':>6} {'rank':>4} {'peak RSS':>9} {'opt state':>9} {'grads':>8} "
           f"{'predicted':>9} {'rest':>7}   (MiB)")
    rows = []
    for n, z in configs:
        r = memory_run(a, n, z)
        res[(n, z)] = r
        s = r["summary"]
        opt, grad = s["optimizer_state_bytes"], s["gradient_bytes"]
        mode = "single" if n == 1 else (f"zero{z}" if z else "plain")
        if sorted(r["peaks"]) != list(range(n)):
            raise SystemExit(f"N={n} {mode}: found the workers of ranks {sorted(r['peaks'])}")
        for i in range(n):
            rank = i
            grads = grad[i] if z == 2 else params * 4  # zero2: its range + bucket buffers
            pred = params * 4 + grads + (params * 8 // n if z else params * 8)
            rows.append(f"{n:>2} {mode:>6} {rank:>4} {r['peaks'][rank] / MiB:>9.1f} {opt[i] / MiB:>9.1f} "
                        f"{grad[i] / MiB:>8.1f} {pred / MiB:>9.1f} {(r['peaks'][rank] - pred) / MiB:>7.1f}")
        print(f"  N={n} {mode}: done (launcher VmHWM {r['launcher'] / MiB:.1f} MiB, wait4 max ru_maxrss "
              f"{r['maxrss'] / MiB:.1f} MiB, max polled {max(r['peaks'].values()) / MiB:.1f} MiB, "
              f"max virtual (VmPeak) {max(r['vpeaks'].values() or [0]) / MiB:.1f} MiB; "
              f"final loss {s['final_train_loss']:.4g})", flush=True)
    print(hdr)
    for row in rows:
        print(row)

    print(f"\n{'N':>2} {'stage':>5} {'RSS/rank':>9} {'opt':>7} {'grads':>7} {'opt/plain':>9} {'grads/plain':>11} "
          f"{'1/N':>6} {'RSS/plain':>9} {'predicted':>9}   (MiB, mean over ranks)")
    mean = lambda v: sum(v) / len(v)
    for n in a.nprocs:
        if n == 1:
            continue
        pl = res[(n, 0)]
        rp = mean(list(pl["peaks"].values()))
        op, gp = mean(pl["summary"]["optimizer_state_bytes"]), mean(pl["summary"]["gradient_bytes"])
        for z in (0, 1, 2):
            zr = res[(n, z)]
            rz = mean(list(zr["peaks"].values()))
            oz, gz = mean(zr["summary"]["optimizer_state_bytes"]), mean(zr["summary"]["gradient_bytes"])
            pred = (4 + gz / params + 8 / (n if z else 1)) / 16
            print(f"{n:>2} {z:>5} {rz / MiB:>9.1f} {oz / MiB:>7.1f} {gz / MiB:>7.1f} {oz / op:>9.3f} {gz / gp:>11.3f} "
                  f"{1 / n:>6.3f} {rz / rp:>9.3f} {pred:>9.3f}")
    print("  ('predicted' RSS/plain = (params + grads + Adam) / 16 bytes per parameter: the ratio if the training "
          "state were all of RSS)")
    print(f"  load average after: {benchlib.load()}")


def limit_demo(a):
    limit = a.limit_mib * MiB
    print(f"\n== Memory limit: each process under ulimit -v {a.limit_mib} MiB (RLIMIT_AS), N=4, the memory "
          f"model above, --save")

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    for z in (0, 1, 2):
        with tempfile.TemporaryDirectory(prefix="loom-zlimit-") as d:
            model = os.path.join(d, "m.pt")
            cmd = [a.loom, "train", "--strategy", "allreduce", "--nproc", "4", "--model", "deep-mlp",
                   "--depth", str(a.depth), "--width", str(a.width), "--data", "synthetic",
                   "--synthetic-samples", "1024", "--optimizer", "adam", "--lr", "1e-4",
                   "--steps", str(a.mem_steps), "--batch-size", str(a.mem_batch * 4), "--threads", "1",
                   "--no-eval", "--progress", "off", "--log-level", "warn", "--zero", str(z), "--save", model]
            p = subprocess.run(cmd, env=benchlib.ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=limited)
            err = [ln for ln in p.stderr.decode(errors="replace").splitlines() if "error" in ln]
            saved = os.path.exists(model)
            print(f"  --zero {z}: exit {p.returncode}, model {'written' if saved else 'not written'}"
                  + (f"; {err[0]}" if err else ""))
            print(f"    (ulimit -v {a.limit_mib * 1024}; {benchlib.shell(['loom'] + cmd[1:-1] + ['m.pt'])})")


def speed(a):
    models = [("cnn", ["--model", "cnn"], a.steps),
              ("deep-mlp 16x256", ["--model", "deep-mlp", "--depth", "16", "--width", "256"], a.mlp_steps)]
    print(f"\n== Speed: 2 workers x --threads 1, Adam lr 1e-3, fashion-mnist, --batch-size {a.batch_size} "
          f"(global), {a.warmup} warm-up steps then timed steps (cnn {a.steps}, deep-mlp {a.mlp_steps}); "
          f"{a.rounds} rounds, plain, zero1 and zero2 back to back, order rotated every round")
    print(f"  load average before: {benchlib.load()}", flush=True)
    out = {}
    for name, margs, steps in models:
        base = ["--strategy", "allreduce", "--nproc", "2"] + margs + [
            "--data", "fashion-mnist", "--optimizer", "adam", "--lr", "1e-3", "--threads", "1",
            "--batch-size", str(a.batch_size), "--steps", str(a.warmup + steps), "--log-every", str(a.warmup),
            "--no-eval"]
        modes = ["plain", "zero1", "zero2"]
        runs = {"plain": base, "zero1": base + ["--zero", "1"], "zero2": base + ["--zero", "2"]}
        print(f"  {name}: {benchlib.shell(['loom', 'train'] + base)} [--zero 1 | --zero 2]")
        print(f"  {'round':>5} {'plain s/s':>10} {'zero1 s/s':>10} {'zero2 s/s':>10} {'z1/plain':>9} "
              f"{'z2/plain':>9} {'first':>6}")
        ratios, ms = {"zero1": [], "zero2": []}, {k: [] for k in modes}
        losses = set()
        for r in range(a.rounds):
            order = modes[r % 3:] + modes[:r % 3]
            v = {}
            for k in order:
                v[k] = benchlib.train(a.loom, runs[k], a.warmup)
                ms[k].append(v[k]["step_ms"])
                losses.add((k, v[k]["summary"]["final_train_loss"]))
            for k in ("zero1", "zero2"):
                ratios[k].append(v[k]["rate"] / v["plain"]["rate"])
            print(f"  {r + 1:>5} {v['plain']['rate']:>10.1f} {v['zero1']['rate']:>10.1f} {v['zero2']['rate']:>10.1f} "
                  f"{ratios['zero1'][-1]:>9.3f} {ratios['zero2'][-1]:>9.3f} {order[0]:>6}", flush=True)
        for k in ("zero1", "zero2"):
            print(f"  {name}: {k}/plain samples/s {benchlib.spread(ratios[k])}; ms/step median plain "
                  f"{statistics.median(ms['plain']):.2f}, {k} {statistics.median(ms[k]):.2f}; "
                  f"target >= 0.9 {'met' if statistics.median(ratios[k]) >= 0.9 else 'MISSED'} (median)")
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
    p.add_argument("--limit-mib", type=int, default=2400, help="memory limit demo: ulimit -v per process (0: skip)")
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
        print("  memory commands (N=4 zero2 shown): " + benchlib.shell(a.mem_cmds[-1]))
    if a.limit_mib > 0 and not a.skip_memory:
        limit_demo(a)
    if not a.skip_speed:
        speed(a)
    print(f"done {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")


if __name__ == "__main__":
    sys.exit(main())

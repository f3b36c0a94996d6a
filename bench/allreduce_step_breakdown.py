#!/usr/bin/python3
"""Where a data-parallel step goes: loom allreduce against N independent single runs, from traces.

  bench/allreduce_step_breakdown.py [--loom build/loom] [--pairs 5] [--nproc 2]
      [--model cnn] [--batch-size 64] [--steps 300] [--skip 20] [--auto]

Each pair runs, one after the other: `loom train --strategy allreduce --nproc N` with the
global batch, then (with --auto) the same with `--partition proportional --shard-weights
auto`, then N independent `--strategy single` runs at once with the per-process batch
(no communication: what N processes get from this machine, the ceiling of any scaling).
Every run writes a Chrome trace (`--trace`); per run, the median over steps
[--skip, --steps) of each span (step, forward, backward, optimizer, and the allreduce
run's "allreduce wait": finish() waiting for the buckets after backward).

Printed per pair: the step times (mean over the ranks / runs of their medians), the
ratio independent / allreduce (the scaling against the machine's ceiling: the issue 19
number), forward and backward of the allreduce run minus the independent runs', the
end-of-step wait; and per allreduce run, the two ranks' skew (median of rank 0's minus
rank 1's last-bucket launch time: a steady sign means one rank is slower) and the last
bucket's latency (from the later rank's launch to the first completion). Then medians
over the pairs. Comparing runs made in alternation, in the same minutes, is what makes
the ratio usable on a shared machine: consecutive runs here differ by more than the
effect measured. docs/performance.md, section "Performance near the limit (issue 19)".

Both sides: 1 intra-op thread, OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1, the allocator
setting loom::init_process() makes (through MALLOC_*_ so the single runs get it too),
synthetic data preloaded, SGD with momentum."""
import argparse
import json
import os
import statistics as st
import subprocess
import tempfile

ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(1 << 30),
           OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOOM_SHM_ALLREDUCE"):
    ENV.pop(k, None)
SPANS = ("step", "forward", "backward", "optimizer", "allreduce wait")


def train_cmd(a, trace, strategy, batch, extra=()):
    return [a.loom, "train", "--strategy", strategy, "--model", a.model, "--data", "synthetic",
            "--synthetic-samples", "8192", "--batch-size", str(batch), "--steps", str(a.steps), "--threads", "1",
            "--lr", "0.01", "--momentum", "0.9", "--no-eval", "--progress", "off", "--log-level", "warn",
            "--trace", trace] + list(extra)


def events(path):
    with open(path) as f:
        d = json.load(f)
    return [e for e in (d["traceEvents"] if isinstance(d, dict) else d) if e.get("ph") == "X"]


def spans(evs, pid, name, skip):
    return [e for e in evs if e["pid"] == pid and e["name"] == name][skip:]


def medians(evs, pids, skip):
    """Per span name: the mean over `pids` of each one's median duration (ms)."""
    out = {}
    for name in SPANS:
        per = [st.median([e["dur"] / 1000 for e in v]) for v in (spans(evs, p, name, skip) for p in pids) if v]
        out[name] = st.mean(per) if per else 0.0
    return out


def skew_and_latency(evs, skip):
    names = sorted({e["name"] for e in evs if e["name"].startswith("allreduce bucket")})
    if not names:
        return float("nan"), float("nan")
    last = names[-1]
    b0, b1 = spans(evs, 0, last, skip), spans(evs, 1, last, skip)
    skew = st.median([(x["ts"] - y["ts"]) / 1000 for x, y in zip(b0, b1)])
    lat = st.median([(min(x["ts"] + x["dur"], y["ts"] + y["dur"]) - max(x["ts"], y["ts"])) / 1000
                     for x, y in zip(b0, b1)])
    return skew, lat


def run_pair(a, tmp, i):
    """One pair: the allreduce run(s) then the independent runs; returns their traces."""
    out = {}
    variants = [("allreduce", [])] + ([("auto", ["--partition", "proportional", "--shard-weights", "auto"])]
                                      if a.auto else [])
    for name, extra in variants:
        trace = os.path.join(tmp, f"{name}-{i}.json")
        subprocess.run(train_cmd(a, trace, "allreduce", a.batch_size, ["--nproc", str(a.nproc)] + extra),
                       env=ENV, check=True, stdout=subprocess.DEVNULL)
        out[name] = events(trace)
    traces = [os.path.join(tmp, f"single{s}-{i}.json") for s in range(a.nproc)]
    procs = [subprocess.Popen(train_cmd(a, t, "single", a.batch_size // a.nproc, ["--seed", str(s + 1)]),
                              env=ENV, stdout=subprocess.DEVNULL) for s, t in enumerate(traces)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("a single-process run failed")
    out["single"] = [events(t) for t in traces]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loom", default=os.path.join(os.path.dirname(__file__), "..", "build", "loom"))
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--batch-size", type=int, default=64, help="global batch (each single run gets batch/nproc)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--skip", type=int, default=20, help="steps left out of the medians (warm-up)")
    ap.add_argument("--auto", action="store_true", help="also run allreduce with --shard-weights auto")
    a = ap.parse_args()
    load = lambda: " ".join(open("/proc/loadavg").read().split()[:3])
    print(f"allreduce_step_breakdown: {a.model}, global batch {a.batch_size} on {a.nproc} ranks against "
          f"{a.nproc} independent single runs of {a.batch_size // a.nproc}; {a.steps} steps, medians from step "
          f"{a.skip}; load before: {load()}")
    variants = ["allreduce"] + (["auto"] if a.auto else [])
    ratios = {v: [] for v in variants}
    cols = {v: {"fwd": [], "bwd": [], "wait": []} for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.pairs):
            r = run_pair(a, tmp, i)
            single = [medians(e, [0], a.skip) for e in r["single"]]
            si = {k: st.mean([s[k] for s in single]) for k in SPANS}
            for v in variants:
                ar = medians(r[v], range(a.nproc), a.skip)
                skew, lat = skew_and_latency(r[v], a.skip)
                ratio = si["step"] / ar["step"]
                ratios[v].append(ratio)
                cols[v]["fwd"].append(ar["forward"] - si["forward"])
                cols[v]["bwd"].append(ar["backward"] - si["backward"])
                cols[v]["wait"].append(ar["allreduce wait"])
                print(f"pair {i + 1} {v:9s}: step {ar['step']:.3f} ms, independent {si['step']:.3f} ms, "
                      f"independent/{v} {ratio:.3f}; forward {ar['forward'] - si['forward']:+.3f}, backward "
                      f"{ar['backward'] - si['backward']:+.3f}, end-of-step wait {ar['allreduce wait']:.3f} ms; "
                      f"rank skew {skew:+.3f} ms, last bucket {lat:.3f} ms", flush=True)
    print(f"load after: {load()}")
    for v in variants:
        r = ratios[v]
        c = cols[v]
        print(f"median independent/{v}: {st.median(r):.3f} (range {min(r):.3f}-{max(r):.3f}, n={len(r)}); "
              f"forward {st.median(c['fwd']):+.3f} ms, backward {st.median(c['bwd']):+.3f} ms, "
              f"end-of-step wait {st.median(c['wait']):.3f} ms")


if __name__ == "__main__":
    main()

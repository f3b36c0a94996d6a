#!/usr/bin/python3
"""Pipeline bubble and activation memory, measured from real runs.

  bench/pipeline_bubble.py [--loom build/loom] [--rounds 3] [--micro 1,2,4,8]
      [--memory-micro 1,2,4,8,16] [--depth 25] [--width 523] [--batch-size 512]
      [--json OUT] [--no-memory] [--from-traces DIR] [--contention-fit sharing|split]

Bubble: for P = 2 stages (a deep MLP cut into two equal halves, `--split`) and each M,
both schedules: `loom train --strategy pipeline --trace`, and for every step after the
first two, each stage's idle share of the pipeline window (scripts/pipeline_trace.py:
the share of [first forward, last backward] of stage 0 that the stage spent neither in
forward nor in backward), against the theory (P-1)/(M+P-1). Rounds alternate the
schedules; medians over rounds and steps. "free msg": the bubble the same steps' own
forward and backward spans would leave with messages that cost nothing
(scripts/pipeline_trace.py replay_bubble): measured minus it is what messages and the
stage loop cost. "equal": the same replay with each micro-batch's forward (backward)
taking the mean of the stages' spans on both: free msg minus it is what unequal stage
times cost; it minus theory is what is left (micro-batches of unequal times).

Memory: each stage's peak stashed activations per step (the bytes of its input and of
every layer's output held between a micro-batch's forward and its backward, as the
stage logs them at the end), GPipe against 1F1B, as M grows at a fixed global batch.

--json OUT also writes the bubble medians, for bench/pipeline_simulation --measured:
{"stages": 2, "depth", "width", "batch_size", "traces": DIR,
 "rows": [{"schedule", "micro_batches", "theory", "idle_share": [stage 0, stage 1], "free_messages", "equal_stages",
           "forward_s": [s0, s1], "backward_s": [s0, s1], "message_s"}]}
with each stage's mean forward / backward span (seconds, one micro-batch, the same
steps) and the median gap from stage 0's end of forward 0 to stage 1's start of it.
Each row also carries "contention": the parameters of the contention-aware simulation
(bench/pipeline_simulation's second P = 2 table), measured from the same traces and steps:
  "alone_s", "shared_s": [[s0 fwd, s0 bwd], [s1 fwd, s1 bwd]]: a stage's action time
      with the other stage computing 0% and 100% of it, fitted (fit_contention) to
      every span's duration D and the share f of it the other stage computed:
      D (1 - f) + D f / x = alone, x = shared / alone ("slowdown"; processor sharing:
      the action progresses 1/x as fast while the other stage computes); also the plain
      medians of the spans with f < 0.5 and f >= 0.5 ("median_lo_s", "median_hi_s");
      with --contention-fit split, alone / shared are those two medians instead;
      "alone_samples_s": every span's work in alone-seconds, D (1 - f) + D f / x;
  "gap_pre_s", "gap_post_s": per stage, the stage loop's time between two actions
      (bookkeeping, posting receives, polling) before and after waiting for a message:
      post = median of (next start - end of the wait) over the waits, pre = median of
      (next start - previous end) over the pairs with no wait, minus post;
  "wire_s": the median of (end of a wait - end of the sender's action) over the waits
      that began before the sender's action ended: from the end of the action that
      sends (its span includes posting the send) to the moment the receiver has the
      message; can be < 0 (the receiver had it before the sender's span ended);
  "by_round": the same per round, with that round's bubble medians ("idle_share");
"fit_early_rounds": the same fitted on every round but the last, and
"last_round_idle_share": the last round's bubble medians (fit on rounds 1..R-1, check on R).
--from-traces DIR reads the traces of an earlier run (DIR/<schedule>_<M>_<round>.json)
instead of running loom; --no-memory skips the memory runs.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
import pipeline_trace as pt  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS="1")
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(k, None)


def run(args, schedule, micro, steps, trace):
    layers = 2 * args.depth  # flatten + depth linear + (depth-1) relu
    cmd = [args.loom, "train", "--strategy", "pipeline", "--nproc", "2", "--model", "deep-mlp", "--depth",
           str(args.depth), "--width", str(args.width), "--data", "synthetic", "--batch-size", str(args.batch_size),
           "--micro-batches", str(micro), "--schedule", schedule, "--split", f"{layers // 2},{layers - layers // 2}",
           "--steps", str(steps), "--threads", "1", "--no-eval", "--progress", "off", "--lr", "0.01"]
    if trace:
        cmd += ["--trace", trace]
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    stash = {}
    for m in re.finditer(r"pipeline stage (\d+): peak stashed activations (\d+) bytes \((\d+) micro", p.stderr):
        stash[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return stash


def record_costs(acc, events, step):
    """For --json: each stage's forward and backward span durations in `step` (us), and
    the gap from stage 0's end of forward 0 to stage 1's start of it (a message, while
    stage 1 waits for it)."""
    first = {}
    for stage in (0, 1):
        s = pt.steps(events, stage)[step]
        for e in pt.compute_spans(events, stage, s["ts"], s["ts"] + s["dur"]):
            acc.setdefault(e["cat"], [[], []])[stage].append(e["dur"])
            if e["name"] == "forward 0":
                first[stage] = e
    if len(first) == 2:
        acc.setdefault("message", []).append(first[1]["ts"] - first[0]["ts"] - first[0]["dur"])


def overlap(span, others):
    a, b = span["ts"], span["ts"] + span["dur"]
    return sum(max(0, min(b, o["ts"] + o["dur"]) - max(a, o["ts"])) for o in others)


def record_contention(acc, events, step):
    """For --json "contention": per stage and direction (D us, f) of every compute span
    of `step`; the gaps between consecutive actions (with / without a wait for a
    message between them); wire times (end of a wait - end of the sender's action)."""
    spans, idle = {}, {}
    for stage in (0, 1):
        s = pt.steps(events, stage)[step]
        spans[stage] = sorted(pt.compute_spans(events, stage, s["ts"], s["ts"] + s["dur"]), key=lambda e: e["ts"])
        idle[stage] = [e for e in events if e["pid"] == stage and e.get("cat") == "idle"
                       and s["ts"] <= e["ts"] < s["ts"] + s["dur"]]
    allc = {st: [e for e in events if e["pid"] == st and e.get("cat") in ("forward", "backward")] for st in (0, 1)}
    for stage in (0, 1):
        for e in spans[stage]:
            if e["dur"] <= 0:
                continue
            f = overlap(e, allc[1 - stage]) / e["dur"]
            acc.setdefault(("span", stage, e["cat"]), []).append((e["dur"], f))
        for a, b in zip(spans[stage], spans[stage][1:]):
            end = a["ts"] + a["dur"]
            waits = [w for w in idle[stage] if end <= w["ts"] < b["ts"]]
            if not waits:
                acc.setdefault(("nowait", stage), []).append(b["ts"] - end)
            else:
                w = waits[-1]
                acc.setdefault(("pre", stage), []).append(waits[0]["ts"] - end)
                acc.setdefault(("post", stage), []).append(b["ts"] - (w["ts"] + w["dur"]))
        # Wire: a wait for "act m" on stage 1 ends when forward m of stage 0 has arrived.
        for w in idle[stage]:
            m = re.match(r"wait (act|grad) (\d+)", w["name"])
            if not m:
                continue
            want = ("forward " if m.group(1) == "act" else "backward ") + m.group(2)
            src = [e for e in spans[1 - stage] if e["name"] == want]
            # Only waits that began before the sender's action ended: the receiver was
            # waiting for the sender, so the wait's end is the message's arrival.
            if src and w["ts"] < src[0]["ts"] + src[0]["dur"]:
                acc.setdefault(("wire",), []).append(w["ts"] + w["dur"] - (src[0]["ts"] + src[0]["dur"]))


FIT = "sharing"  # --contention-fit


def fit_contention(acc):
    """The "contention" object of a row from record_contention's accumulator (seconds).

    Processor sharing: an action of `alone` work that the other stage computes during a
    share f of it lasts D with D (1 - f) + D f / x = alone. Per stage and direction, x
    from the medians (D, f) of the spans with f < 0.5 and of those with f >= 0.5 (two
    equations, two unknowns); where one group has fewer than 3 spans (or the two give
    no x in [1, 5]), x is the median of the row's other fitted x. Then alone = the median
    over all the spans of D (1 - f) + D f / x, and shared = alone x."""
    out = {"alone_s": [], "shared_s": [], "slowdown": [], "x_fitted": [], "median_lo_s": [], "median_hi_s": [],
           "n_lo": [], "n_hi": [], "alone_samples_s": []}
    xs = {}
    for stage in (0, 1):
        for cat in ("forward", "backward"):
            pts = acc.get(("span", stage, cat), [])
            lo = [(d, f) for d, f in pts if f < 0.5]
            hi = [(d, f) for d, f in pts if f >= 0.5]
            if len(lo) >= 3 and len(hi) >= 3:
                dl, fl = statistics.median(d for d, _ in lo), statistics.median(f for _, f in lo)
                dh, fh = statistics.median(d for d, _ in hi), statistics.median(f for _, f in hi)
                den = dl * fl - dh * fh
                if den != 0:
                    y = (dh * (1 - fh) - dl * (1 - fl)) / den
                    if 0.2 <= y <= 1:
                        xs[(stage, cat)] = 1 / y
    x_row = statistics.median(xs.values()) if xs else 1.0
    for stage in (0, 1):
        rows = {k: [] for k in out}
        for cat in ("forward", "backward"):
            pts = acc.get(("span", stage, cat), [])
            lo = [d for d, f in pts if f < 0.5]
            hi = [d for d, f in pts if f >= 0.5]
            x = xs.get((stage, cat), x_row)
            alone = statistics.median(d * (1 - f) + d * f / x for d, f in pts)
            if FIT == "split":
                # --contention-fit split: alone = the median span with f < 0.5, shared =
                # the median with f >= 0.5; a missing group from the other and the row's
                # median of those ratios.
                xsplit = [statistics.median(a for a, g in acc[("span", st, c)] if g >= 0.5) /
                          statistics.median(a for a, g in acc[("span", st, c)] if g < 0.5)
                          for st in (0, 1) for c in ("forward", "backward")
                          if acc.get(("span", st, c)) and min(g for _, g in acc[("span", st, c)]) < 0.5
                          <= max(g for _, g in acc[("span", st, c)])]
                xr = statistics.median(xsplit) if xsplit else 1.0
                if lo and hi:
                    alone, x = statistics.median(lo), statistics.median(hi) / statistics.median(lo)
                elif lo:
                    alone, x = statistics.median(lo), xr
                else:
                    alone, x = statistics.median(hi) / xr, xr
            # Each span's work in alone-seconds (its duration with the shared part at 1 / x).
            rows["alone_samples_s"].append([(d * (1 - f) + d * f / x) * 1e-6 for d, f in pts])
            rows["alone_s"].append(alone * 1e-6)
            rows["shared_s"].append(alone * x * 1e-6)
            rows["slowdown"].append(x)
            rows["x_fitted"].append((stage, cat) in xs)
            rows["median_lo_s"].append(statistics.median(lo) * 1e-6 if lo else -1)
            rows["median_hi_s"].append(statistics.median(hi) * 1e-6 if hi else -1)
            rows["n_lo"].append(len(lo))
            rows["n_hi"].append(len(hi))
        for k in out:
            out[k].append(rows[k])
    post = [statistics.median(acc[("post", s)]) if acc.get(("post", s)) else 0.0 for s in (0, 1)]
    nowait = [statistics.median(acc[("nowait", s)]) if acc.get(("nowait", s)) else None for s in (0, 1)]
    out["gap_post_s"] = [p * 1e-6 for p in post]
    out["gap_pre_s"] = [max(0.0, (nw if nw is not None else p) - p) * 1e-6 for nw, p in zip(nowait, post)]
    out["gap_nowait_s"] = [nw * 1e-6 if nw is not None else -1 for nw in nowait]
    out["wire_s"] = statistics.median(acc[("wire",)]) * 1e-6 if acc.get(("wire",)) else -1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loom", default=os.path.join(HERE, "..", "build", "loom"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--micro", default="1,2,4,8")
    ap.add_argument("--memory-micro", default="1,2,4,8,16")
    # Balanced halves: depth 25 gives 24 linear layers of width x width (the first has
    # 784 inputs) plus the small output layer; --split 25,25 puts 12 on each stage.
    # Stage 0 skips its input's gradient, stage 1 adds the output layer and the loss;
    # width 523 (784 / 1.5) evens the first layer's extra inputs against the former, so
    # forward and backward each differ by ~4% between the stages.
    ap.add_argument("--depth", type=int, default=25)
    ap.add_argument("--width", type=int, default=523)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--json", help="also write the bubble medians here (for bench/pipeline_simulation)")
    ap.add_argument("--from-traces", help="read the traces of an earlier run from this directory, run nothing")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    ap.add_argument("--contention-fit", choices=("split", "sharing"), default="sharing",
                    help="alone / shared per stage and direction: medians of the spans the other stage computed "
                    "< / >= half of (split), or the processor-sharing fit (sharing)")
    args = ap.parse_args()
    global FIT
    FIT = args.contention_fit
    micro = [int(x) for x in args.micro.split(",")]
    tmp = args.from_traces or tempfile.mkdtemp(prefix="loom_bubble_")

    print(f"# bubble: P=2, deep-mlp depth {args.depth} width {args.width}, global batch {args.batch_size}, "
          f"1 thread per stage, {args.rounds} rounds x {args.steps - 2} steps, medians")
    shares = {}  # (schedule, M) -> [per-stage lists]
    costs = {}  # (schedule, M) -> {"forward": [[s0 us], [s1 us]], "backward": ..., "message": [us]}
    cont = {}  # (schedule, M) -> record_contention's accumulator; (schedule, M, round) -> the round's
    round_shares = {}  # (schedule, M, round) -> [per-stage lists]
    replays = {}  # (schedule, M) -> [per-stage lists] of pt.replay_bubble
    equals = {}  # (schedule, M) -> [per-stage lists] of pt.replay_bubble(equal_stages=True)
    for r in range(args.rounds):
        for m in micro:
            order = ["gpipe", "1f1b"] if r % 2 == 0 else ["1f1b", "gpipe"]
            for s in order:
                trace = os.path.join(tmp, f"{s}_{m}_{r}.json")
                if not args.from_traces:
                    run(args, s, m, args.steps, trace)
                ev = pt.load(trace)
                per = shares.setdefault((s, m), [[], []])
                rper = round_shares.setdefault((s, m, r), [[], []])
                rep = replays.setdefault((s, m), [[], []])
                eq = equals.setdefault((s, m), [[], []])
                for k in range(2, args.steps):
                    for stage, b in enumerate(pt.bubble(ev, k)):
                        per[stage].append(b)
                        rper[stage].append(b)
                    for stage, b in enumerate(pt.replay_bubble(ev, k)):
                        rep[stage].append(b)
                    for stage, b in enumerate(pt.replay_bubble(ev, k, equal_stages=True)):
                        eq[stage].append(b)
                    if args.json:
                        record_costs(costs.setdefault((s, m), {}), ev, k)
                        record_contention(cont.setdefault((s, m), {}), ev, k)
                        record_contention(cont.setdefault((s, m, r), {}), ev, k)
                        if r < args.rounds - 1:
                            record_contention(cont.setdefault((s, m, "fit"), {}), ev, k)
    print(f"{'schedule':8} {'M':>3} {'theory':>7} {'stage 0':>8} {'stage 1':>8} {'rel.err 0':>9} {'rel.err 1':>9}"
          f" {'free msg 0':>10} {'free msg 1':>10} {'equal 0':>8} {'equal 1':>8}")
    rows = []
    for s in ("gpipe", "1f1b"):
        for m in micro:
            th = pt.theory(2, m)
            med = [statistics.median(x) for x in shares[(s, m)]]
            errs = [abs(x - th) / th for x in med]
            rep = [statistics.median(x) for x in replays[(s, m)]]
            eq = [statistics.median(x) for x in equals[(s, m)]]
            print(f"{s:8} {m:>3} {th:7.3f} {med[0]:8.3f} {med[1]:8.3f} {errs[0]:9.1%} {errs[1]:9.1%}"
                  f" {rep[0]:10.3f} {rep[1]:10.3f} {eq[0]:8.3f} {eq[1]:8.3f}")
            c = costs.get((s, m), {})
            rows.append({"schedule": s, "micro_batches": m, "theory": th, "idle_share": med, "free_messages": rep, "equal_stages": eq,
                         "forward_s": [statistics.mean(x) * 1e-6 for x in c.get("forward", [])],
                         "backward_s": [statistics.mean(x) * 1e-6 for x in c.get("backward", [])],
                         "message_s": statistics.median(c["message"]) * 1e-6 if c.get("message") else -1})
            if args.json:
                rows[-1]["contention"] = fit_contention(cont[(s, m)])
                rows[-1]["by_round"] = [
                    dict(fit_contention(cont[(s, m, r)]), round=r,
                         idle_share=[statistics.median(x) for x in round_shares[(s, m, r)]])
                    for r in range(args.rounds)]
                if args.rounds > 1:  # fit on every round but the last; check on the last
                    rows[-1]["fit_early_rounds"] = fit_contention(cont[(s, m, "fit")])
                    rows[-1]["last_round_idle_share"] = [statistics.median(x)
                                                         for x in round_shares[(s, m, args.rounds - 1)]]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stages": 2, "depth": args.depth, "width": args.width, "batch_size": args.batch_size,
                       "traces": tmp, "rows": rows}, f, indent=1)
        print(f"# wrote {args.json} (traces in {tmp})")

    if args.no_memory:
        return
    print()
    print(f"# memory: peak stashed activations per stage (bytes), global batch {args.batch_size}")
    print(f"{'M':>3} {'gpipe s0':>10} {'gpipe s1':>10} {'1f1b s0':>10} {'1f1b s1':>10}  in flight gpipe / 1f1b")
    for m in [int(x) for x in args.memory_micro.split(",")]:
        g = run(args, "gpipe", m, 3, None)
        o = run(args, "1f1b", m, 3, None)
        print(f"{m:>3} {g[0][0]:>10} {g[1][0]:>10} {o[0][0]:>10} {o[1][0]:>10}  "
              f"{g[0][1]},{g[1][1]} / {o[0][1]},{o[1][1]}")


if __name__ == "__main__":
    main()

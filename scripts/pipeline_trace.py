"""Reading the Chrome traces of `loom train --strategy pipeline --trace` (pure Python).

A trace holds, per rank (pid): "step" spans (one per global step), "forward m" and
"backward m" spans (category forward / backward), "wait act m" / "wait grad m" spans
(category idle) on lane 0, and sends and receives on lane 1.

pipeline_window(trace, step) is one step's pipeline makespan: from the first forward on
stage 0 to the last backward on stage 0 (stage 0 starts first and ends last in both
GPipe and 1F1B). bubble(trace, step) is, per stage, the share of that window the stage
spent neither in forward nor in backward: what the theory (P-1)/(M+P-1) predicts.
replay_bubble(trace, step) is the bubble of the same spans with messages that cost nothing;
with equal_stages=True, also with each micro-batch's forward (backward) taking the same
time on every stage: the mean of the stages' measured spans.
"""
import json


def load(path):
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    return [e for e in events if e.get("ph") == "X"]


def ranks(events):
    return sorted({e["pid"] for e in events})


def steps(events, rank):
    return sorted((e for e in events if e["pid"] == rank and e.get("cat") == "step"), key=lambda e: e["ts"])


def compute_spans(events, rank, start, end):
    """Forward/backward spans of `rank` that start within [start, end)."""
    return [e for e in events
            if e["pid"] == rank and e.get("cat") in ("forward", "backward") and start <= e["ts"] < end]


def pipeline_window(events, step):
    s0 = steps(events, 0)[step]
    spans = compute_spans(events, 0, s0["ts"], s0["ts"] + s0["dur"])
    return min(e["ts"] for e in spans), max(e["ts"] + e["dur"] for e in spans)


def bubble(events, step):
    """Per stage: 1 - (forward + backward time inside the window) / window."""
    start, end = pipeline_window(events, step)
    out = []
    for r in ranks(events):
        busy = 0
        for e in events:
            if e["pid"] != r or e.get("cat") not in ("forward", "backward"):
                continue
            a, b = max(e["ts"], start), min(e["ts"] + e["dur"], end)
            busy += max(0, b - a)
        out.append(1 - busy / (end - start))
    return out


def replay_bubble(events, step, equal_stages=False):
    """Per stage: the bubble this step's own forward and backward spans would leave if
    messages cost nothing. Each stage runs its actions in the trace's order, each as soon
    as the stage is free and its input is there (stage s > 0's forward m after stage
    s-1's forward m; stage s < P-1's backward m after stage s+1's backward m), for the
    span's measured duration. Measured minus this is what messages and the stage loop
    between actions cost.

    equal_stages: each action takes the mean over the stages of its (kind, micro-batch)
    spans instead, so that the stages are equally fast micro-batch by micro-batch. The
    plain replay minus this is what unequal stage times cost; this minus theory is what
    is left: micro-batches of unequal times, and the schedule's own ends."""
    acts, stages = {}, ranks(events)
    for r in stages:
        s = steps(events, r)[step]
        acts[r] = sorted(compute_spans(events, r, s["ts"], s["ts"] + s["dur"]), key=lambda e: e["ts"])
    if equal_stages:
        spans = {}
        for r in stages:
            for e in acts[r]:
                spans.setdefault(e["name"], []).append(e["dur"])
        mean = {name: sum(d) / len(d) for name, d in spans.items()}
        acts = {r: [dict(e, dur=mean[e["name"]]) for e in acts[r]] for r in stages}
    done, free, idx, busy = {}, {r: 0.0 for r in stages}, {r: 0 for r in stages}, {r: 0.0 for r in stages}
    last = stages[-1]
    progress = True
    while progress:
        progress = False
        for r in stages:
            while idx[r] < len(acts[r]):
                e = acts[r][idx[r]]
                kind, m = e["name"].split()
                dep = (r - 1, "forward", m) if kind == "forward" and r > 0 else \
                    (r + 1, "backward", m) if kind == "backward" and r < last else None
                if dep is not None and dep not in done:
                    break
                start = max(free[r], done[dep] if dep is not None else 0.0)
                free[r] = start + e["dur"]
                busy[r] += e["dur"]
                done[(r, kind, m)] = free[r]
                idx[r] += 1
                progress = True
    window = free[stages[0]]  # stage 0 starts at 0 and ends last, as in pipeline_window
    return [1 - busy[r] / window for r in stages]


def theory(stages, micro_batches):
    return (stages - 1) / (micro_batches + stages - 1)

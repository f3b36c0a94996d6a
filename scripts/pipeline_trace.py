"""Reading the Chrome traces of `loom train --strategy pipeline --trace` (pure Python).

A trace holds, per rank (pid): "step" spans (one per global step), "forward m" and
"backward m" spans (category forward / backward), "wait act m" / "wait grad m" spans
(category idle) on lane 0, and sends and receives on lane 1.

pipeline_window(trace, step) is one step's pipeline makespan: from the first forward on
stage 0 to the last backward on stage 0 (stage 0 starts first and ends last in both
GPipe and 1F1B). bubble(trace, step) is, per stage, the share of that window the stage
spent neither in forward nor in backward: what the theory (P-1)/(M+P-1) predicts.
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


def theory(stages, micro_batches):
    return (stages - 1) / (micro_batches + stages - 1)

"""Support for the byo tests (byo_test.py, the scenario modules): --break and check(),
running loom, comparisons with Python, the user's models (TorchScript-able, none of them
loom's built-ins) and data files.

byo_test.main() sets `args`; `failures` collects the failed checks of the run.
"""

import json
import math
import os
import signal
import subprocess
import time

import numpy as np
import torch
import torch.nn as nn


BREAKS = {
    "seed": "train the distributed / other-strategy side with another seed",
    "keys": "load the saved state_dict into a Python model with a renamed parameter / expect one more buffer",
    "accuracy": "flip one test label in Python's copy before computing the accuracy",
    "scripted": "compare --save-scripted with the untrained Python model / the other run's --save",
    "mse": "compute Python's test MSE (and the bce loss) without the last test row",
    "init": "compute Python's expectations from the wrong parameters (the script's own, --init's)",
    "lr": "take Python's SGD step with lr * 1.01",
    "error_text": "expect other words in the error lines ('nn.ModuleList', 'ScriptModule', 'absent.pth')",
    "evaluated": "expect evaluated=true without --eval-data",
    "easy": "make the classes far apart (test accuracy 1: the accuracy comparison would tell little)",
    "no_learning": "train the regressor with lr 1e-7",
    "dtype": "give complex64 inputs where float64 belong",
    "allow_nan": "give --allow-nan to the run that must fail on the NaN and not to the one that must train",
    "shards": "put one of worker 0's rows into worker 1's shard",
    "eval_mode": "compute Python's accuracy with the model in train mode",
    "idx_labels": "shuffle the IDX test labels (nothing to learn)",
    "idx_scale": "scale the IDX pixels by 1/256 in Python instead of loom's 1/255",
}

JOB_ENV = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
           "LOOM_FAULT_INJECT", "LOOM_RESTART_COUNT"]
CRASH_TEXT = ["terminate called", "Aborted", "Segmentation fault", "core dumped", "Traceback"]

args = None
failures = []


def broken(name):
    return args.break_ == name


def check(ok, what, detail=""):
    print(("PASS " if ok else "FAIL ") + what + (("\n     " + detail) if detail and not ok else ""), flush=True)
    if not ok:
        failures.append(what)
    return ok


# ---------------------------------------------------------------------------------------
# Running loom


class Run:
    def __init__(self, argv, rc, out, err, seconds, timed_out):
        self.argv, self.rc, self.out, self.err, self.seconds, self.timed_out = argv, rc, out, err, seconds, timed_out

    def describe(self):
        state = "timed out" if self.timed_out else (
            "signal %d" % -self.rc if self.rc < 0 else "exit code %d" % self.rc)
        return "$ %s\n%s after %.1f s; stderr:\n%s" % (" ".join(self.argv), state, self.seconds, self.err)

    def ok(self):
        return self.rc == 0 and not self.timed_out

    def err_lines(self):
        return self.err.splitlines()


def loom(*argv, timeout=240):
    """Runs `loom ARGV` in its own process group (killed whole on timeout)."""
    cmd = [args.loom] + [str(a) for a in argv]
    env = {k: v for k, v in os.environ.items() if k not in JOB_ENV}
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True, text=True, errors="replace")
    timed_out = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    r = Run(cmd, p.returncode, out, err, time.monotonic() - start, timed_out)
    print("  ran (%.1f s, rc %s): %s" % (r.seconds, "timeout" if timed_out else r.rc, " ".join(cmd)), flush=True)
    return r


def check_run(r, what):
    return check(r.ok(), what, r.describe())


def check_one_line_error(r, what, *needles):
    """Non-zero exit (no signal, no hang), no crash text, one stderr line holding every needle."""
    ok = not r.timed_out and r.rc > 0
    crash = [c for c in CRASH_TEXT if c in r.err]
    lines = [ln for ln in r.err_lines() if all(n in ln for n in needles)]
    # Exactly one: a job's error is said once, by the launcher or one rank, not by each rank.
    return check(ok and not crash and len(lines) == 1, "%s: exit > 0 and one line with %s" % (what, " + ".join(
        repr(n) for n in needles)), ("crash text %s; " % crash if crash else "") + r.describe())


# Settings every training run here shares: small, quick, one thread, no progress bar.
# The seed is given by each run (--seed twice would rely on the CLI's repeat policy).
def common(steps=20, batch=32, lr=0.05, momentum=0.9):
    return ["--steps", steps, "--batch-size", batch, "--lr", lr, "--momentum", momentum,
            "--optimizer", "sgd", "--threads", 1, "--progress", "off", "--timeout", 60, "--log-every", 1]


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summary(path):
    try:
        rs = records(path)
    except (OSError, ValueError) as e:
        check(False, "metrics file %s is readable JSON lines" % path, repr(e))
        return None
    if not check(bool(rs) and rs[-1].get("event") == "summary", "the last record of %s is the summary" % path,
                 json.dumps(rs[-1] if rs else None)):
        return None
    return rs[-1]


# ---------------------------------------------------------------------------------------
# Comparisons


def max_abs_diff_dicts(a, b):
    """Largest |a - b| over two state_dicts; inf for NaN/inf, a key or shape on one side."""
    if list(a.keys()) != list(b.keys()):
        return math.inf
    worst = 0.0
    for k in a:
        x, y = a[k], b[k]
        if not torch.is_tensor(x) or not torch.is_tensor(y) or x.shape != y.shape:
            return math.inf
        x, y = x.detach().double(), y.detach().double()
        if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
            return math.inf
        if x.numel():
            worst = max(worst, (x - y).abs().max().item())
    return worst


def max_abs_diff(x, y):
    x, y = x.detach().double(), y.detach().double()
    if x.shape != y.shape or not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return math.inf
    return (x - y).abs().max().item() if x.numel() else 0.0


def rel_diff(a, b):
    if a is None or b is None:
        return math.inf
    a, b = float(a), float(b)
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(b), 1e-12)


def loss_close(reported, python):
    """A loss loom computed in float32 vs Python's in float64 from the same float32 outputs:
    1e-5 relative, or 1e-6 absolute for losses near 0 (where float32's log loses digits)."""
    if reported is None or python is None or not (math.isfinite(reported) and math.isfinite(python)):
        return False
    return abs(reported - python) <= max(1e-5 * abs(python), 1e-6)


def load_state_dict_file(path):
    try:
        d = torch.load(path)
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        check(False, "torch.load(%s)" % path, repr(e))
        return None
    if not check(isinstance(d, dict) and all(torch.is_tensor(v) for v in d.values()),
                 "torch.load(%s) gives a dict name -> tensor" % os.path.basename(path), repr(type(d))):
        return None
    return d


def check_equal_models(a_path, b_path, what, tol=1e-5):
    a, b = load_state_dict_file(a_path), load_state_dict_file(b_path)
    if a is None or b is None:
        return check(False, what, "a model file did not load")
    d = max_abs_diff_dicts(a, b)
    keys = "the same keys" if list(a) == list(b) else "keys %s vs %s" % (list(a), list(b))
    return check(d < tol, "%s (max abs diff %.3g < %g)" % (what, d, tol), keys)


def strict_load(model, path, what):
    sd = load_state_dict_file(path)
    if sd is None:
        return check(False, what, "no state_dict")
    try:
        model.load_state_dict(sd, strict=True)
    except Exception as e:  # noqa: BLE001
        return check(False, what, repr(e))
    return check(True, what)


# ---------------------------------------------------------------------------------------
# Models (TorchScript-able, none of them loom's built-ins)


class ResidualMLP(nn.Module):
    """Not an nn.Sequential at the top: a residual block with a LayerNorm."""

    def __init__(self, d_in=12, hidden=16, classes=3, renamed=False):
        super().__init__()
        self.inp = nn.Linear(d_in, hidden)
        self.norm = nn.LayerNorm(hidden)
        if renamed:
            self.block2 = nn.Linear(hidden, hidden)
        else:
            self.block = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + torch.relu(self.block(self.norm(h)))
        return self.out(h)


class ResidualMLPRenamed(ResidualMLP):
    def __init__(self):
        super().__init__(renamed=True)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + torch.relu(self.block2(self.norm(h)))
        return self.out(h)


class Regressor(nn.Module):
    def __init__(self, d_in=4, hidden=16):
        super().__init__()
        self.hidden = nn.Linear(d_in, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.hidden(x)))  # [B, 1] against targets [N]


class Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1).float()


class NanToZero(nn.Module):
    """A user's model that handles missing values itself (so it wants --allow-nan)."""

    def forward(self, x):
        return torch.nan_to_num(x, nan=0.0)


def sequential(d_in=12, classes=3):
    return nn.Sequential(nn.Linear(d_in, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, classes))


def script_save(model, path):
    torch.jit.script(model).save(path)
    return path


# ---------------------------------------------------------------------------------------
# Data


def blobs(n, d=12, classes=3, seed=0):
    """Gaussian clusters: float32 inputs [n, d], int64 class indices [n]."""
    g = np.random.default_rng(1234)  # the same centres for the train and test splits
    centres = g.normal(0, 5.0 if broken("easy") else 0.5, size=(classes, d))  # overlapping: accuracy well below 1
    r = np.random.default_rng(seed)
    y = r.integers(0, classes, size=n)
    x = centres[y] + r.normal(0, 1.0, size=(n, d))
    return x.astype(np.float32), y.astype(np.int64)


def save_npy(dirname, name, x, y):
    xp, yp = os.path.join(dirname, name + "_x.npy"), os.path.join(dirname, name + "_y.npy")
    np.save(xp, x)
    np.save(yp, y)
    return "npy:%s,%s" % (xp, yp)


def python_accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        pred = logits.argmax(dim=1)
        correct = int((pred == torch.from_numpy(y)).sum())
        top2 = logits.topk(2, dim=1).values
        near_ties = int(((top2[:, 0] - top2[:, 1]).abs() < 1e-5).sum())
        loss = nn.functional.cross_entropy(logits.double(), torch.from_numpy(y)).item()
    return correct, len(y), near_ties, loss


def check_accuracy(s, model, x, y, what):
    """The summary's test_accuracy equals Python's on the same model and data, exactly."""
    if s is None:
        return check(False, what, "no summary")
    if broken("accuracy"):
        y = y.copy()
        y[0] = (y[0] + 1) % 3
    correct, n, ties, loss = python_accuracy(model, x, y)
    reported = s.get("test_accuracy")
    ok = isinstance(reported, (int, float)) and abs(reported - correct / n) <= 1e-9
    check(ok, "%s: summary test_accuracy %r == Python's %d/%d = %.9f" % (what, reported, correct, n, correct / n),
          "%d near-tied sample(s) (top-2 logits within 1e-5)" % ties)
    reported_loss = s.get("test_loss")
    check(loss_close(reported_loss, loss),
          "%s: summary test_loss %r == Python's %.9g (1e-5 rel)" % (what, reported_loss, loss))
    # Not all right nor all wrong, or the comparison above could not tell much.
    check(0.4 < correct / n < 0.98, "%s: the test accuracy %.3f is informative (0.4 to 0.98)" % (what, correct / n))


def check_summary_fields(s, what, loss, evaluated, accuracy, mse):
    """The (new) summary fields: loss, evaluated, test_accuracy / test_mse set or null."""
    if s is None:
        return check(False, what + ": summary fields", "no summary")
    problems = []
    if s.get("loss") != loss:
        problems.append("loss %r, expected %r" % (s.get("loss"), loss))
    if s.get("evaluated") is not evaluated:
        problems.append("evaluated %r, expected %r" % (s.get("evaluated"), evaluated))
    for key, wanted in (("test_accuracy", accuracy), ("test_mse", mse)):
        if key not in s:
            problems.append("no %s" % key)
        elif wanted and not isinstance(s[key], (int, float)):
            problems.append("%s %r, expected a number" % (key, s[key]))
        elif not wanted and s[key] is not None:
            problems.append("%s %r, expected null" % (key, s[key]))
    return check(not problems, "%s: summary has loss=%s, evaluated=%s, test_accuracy %s, test_mse %s" % (
        what, loss, str(evaluated).lower(), "set" if accuracy else "null", "set" if mse else "null"),
        "; ".join(problems) + "\n     " + json.dumps(s))


def write_csv(path, cols, x, header_target, target_at):
    """A header line and rows; the target column at index target_at."""
    names = list(cols)
    names.insert(target_at, header_target)
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for row, t in zip(x[0], x[1]):
            vals = ["%.6g" % v for v in row]
            vals.insert(target_at, "%.6g" % t)
            f.write(",".join(vals) + "\n")


def regression_data(n, seed):
    r = np.random.default_rng(seed)
    x = r.uniform(-1, 1, size=(n, 4))
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] - x[:, 3] + r.normal(0, 0.05, size=n)
    return x, y


def read_csv_back(path, target):
    """What a user's Python would read: the numbers as float32, the target column apart."""
    with open(path) as f:
        header = f.readline().strip().split(",")
    a = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64).astype(np.float32)
    t = header.index(target)
    return np.delete(a, t, axis=1), a[:, t]

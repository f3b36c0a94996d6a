"""byo scenarios: the module's state: --init from Python and from loom (init); buffers
and train()/eval() with BatchNorm and Dropout (batchnorm). See byo_test.py."""

import math
import os

import torch
import torch.nn as nn

from byo_support import (ResidualMLP, blobs, broken, check, check_accuracy, check_equal_models,
                         check_one_line_error, check_run, common, load_state_dict_file, loom,
                         max_abs_diff_dicts, records, rel_diff, save_npy, script_save, strict_load, summary)


def scenario_init(d):
    # The script carries its own parameters (seed 0); the user's init is another (seed 1),
    # saved as a user saves one: torch.save(model.state_dict()) (an OrderedDict).
    #
    # An OrderedDict (torch.save(model.state_dict())) cannot be read by libtorch 1.13's
    # unpickler (it reads the class as None): loom names the file and the fix in one line.
    torch.manual_seed(0)
    own = ResidualMLP()
    model_path = script_save(own, os.path.join(d, "residual.pt"))
    torch.manual_seed(1)
    theirs = ResidualMLP()
    # libtorch's unpickler cannot read an OrderedDict: loom says so in one line (checked
    # below) and reads torch.save(dict(model.state_dict())).
    torch.save(theirs.state_dict(), d + "/ordered.pt")
    torch.save(dict(theirs.state_dict()), d + "/init.pt")
    x, y = blobs(256, seed=1)
    data = save_npy(d, "train", x, y)
    lr = 0.1
    # One step over the whole training set: the order of the samples cannot matter.
    base = ["train", "--model", model_path, "--data", data] + common(steps=1, batch=len(y), lr=lr, momentum=0) + [
        "--seed", 3]
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    r = loom(*base, "--init", d + "/ordered.pt")
    check_one_line_error(r, "--init with an OrderedDict", "loom:", "ordered.pt", "dict(model.state_dict())")

    def first_loss(path):
        steps = [rec for rec in records(path) if rec.get("event") == "step"]
        return steps[0].get("loss") if steps else None

    def python_step(start):
        """Python's loss of `start` on the whole set, and its parameters after one SGD step."""
        m = ResidualMLP()
        m.load_state_dict(start.state_dict())
        m.train()
        loss = nn.functional.cross_entropy(m(X), Y)
        m.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= (lr * 1.01 if broken("lr") else lr) * p.grad
        return loss.item(), m.state_dict()

    # Without --init the run starts from the script's own parameters.
    own_loss, own_after = python_step(own)
    their_loss, their_after = python_step(own if broken("init") else theirs)
    r = loom(*base, "--save", d + "/own.pt", "--metrics", d + "/own.jsonl")
    if check_run(r, "one full-batch step without --init"):
        got = first_loss(d + "/own.jsonl")
        check(rel_diff(got, own_loss) < 1e-5,
              "without --init the step-1 loss %r is the script's own parameters' %.7f" % (got, own_loss))
        after = load_state_dict_file(d + "/own.pt")
        diff = max_abs_diff_dicts(after, own_after) if after is not None else math.inf
        check(diff < 1e-5, "one full-batch SGD step from the script's parameters == Python's (max abs diff %.3g)"
              % diff)

        # --init from loom's own --save file: the next run starts where this one ended.
        r = loom(*base, "--init", d + "/own.pt", "--save", d + "/two.pt", "--metrics", d + "/two.jsonl")
        if check_run(r, "--init with loom's own --save file"):
            m = ResidualMLP()
            m.load_state_dict(torch.load(d + ("/init.pt" if broken("init") else "/own.pt")))
            with torch.no_grad():
                want = nn.functional.cross_entropy(m(X), Y).item()
            got = first_loss(d + "/two.jsonl")
            check(rel_diff(got, want) < 1e-5, "step-1 loss from loom's own file %r == Python's %.7f" % (got, want))

    # --init with the user's Python state_dict: loom starts from it, not from the script's.
    r = loom(*base, "--init", d + "/init.pt", "--save", d + "/one.pt", "--metrics", d + "/one.jsonl")
    if check_run(r, "--init with torch.save(model.state_dict()) from Python trains one step"):
        got = first_loss(d + "/one.jsonl")
        check(rel_diff(got, their_loss) < 1e-5 and rel_diff(got, own_loss) > 1e-3,
              "loom's step-1 loss %r == Python's loss of the --init parameters %.7f (the script's own: %.7f)" % (
                  got, their_loss, own_loss))
        after = load_state_dict_file(d + "/one.pt")
        diff = max_abs_diff_dicts(after, their_after) if after is not None else math.inf
        check(diff < 1e-5, "one full-batch SGD step from --init == Python's step (max abs diff %.3g)" % diff)


def bn_model(dropout):
    layers = [nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers, nn.Linear(16, 3))


def scenario_batchnorm(d):
    """Buffers and train()/eval(): a scripted module with BatchNorm (and Dropout).
    One full-batch step == Python's, parameters and the running statistics; the saved
    state_dict holds the buffers (strict load); evaluation runs in eval mode (Python's
    eval-mode accuracy == the summary's, which train mode's batch statistics and dropout
    would not give)."""
    x, y = blobs(256, seed=1)
    xt, yt = blobs(200, seed=2)
    data, eval_data = save_npy(d, "train", x, y), save_npy(d, "test", xt, yt)
    lr = 0.1
    torch.manual_seed(0)
    plain = bn_model(dropout=False)
    path = script_save(plain, d + "/bn.pt")
    r = loom("train", "--model", path, "--data", data, *common(steps=1, batch=len(y), lr=lr, momentum=0),
             "--seed", 3, "--save", d + "/bn_one.pt")
    if check_run(r, "one full-batch step of a BatchNorm model"):
        m = bn_model(dropout=False)
        m.load_state_dict(plain.state_dict())
        m.train()
        loss = nn.functional.cross_entropy(m(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= (lr * 1.01 if broken("lr") else lr) * p.grad
        want = m.state_dict()
        if broken("keys"):
            want["1.extra_buffer"] = torch.zeros(1)
        got = load_state_dict_file(d + "/bn_one.pt")
        if got is not None:
            check(set(got) == set(want), "BatchNorm: the saved state_dict holds the buffers too",
                  "%s vs %s" % (sorted(got), sorted(want)))
            got = {k: got[k] for k in want if k in got}
            diff = max_abs_diff_dicts(got, want)
            check(diff < 1e-5, "BatchNorm: one full-batch step == Python's, running stats and "
                               "num_batches_tracked included (max abs diff %.3g)" % diff)

    torch.manual_seed(0)
    path = script_save(bn_model(dropout=True), d + "/bn_dropout.pt")
    r = loom("train", "--model", path, "--data", data, "--eval-data", eval_data, *common(steps=10), "--seed", 3,
             "--save", d + "/bn_dropout_out.pt", "--metrics", d + "/bn_dropout.jsonl")
    if check_run(r, "a BatchNorm + Dropout model trains with evaluation"):
        m = bn_model(dropout=True)
        if strict_load(m, d + "/bn_dropout_out.pt", "BatchNorm + Dropout: strict load_state_dict"):
            if broken("eval_mode"):
                m.eval = m.train  # Python "evaluates" in train mode
            check_accuracy(summary(d + "/bn_dropout.jsonl"), m, xt, yt, "BatchNorm + Dropout, eval mode")

    # FIXED in d4cd3e2, was a failing check (2026-11-30, loom e28359f; reported): the same command twice, same
    # --seed, gives different models when the module draws random numbers (Dropout):
    # max abs diff 0.03 to 0.05 between runs; without Dropout the runs are bitwise equal.
    # (The global generator Dropout draws from is not seeded by --seed.)
    r = loom("train", "--model", path, "--data", data, *common(steps=10), "--seed", 4 if broken("seed") else 3,
             "--save", d + "/bn_dropout_again.pt")
    if check_run(r, "the Dropout model again, the same command"):
        check_equal_models(d + "/bn_dropout_out.pt", d + "/bn_dropout_again.pt",
                           "Dropout: the same command and --seed twice give the same model", tol=1e-12)

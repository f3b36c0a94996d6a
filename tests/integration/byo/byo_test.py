#!/usr/bin/python3
"""Issue 16, "your model, your data": loom trains a user's TorchScript module on the
user's own files, and what it saves and reports agrees with Python.

One ctest entry per scenario (tests/CMakeLists.txt), run as

    /usr/bin/python3 byo_test.py SCENARIO --loom PATH/TO/loom [--keep] [--break NAME]

Scenarios:
  residual    a scripted residual MLP with a LayerNorm (not nn.Sequential), NumPy data:
              allreduce --nproc 2 and ps == single (1e-5); strict load_state_dict in Python;
              Python's test accuracy == the summary's; --save-scripted == Python model
  csv_mse     regression from CSV (--target-column not the last), --loss mse:
              allreduce == single; Python's test MSE == the summary's test_mse (1e-6 rel)
  pipeline    a scripted nn.Sequential: --strategy pipeline --nproc 2 == single
  ps          the same model: --strategy ps (2 workers, 1 server, sync) == single
  hybrid      the same model: --strategy hybrid --dp 2 --pp 2 == single
  averaging   the same model: allreduce --sync params --sync-every 1 == single (plain SGD)
  losses      bce-with-logits: allreduce (proportional 2,1,1) and pipeline == single;
              mse with [B,1] outputs against [N] targets: pipeline == single; a second,
              differently shaped nn.Sequential scripted in the same Python process
              (a mangled TorchScript type name) under pipeline (FIXED in d4cd3e2, was a failing check)
  init        --init with a Python state_dict (not the script's own parameters): loom's
              first loss == Python's loss of that init; one full-batch SGD step == Python's;
              --init from loom's own --save file
  batchnorm   buffers and train()/eval(): BatchNorm running stats after one step ==
              Python's; a BatchNorm + Dropout model is evaluated in eval mode; the
              same command twice gives the same Dropout model (FIXED in d4cd3e2, was a failing check)
  errors      pipeline/hybrid with a non-Sequential module, a model file that is not
              TorchScript, a text file as model, data that does not fit the model
              (--eval-data: FIXED in d4cd3e2, was a failing check): one line naming the file and the cause
  sources     --data tensors:, idx:DIR (gzipped IDX written here), npy with float64 /
              uint8 / int64 inputs and whole-number float targets, --loss mse with a
              classifier's int targets, --loss bce-with-logits, no --eval-data
              (evaluated false), csv classification with the default target column
              (Python's accuracy == the summary's), a NaN input row: an error naming
              the row, and with --allow-nan a model that handles it trains;
              allreduce --partition random on npy: disjoint shards

--break NAME breaks one check on purpose (each check must be able to fail); the names
are listed in BREAKS. A run with --break must FAIL.

Every comparison is NaN-safe: a NaN or infinity, a missing key or a shape mismatch
counts as an infinite difference.

This file is the entry point; the scenarios are in byo_strategies.py (residual, pipeline,
ps, hybrid, averaging, losses), byo_data.py (csv_mse, sources), byo_models.py (init,
batchnorm) and byo_errors.py (errors); running loom, the checks, comparisons, models and
data are in byo_support.py.
"""

import argparse
import shutil
import sys
import tempfile
import time
import traceback

# The scenario modules sit next to this file (sys.path[0]); no __pycache__ in the source tree.
sys.dont_write_bytecode = True

import torch  # noqa: E402

import byo_support  # noqa: E402
from byo_data import scenario_csv_mse, scenario_sources  # noqa: E402
from byo_errors import scenario_errors  # noqa: E402
from byo_models import scenario_batchnorm, scenario_init  # noqa: E402
from byo_strategies import (scenario_averaging, scenario_hybrid, scenario_losses, scenario_pipeline,  # noqa: E402
                            scenario_ps, scenario_residual)
from byo_support import BREAKS, check, failures  # noqa: E402


SCENARIOS = {
    "residual": scenario_residual,
    "csv_mse": scenario_csv_mse,
    "pipeline": scenario_pipeline,
    "ps": scenario_ps,
    "hybrid": scenario_hybrid,
    "averaging": scenario_averaging,
    "losses": scenario_losses,
    "init": scenario_init,
    "batchnorm": scenario_batchnorm,
    "errors": scenario_errors,
    "sources": scenario_sources,
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--loom", required=True, help="the loom binary")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--break", dest="break_", choices=sorted(BREAKS), help="break one check on purpose")
    args = byo_support.args = p.parse_args()  # broken() reads byo_support.args
    torch.set_num_threads(1)
    d = tempfile.mkdtemp(prefix="loom-byo-%s-" % args.scenario)
    start = time.monotonic()
    try:
        SCENARIOS[args.scenario](d)
    except Exception:  # noqa: BLE001 - a crash of the scenario is a failure, with its trace
        check(False, "scenario %s ran to the end" % args.scenario, traceback.format_exc())
    finally:
        if args.keep:
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    print("%s: %s in %.0f s" % (args.scenario, "FAILED: %d check(s)" % len(failures) if failures else "passed",
                                time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""byo scenarios: the user's data files: a CSV regression with --loss mse (csv_mse); every
--data source, dtype and loss, NaN rows and random partitions (sources). See byo_test.py."""

import gzip
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn

from byo_support import (Flatten, NanToZero, Regressor, ResidualMLP, blobs, broken, check, check_accuracy,
                         check_equal_models, check_one_line_error, check_run, check_summary_fields, common,
                         load_state_dict_file, loom, loss_close, max_abs_diff_dicts, read_csv_back, records,
                         regression_data, rel_diff, save_npy, script_save, strict_load, summary, write_csv)


def scenario_csv_mse(d):
    torch.manual_seed(0)
    model_path = script_save(Regressor(), os.path.join(d, "regressor.pt"))
    write_csv(d + "/train.csv", ["a", "b", "c", "d"], regression_data(400, 1), "price", 2)
    write_csv(d + "/test.csv", ["a", "b", "c", "d"], regression_data(150, 2), "price", 2)
    base = ["train", "--model", model_path, "--data", "csv:" + d + "/train.csv", "--eval-data",
            "csv:" + d + "/test.csv", "--target-column", "price", "--loss", "mse"]
    base += common(lr=1e-7 if broken("no_learning") else 0.02)
    single = loom(*base, "--strategy", "single", "--seed", 3, "--save", d + "/single.pt",
                  "--metrics", d + "/single.jsonl")
    ar = loom(*base, "--strategy", "allreduce", "--nproc", 2, "--seed", 4 if broken("seed") else 3,
              "--save", d + "/ar.pt", "--metrics", d + "/ar.jsonl")
    if not (check_run(single, "single trains a regressor from CSV with --loss mse")
            & check_run(ar, "allreduce --nproc 2 trains it")):
        return
    check_equal_models(d + "/single.pt", d + "/ar.pt", "csv, mse: allreduce --nproc 2 == single")
    xt, yt = read_csv_back(d + "/test.csv", "price")
    if broken("mse"):
        xt, yt = xt[:-1], yt[:-1]
    for name in ("single", "ar"):
        m = Regressor()
        if not strict_load(m, "%s/%s.pt" % (d, name), "%s: strict load_state_dict into the Python regressor" % name):
            continue
        s = summary("%s/%s.jsonl" % (d, name))
        check_summary_fields(s, name, "mse", True, accuracy=False, mse=True)
        m.eval()
        with torch.no_grad():
            out = m(torch.from_numpy(xt)).squeeze(1).double()
        mse = ((out - torch.from_numpy(yt).double()) ** 2).mean().item()
        reported = s.get("test_mse") if s else None
        check(rel_diff(reported, mse) < 1e-6,
              "%s: summary test_mse %r == Python's %.9f (1e-6 rel)" % (name, reported, mse))
        # Must have learnt something (the mean predictor's MSE is the target's variance).
        check(mse < 0.8 * float(np.var(yt)), "%s: test MSE %.4f below 0.8 x the variance %.4f" % (
            name, mse, float(np.var(yt))))


def write_idx(path, array):
    """An IDX file (gzipped), as MNIST's: magic 0x0000 0x08 (ubyte) ndim, big-endian dims."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, a.ndim))
        f.write(struct.pack(">" + "I" * a.ndim, *a.shape))
        f.write(a.tobytes())


def scenario_sources(d):
    torch.manual_seed(0)
    residual = script_save(ResidualMLP(), os.path.join(d, "residual.pt"))
    x, y = blobs(256, seed=1)
    xt, yt = blobs(100, seed=2)
    quick = common(steps=6) + ["--seed", 3]

    # tensors:FILE.pt (a dict saved by torch.save), with evaluation on another file.
    torch.save({"inputs": torch.from_numpy(x), "targets": torch.from_numpy(y)}, d + "/train_t.pt")
    torch.save({"inputs": torch.from_numpy(xt), "targets": torch.from_numpy(yt)}, d + "/test_t.pt")
    r = loom("train", "--model", residual, "--data", "tensors:" + d + "/train_t.pt", "--eval-data",
             "tensors:" + d + "/test_t.pt", *quick, "--save", d + "/t.pt", "--metrics", d + "/t.jsonl")
    if check_run(r, "--data tensors:FILE.pt trains"):
        m = ResidualMLP()
        if strict_load(m, d + "/t.pt", "tensors: strict load_state_dict"):
            s = summary(d + "/t.jsonl")
            check_summary_fields(s, "tensors", "cross-entropy", True, accuracy=True, mse=False)
            check_accuracy(s, m, xt, yt, "tensors")

    # npy without --eval-data: no evaluation, and the summary says so.
    npy = save_npy(d, "f32", x, y)
    r = loom("train", "--model", residual, "--data", npy, *quick, "--metrics", d + "/noeval.jsonl")
    if check_run(r, "npy without --eval-data trains"):
        s = summary(d + "/noeval.jsonl")
        check_summary_fields(s, "no --eval-data", "cross-entropy", broken("evaluated"), accuracy=False, mse=False)
        evals = [rec for rec in records(d + "/noeval.jsonl") if rec.get("event") == "eval"]
        check(not evals, "no --eval-data: no eval records", json.dumps(evals))

    # --partition random over a memory-mapped npy set: each worker draws from its own shard.
    os.makedirs(d + "/indices")
    r = loom("train", "--model", residual, "--data", npy, *quick, "--strategy", "allreduce", "--nproc", 2,
             "--partition", "random", "--record-indices", d + "/indices")
    if check_run(r, "allreduce --nproc 2 --partition random on npy trains"):
        seen = []
        for rank in (0, 1):
            with open("%s/indices/rank-%d.json" % (d, rank)) as f:
                seen.append({i for step in json.load(f)["steps"] for i in step})
        if broken("shards"):
            seen[1] |= {next(iter(seen[0]))}
        check(seen[0] and seen[1] and not (seen[0] & seen[1]) and max(seen[0] | seen[1]) < len(y),
              "--partition random: the two workers' rows are disjoint shards of the %d rows (%d and %d rows seen)" % (
                  len(y), len(seen[0]), len(seen[1])))

    # Other input dtypes, and whole-number float targets for cross-entropy.
    for name, xs, ys in (("f64", x.astype(np.complex64 if broken("dtype") else np.float64), y),
                         ("i64", np.rint(x * 10).astype(np.int64), y),
                         ("u8", np.clip(x * 20 + 128, 0, 255).astype(np.uint8), y),
                         ("floaty", x, y.astype(np.float32))):
        r = loom("train", "--model", residual, "--data", save_npy(d, name, xs, ys), *quick,
                 "--save", "%s/%s.pt" % (d, name))
        what = ("npy %s inputs" % xs.dtype) if name != "floaty" else "npy float32 whole-number targets"
        if check_run(r, what + " train"):
            sd = load_state_dict_file("%s/%s.pt" % (d, name))
            check(sd is not None and max_abs_diff_dicts(sd, sd) == 0.0, what + ": saved model is finite")

    # --loss mse with a classifier's int64 targets (a one-output model): works, reports MSE.
    one_out = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 1))
    r = loom("train", "--model", script_save(one_out, d + "/one_out.pt"), "--data", npy, "--eval-data",
             save_npy(d, "test", xt, yt), "--loss", "mse", *common(steps=6, lr=0.01), "--seed", 3,
             "--save", d + "/mse.pt", "--metrics", d + "/mse.jsonl")
    if check_run(r, "--loss mse with int64 class targets trains"):
        s = summary(d + "/mse.jsonl")
        check_summary_fields(s, "mse on int targets", "mse", True, accuracy=False, mse=True)
        one_out.load_state_dict(torch.load(d + "/mse.pt"))
        n = len(yt) - (1 if broken("mse") else 0)
        with torch.no_grad():
            out = one_out(torch.from_numpy(xt[:n])).squeeze(1).double()
            mse = ((out - torch.from_numpy(yt[:n]).double()) ** 2).mean()
        check(s is not None and rel_diff(s.get("test_mse"), mse.item()) < 1e-6,
              "mse on int targets: test_mse %r == Python's %.9f" % (s and s.get("test_mse"), mse.item()))

    # --loss bce-with-logits with [N, 2] float 0/1 targets.
    multi = (np.stack([y == 0, y == 2], axis=1)).astype(np.float32)
    multi_t = (np.stack([yt == 0, yt == 2], axis=1)).astype(np.float32)
    two_out = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 2))
    r = loom("train", "--model", script_save(two_out, d + "/two_out.pt"), "--data", save_npy(d, "bce", x, multi),
             "--eval-data", save_npy(d, "bce_test", xt, multi_t), "--loss", "bce-with-logits", *quick,
             "--save", d + "/bce.pt", "--metrics", d + "/bce.jsonl")
    if check_run(r, "--loss bce-with-logits with [N,2] float targets trains"):
        s = summary(d + "/bce.jsonl")
        two_out.load_state_dict(torch.load(d + "/bce.pt"))
        n = len(multi_t) - (1 if broken("mse") else 0)
        with torch.no_grad():
            want = nn.functional.binary_cross_entropy_with_logits(
                two_out(torch.from_numpy(xt[:n])).double(), torch.from_numpy(multi_t[:n]).double()).item()
        check(s is not None and s.get("loss") == "bce-with-logits" and s.get("test_mse") is None,
              "bce: summary loss=bce-with-logits, test_mse null", json.dumps(s))
        check(s is not None and rel_diff(s.get("test_loss"), want) < 1e-5,
              "bce: summary test_loss %r == Python's %.7f" % (s and s.get("test_loss"), want))

    # csv for classification: the default target column (the last), class indices written
    # as whole numbers; Python's accuracy on the csv test split == the summary's.
    for name, xs, ys in (("train", x, y), ("test", xt, yt)):
        with open("%s/cls_%s.csv" % (d, name), "w") as f:
            f.write(",".join("f%d" % k for k in range(12)) + ",label\n")
            for row, label in zip(xs, ys):
                f.write(",".join("%.6g" % v for v in row) + ",%d\n" % label)
    r = loom("train", "--model", residual, "--data", "csv:%s/cls_train.csv" % d, "--eval-data",
             "csv:%s/cls_test.csv" % d, *quick, "--save", d + "/cls.pt", "--metrics", d + "/cls.jsonl")
    if check_run(r, "csv classification with the default (last) target column trains"):
        m = ResidualMLP()
        if strict_load(m, d + "/cls.pt", "csv classification: strict load_state_dict"):
            s = summary(d + "/cls.jsonl")
            check_summary_fields(s, "csv classification", "cross-entropy", True, accuracy=True, mse=False)
            cx, cy = read_csv_back("%s/cls_test.csv" % d, "label")
            check_accuracy(s, m, cx, cy.astype(np.int64), "csv classification")

    # A NaN in the inputs: an error naming the row without --allow-nan; with it, the NaN
    # reaches a model that handles it (torch.nan_to_num) and the run trains.
    xn = x.copy()
    xn[5, 3] = np.nan
    nan_data = save_npy(d, "nan", xn, y)
    nan_model = script_save(nn.Sequential(NanToZero(), nn.Linear(12, 3)), d + "/nan_model.pt")
    swap = ["--allow-nan"] if broken("allow_nan") else []
    r = loom("train", "--model", nan_model, "--data", nan_data, *quick, *swap)
    check_one_line_error(r, "a NaN in row 5 of the inputs without --allow-nan", "nan_x.npy",
                         "row 5 holds a NaN in its inputs")
    allow = [] if broken("allow_nan") else ["--allow-nan"]
    r = loom("train", "--model", nan_model, "--data", nan_data, *quick, *allow, "--save", d + "/nan.pt")
    if check_run(r, "--allow-nan: the NaN reaches the model, which handles it, and the run trains"):
        sd = load_state_dict_file(d + "/nan.pt")
        check(sd is not None and max_abs_diff_dicts(sd, sd) == 0.0, "--allow-nan: the saved model is finite")

    # idx:DIR, any MNIST-family set: tiny 8x8 images, gzipped IDX written here.
    idx = d + "/idx"
    os.makedirs(idx)
    r8 = np.random.default_rng(5)
    for split, n in (("train", 200), ("t10k", 60)):
        labels = r8.integers(0, 3, size=n)
        images = np.zeros((n, 8, 8))
        for i, c in enumerate(labels):
            images[i, :, 2 * c:2 * c + 3] = 90  # a faint bar whose column is the class
        images += r8.integers(0, 160, size=images.shape)
        if broken("idx_labels") and split == "t10k":
            labels = r8.permutation(labels)
        write_idx("%s/%s-images-idx3-ubyte.gz" % (idx, split), images)
        write_idx("%s/%s-labels-idx1-ubyte.gz" % (idx, split), labels)
    test_images, test_labels = images.astype(np.uint8), labels.astype(np.int64)
    flat = nn.Sequential(Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    r = loom("train", "--model", script_save(flat, d + "/flat.pt"), "--data", "idx:" + idx, "--eval-data",
             "idx:" + idx, *common(steps=30, lr=0.05), "--seed", 3, "--metrics", d + "/idx.jsonl",
             "--save", d + "/idx.pt")
    if check_run(r, "--data idx:DIR (gzipped IDX written by Python) trains"):
        s = summary(d + "/idx.jsonl")
        check_summary_fields(s, "idx", "cross-entropy", True, accuracy=True, mse=False)
        acc = s.get("test_accuracy") if s else None
        check(isinstance(acc, (int, float)) and acc > 0.6, "idx: the bars are learnt (test accuracy %r > 0.6)" % acc)
        # docs/data.md: IDX pixels become float32 pixel/255; t10k-* is the test split.
        if strict_load(flat, d + "/idx.pt", "idx: strict load_state_dict"):
            flat.eval()
            with torch.no_grad():
                logits = flat(torch.from_numpy(test_images).float() / (256 if broken("idx_scale") else 255))
                correct = int((logits.argmax(1) == torch.from_numpy(test_labels)).sum())
                loss = nn.functional.cross_entropy(logits.double(), torch.from_numpy(test_labels)).item()
            check(acc is not None and abs(acc - correct / len(test_labels)) <= 1e-9,
                  "idx: summary test_accuracy %r == Python's %d/%d" % (acc, correct, len(test_labels)))
            got = s.get("test_loss") if s else None
            check(loss_close(got, loss), "idx: summary test_loss %r == Python's %.9g on pixel/255" % (got, loss))

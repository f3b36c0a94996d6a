#!/usr/bin/env bash
# The default job of `make demo`: the two-conv CNN on Fashion-MNIST, data-parallel over 2
# worker processes (bucketed AllReduce), 3 epochs, then its test accuracy (about 0.91).
set -euo pipefail
loom=${1:-build/loom}
out=${LOOM_DEMO_DIR:-build/demo}
mkdir -p "$out"
"$loom" train --nproc 2 --strategy allreduce --model cnn --data fashion-mnist --epochs 3 --batch-size 128 \
  --lr 0.05 --momentum 0.9 --threads 1 --metrics "$out/metrics.jsonl" --save "$out/model.pt"
python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
summary = [json.loads(l) for l in open(sys.argv[1])][-1]
print(f"loom demo: {summary['strategy']} x{summary['world_size']} {summary['model']}: "
      f"test accuracy {summary['test_accuracy']:.4f} after {summary['steps']} steps, "
      f"{summary['samples_per_s']:.0f} samples/s, {summary['wall_s']:.1f} s")
PY

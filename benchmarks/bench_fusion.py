"""What graph optimization gains: npuc with clean-up passes only vs the full cpu pipeline
(BN/affine folding, activation fusion, pad folding, patterns, layout clean-up, CSE, and the
copy-free Concat of the lowering), side by side in one run, one thread.

    python benchmarks/bench_fusion.py [--runs 20] [--models mobilenet_v2,resnet18,yolo_like]

Models are exported the way PyTorch exports them (BatchNorm not folded). Prints per model:
op count, arena bytes and median latency before and after, and the ratios.
"""
from __future__ import annotations

import os
import sys

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import npuc  # noqa: E402
from npuc.cli import inspect_dict  # noqa: E402
from tests.models.zoo import mobilenet_v2, random_inputs, resnet18, save, yolo_like  # noqa: E402

MODELS = {"mobilenet_v2": lambda: mobilenet_v2(resolution=224),
          "resnet18": lambda: resnet18(resolution=224),
          "yolo_like": lambda: yolo_like(resolution=320)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--models", default="mobilenet_v2,resnet18,yolo_like")
    args = ap.parse_args()
    print(f"npuc: clean-up only vs full optimization, 1 thread, {args.runs} interleaved runs (medians)\n")
    print(f"{'model':14s} {'ops':>11s} {'arena MB':>15s} {'latency ms':>17s} {'speed-up':>9s} {'arena':>7s}")
    with tempfile.TemporaryDirectory() as d:
        for name in args.models.split(","):
            model = MODELS[name]()
            src = Path(d) / f"{name}.onnx"
            save(model, src)
            sess, info = {}, {}
            for label, opt in (("before", False), ("after", True)):
                out = Path(d) / f"{name}_{label}.npuc"
                npuc.compile(src, out, optimize=opt)
                sess[label] = npuc.load(out)
                info[label] = inspect_dict(str(out))
            feeds = random_inputs(model, seed=0)
            times = {"before": [], "after": []}
            for label in times:
                sess[label].run(feeds)
            for _ in range(args.runs):
                for label in times:
                    t0 = time.perf_counter()
                    sess[label].run(feeds)
                    times[label].append(time.perf_counter() - t0)
            tb, ta = (statistics.median(times[k]) * 1e3 for k in ("before", "after"))
            ab, aa = (info[k]["memory"]["arena_bytes"] / 1e6 for k in ("before", "after"))
            ob, oa = (info[k]["op_count"] for k in ("before", "after"))
            print(f"{name:14s} {ob:5d} → {oa:4d} {ab:7.2f} → {aa:5.2f} {tb:8.2f} → {ta:6.2f} {tb / ta:8.2f}x "
                  f"{aa / ab:6.2f}x")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Write the test-model zoo (tests/models/zoo.py) to a folder.

    python scripts/make_zoo.py OUTDIR [--names mobilenet_v2 resnet18 ...] [--fold-bn]
                               [--opset 17] [--seed 0] [--resolution R] [--n 4]

For each model NAME it writes OUTDIR/NAME.onnx and OUTDIR/NAME.inputs.npz, the latter
holding ``random_inputs(model, seed, n)``: per graph input an array of shape
``(n, *input_shape)`` (n samples, e.g. for calibration or for comparing runtimes).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.models import zoo  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path, help="folder to write the .onnx and .inputs.npz files to")
    p.add_argument("--names", nargs="+", choices=sorted(zoo.MODELS), default=list(zoo.MODELS),
                   metavar="NAME", help=f"models to write (default: all of {', '.join(zoo.MODELS)})")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNormalization into the convs")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--seed", type=int, default=0, help="weights seed, also used for the inputs")
    p.add_argument("--resolution", type=int, default=None,
                   help="input resolution for the image models that take one (default: theirs)")
    p.add_argument("--n", type=int, default=4, help="samples per input in the .npz (default 4)")
    args = p.parse_args(argv)

    args.outdir.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        fn = zoo.MODELS[name]
        params = inspect.signature(fn).parameters
        kw = {"seed": args.seed, "opset": args.opset, "fold_bn": args.fold_bn, "resolution": args.resolution}
        kw = {k: v for k, v in kw.items() if k in params and v is not None}
        if args.fold_bn and "fold_bn" not in params:
            print(f"note: {name} has no BatchNormalization to fold", file=sys.stderr)
        t0 = time.perf_counter()
        model = fn(**kw)
        onnx_path = args.outdir / f"{name}.onnx"
        zoo.save(model, onnx_path)
        inputs = zoo.random_inputs(model, seed=args.seed, n=args.n)
        np.savez(args.outdir / f"{name}.inputs.npz", **inputs)
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in inputs.items())
        print(f"{onnx_path}: {len(model.graph.node)} nodes, {time.perf_counter() - t0:.1f} s; inputs {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

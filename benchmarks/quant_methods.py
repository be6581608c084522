"""Compare calibration methods (with and without bias correction) on the real models: worst output
cosine against the float model on the test inputs, per method.

    python benchmarks/quant_methods.py [--quant-type uint8]

This is how the default calibration method was chosen (see docs/quantization.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npuc.frontends.onnx import import_onnx  # noqa: E402
from npuc.passes.pipelines import quant_pipeline  # noqa: E402
from npuc.quant.bias_correction import correct_biases  # noqa: E402
from npuc.quant.calibrate import Calibrator, float_session  # noqa: E402
from npuc.quant.observers import METHODS  # noqa: E402
from npuc.quant.quantize import QuantConfig, quantize_graph  # noqa: E402
from npuc.quant.report import output_cosines  # noqa: E402

CASES = {"digits_dwcnn": "model.onnx", "mtcnn_pnet": "model.onnx", "blazeface_short": "model_tf2onnx.onnx",
         "mobilenetv2_digits": "model.onnx", "resnet_digits": "model.onnx"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quant-type", default="uint8")
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    args = ap.parse_args()
    print(f"worst output cosine vs float on the test inputs ({args.quant_type} activations, int8 per-channel "
          f"weights); 16 calibration samples")
    print(f"{'model':18s} {'method':11s} {'bias-corr':9s} {'cosine':>9s} {'calib s':>8s}")
    for case, f in CASES.items():
        d = ROOT / "tests" / "data" / case
        g = import_onnx(d / f)
        quant_pipeline().run(g)
        calib = dict(np.load(d / "calib.npz"))
        test = dict(np.load(d / "test.npz"))
        names = [v.name for v in g.inputs]
        samples = [{k: calib[k][i] for k in names} for i in range(len(calib[names[0]]))]
        tests = [{k: test[k][i] for k in names} for i in range(len(test[names[0]]))]
        for m in args.methods:
            t0 = time.perf_counter()
            cal = Calibrator(g, m).run(samples)
            dt = time.perf_counter() - t0
            for bc in (False, True):
                cfg = QuantConfig(act_type=args.quant_type)
                ranges = cal.ranges(lambda n: cfg.act_type)
                qg = quantize_graph(g, ranges, cfg)
                if bc:
                    correct_biases(cal.session, qg, samples, sequential=True)
                qs = float_session(qg)
                worst = 1.0
                for t in tests:
                    c = output_cosines(cal.session, qs, [t])
                    worst = min(worst, min(c.values()))
                print(f"{case:18s} {m:11s} {str(bc):9s} {worst:9.5f} {dt:8.2f}")


if __name__ == "__main__":
    main()

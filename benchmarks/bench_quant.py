"""Quantized inference: npuc integer kernels vs npuc float vs onnxruntime (float and its own
static QDQ quantization), latency and accuracy, one thread, in one run.

    python benchmarks/bench_quant.py [--runs 30] [--models mobilenet_v2,resnet18] [--calib 16] [--test 8]

Per model (``tests.models.zoo``, BN not folded, as exported for training):

* calibration set: ``--calib`` samples of ``zoo.random_inputs`` (N(0, 1)), written to an
  .npz and given to ``npuc.compile(..., dataset=..., quant_type=...)`` (minmax ranges) and,
  through a ``CalibrationDataReader`` over the same samples, to
  ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights, MinMax,
  activations QUInt8 or QInt8, after ``quant_pre_process``);
* latency: the median of ``--runs`` runs of each of the six sessions, interleaved run by
  run on the same input (npuc: ``Session.run``; onnxruntime: ``intra_op_num_threads=1``,
  sequential, default optimizations); ratios to npuc float and to onnxruntime's own
  quantized model are printed, since absolute times drift on a shared machine;
* accuracy: cosine similarity (min and mean over ``--test`` other samples) of each
  quantized model's output against the float model's (onnxruntime float), and top-1
  agreement;
* the compile stages (``CompileReport.stage_seconds``) of the uint8 MobileNetV2 compile.

npuc's integer convolutions run on its own int16-pair micro-kernel (no BLAS); its float
model, QGemm and QMatMul use numpy's OpenBLAS: ``--blas-coretype NAME`` sets
``OPENBLAS_CORETYPE`` as in ``bench_float.py``.
"""
from __future__ import annotations

import os
import sys

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
for _i, _a in enumerate(sys.argv):   # must be set before numpy loads OpenBLAS
    if _a == "--blas-coretype" and _i + 1 < len(sys.argv):
        os.environ["OPENBLAS_CORETYPE"] = sys.argv[_i + 1]
    elif _a.startswith("--blas-coretype="):
        os.environ["OPENBLAS_CORETYPE"] = _a.split("=", 1)[1]

import argparse  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnxruntime as ort  # noqa: E402
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,  # noqa: E402
                                      QuantType, quantize_static)

import npuc  # noqa: E402
from tests.models.zoo import mobilenet_v2, random_inputs, resnet18, save  # noqa: E402

MODELS = {"mobilenet_v2": lambda: mobilenet_v2(resolution=224, fold_bn=False),
          "resnet18": lambda: resnet18(resolution=224, fold_bn=False)}
QTYPES = ("uint8", "int8")


def blas_core() -> str:
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_float import blas_core as core

        return core()
    except Exception:  # noqa: BLE001
        return "unknown"


def ort_session(path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class _Reader(CalibrationDataReader):
    def __init__(self, samples: dict[str, np.ndarray]):
        n = next(iter(samples.values())).shape[0]
        self._it = iter([{k: v[i] for k, v in samples.items()} for i in range(n)])

    def get_next(self):
        return next(self._it, None)


def ort_quantize(src: Path, dst: Path, calib: dict[str, np.ndarray], qt: str, workdir: Path) -> None:
    pre = workdir / f"{src.stem}_pre.onnx"
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(src), str(pre))
    except Exception as e:  # noqa: BLE001 - the quantizer also works on the raw model
        print(f"  (quant_pre_process failed: {e}; quantizing the model as it is)")
        pre = src
    quantize_static(str(pre), str(dst), _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8 if qt == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def bench_model(name: str, workdir: Path, args) -> tuple[list[dict], dict | None]:
    model = MODELS[name]()
    src = workdir / f"{name}.onnx"
    save(model, src)
    inp = model.graph.input[0].name
    calib = random_inputs(model, seed=1, n=args.calib)
    test = random_inputs(model, seed=2, n=args.test)
    calib_path = workdir / f"{name}_calib.npz"
    np.savez(calib_path, **calib)

    runners: dict[str, callable] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    fallback: dict[str, list[str]] = {}
    compile_report = None
    # npuc
    t0 = time.perf_counter()
    npuc.compile(src, workdir / f"{name}_f.npuc")
    print(f"  npuc float compile {time.perf_counter() - t0:.2f} s")
    sessions = {"npuc float": npuc.load(workdir / f"{name}_f.npuc")}
    for qt in QTYPES:
        path = workdir / f"{name}_{qt}.npuc"
        t0 = time.perf_counter()
        rep = npuc.compile(src, path, dataset=str(calib_path), quant_type=qt)
        wall = time.perf_counter() - t0
        print(f"  npuc {qt} compile {wall:.2f} s: "
              + ", ".join(f"{k} {v:.2f}" for k, v in rep.stage_seconds.items()))
        if qt == "uint8" and name == "mobilenet_v2":
            compile_report = {"wall": wall, **rep.stage_seconds}
        sessions[f"npuc {qt}"] = npuc.load(path)
    for k, s in sessions.items():
        fallback[k] = list(s.fallback_ops)
        runners[k] = (lambda s: lambda feeds: s.run(feeds))(s)
    # onnxruntime
    osess = {"ort float": ort_session(src)}
    for qt in QTYPES:
        dst = workdir / f"{name}_ort_{qt}.onnx"
        t0 = time.perf_counter()
        ort_quantize(src, dst, calib, qt, workdir)
        print(f"  ort QDQ {qt} quantize_static {time.perf_counter() - t0:.2f} s")
        osess[f"ort QDQ {qt}"] = ort_session(dst)
    for k, s in osess.items():
        runners[k] = (lambda s: lambda feeds: s.run(None, feeds))(s)

    # accuracy on the test samples
    for k, run in runners.items():
        outs = []
        for i in range(args.test):
            r = run({inp: test[inp][i]})
            outs.append(np.asarray(next(iter(r.values())) if isinstance(r, dict) else r[0]))
        outputs[k] = outs
    ref = outputs["ort float"]

    # latency, interleaved
    feeds = {inp: test[inp][0]}
    for _ in range(args.warmup):
        for run in runners.values():
            run(feeds)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.runs):
        for k, run in runners.items():
            t0 = time.perf_counter()
            run(feeds)
            times[k].append(time.perf_counter() - t0)
    rows = []
    for k in runners:
        cos = [cosine(o, r) for o, r in zip(outputs[k], ref)]
        top1 = np.mean([int(np.argmax(o)) == int(np.argmax(r)) for o, r in zip(outputs[k], ref)])
        rows.append({"model": name, "variant": k, "ms": statistics.median(times[k]) * 1e3, "min": min(times[k]) * 1e3,
                     "cos_min": min(cos), "cos_mean": float(np.mean(cos)), "top1": float(top1),
                     "fallback": fallback.get(k, [])})
    return rows, compile_report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calib", type=int, default=16, help="calibration samples")
    ap.add_argument("--test", type=int, default=8, help="accuracy test samples (not used for calibration)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--blas-coretype", metavar="NAME", help="OPENBLAS_CORETYPE for numpy's OpenBLAS (e.g. SkylakeX)")
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {list(MODELS)}")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    logging.getLogger("root").setLevel(logging.ERROR)
    print(f"onnxruntime {ort.__version__}, numpy {np.__version__} (OpenBLAS core {blas_core()}), 1 thread, "
          f"{args.runs} interleaved runs, {args.calib} calibration / {args.test} test samples")
    rows, compile_report = [], None
    with tempfile.TemporaryDirectory(prefix="npuc-bench-quant-") as d:
        for name in names:
            print(f"{name}:")
            r, c = bench_model(name, Path(d), args)
            rows += r
            compile_report = compile_report or c
    print()
    print("ms: median latency (min in parentheses); ratios of medians; cosine and top-1 agreement against the "
          "float model (onnxruntime float) on the test samples")
    print(f"{'model':13s} {'variant':14s} {'ms':>16s} {'/npuc float':>11s} {'/ort float':>10s} {'/ort same q':>11s} "
          f"{'cos min':>8s} {'cos mean':>8s} {'top1':>5s}  fallback ops")
    for name in names:
        mine = {r["variant"]: r for r in rows if r["model"] == name}
        nf, of = mine["npuc float"]["ms"], mine["ort float"]["ms"]
        for v, r in mine.items():
            same = ""
            if v.startswith("npuc ") and v != "npuc float":
                same = f"{r['ms'] / mine['ort QDQ ' + v.split()[1]]['ms']:11.2f}"
            print(f"{name:13s} {v:14s} {r['ms']:8.2f} ({r['min']:5.2f}) {r['ms'] / nf:11.2f} {r['ms'] / of:10.2f} {same:>11s} "
                  f"{r['cos_min']:8.5f} {r['cos_mean']:8.5f} {r['top1']:5.2f}  "
                  f"{r['fallback'] or ('-' if v.startswith('npuc') else '')}")
    if compile_report:
        wall = compile_report.pop("wall")
        print(f"\nnpuc.compile(mobilenet_v2-224, dataset={args.calib} samples, quant_type=uint8): {wall:.2f} s "
              f"(target < 5 s): " + ", ".join(f"{k} {v:.2f} s" for k, v in compile_report.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

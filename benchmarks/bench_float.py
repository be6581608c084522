"""Float32 inference: npuc vs onnxruntime on MobileNetV2-224 and ResNet18-224, one thread.

    python benchmarks/bench_float.py [--runs 30] [--models mobilenet_v2,resnet18] [--profile 10]

Builds the models with ``tests.models.zoo`` (BN folded, as exporters write them; also
``--models yolo_like``, a YOLOv5n-like detector at 320), compiles
each with npuc, then runs npuc and onnxruntime (``intra_op_num_threads=1``, sequential
execution, default graph optimizations) interleaved, run by run, on the same inputs, and
prints per model: the median latency of each, the ratio npuc / onnxruntime (of the medians,
and of the fastest runs, which is steadier on a busy machine), the max abs
difference of the outputs, and the load time of each (open the model file → first result).
Absolute times drift on a shared machine; the ratio is the figure to compare.

``--profile N`` also prints npuc's slowest ops (``Session.profile``, grouped by kernel).

npuc's GEMMs run in numpy's OpenBLAS. ``--blas-coretype NAME`` sets ``OPENBLAS_CORETYPE``
before numpy loads it: OpenBLAS 0.3.x does not recognise every new CPU (it runs its
Haswell AVX2 kernels on AMD Zen 4/5), and ``--blas-coretype SkylakeX`` selects its AVX-512
kernels on such machines. The core in use is printed in the header.
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
import ctypes  # noqa: E402
import glob  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnxruntime as ort  # noqa: E402

import npuc  # noqa: E402
from tests.models.zoo import mobilenet_v2, resnet18, save, yolo_like  # noqa: E402

MODELS = {"mobilenet_v2": lambda: mobilenet_v2(resolution=224, fold_bn=True),
          "resnet18": lambda: resnet18(resolution=224, fold_bn=True),
          "yolo_like": lambda: yolo_like(resolution=320, fold_bn=True)}
DEFAULT_MODELS = ("mobilenet_v2", "resnet18")


def blas_core() -> str:
    """The OpenBLAS kernel family numpy runs on (best effort)."""
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for lib in glob.glob(os.path.join(libdir, "*openblas*")):
        try:
            dll = ctypes.CDLL(lib)
        except OSError:
            continue
        for sym in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                    "openblas_get_corename"):
            f = getattr(dll, sym, None)
            if f is not None:
                f.restype = ctypes.c_char_p
                return f().decode()
    return "unknown"


def ort_session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def bench_model(name: str, workdir: Path, runs: int, warmup: int, profile: int) -> dict:
    model = MODELS[name]()
    onnx_path = workdir / f"{name}.onnx"
    npuc_path = workdir / f"{name}.npuc"
    save(model, onnx_path)
    t0 = time.perf_counter()
    report = npuc.compile(str(onnx_path), str(npuc_path))
    compile_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    feeds = {}
    for inp in model.graph.input:
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)

    t0 = time.perf_counter()
    sess = npuc.load(str(npuc_path))
    y_npuc = list(sess.run(feeds).values())
    load_npuc = time.perf_counter() - t0
    t0 = time.perf_counter()
    osess = ort_session(str(onnx_path))
    y_ort = osess.run(None, feeds)
    load_ort = time.perf_counter() - t0

    for _ in range(warmup):
        sess.run(feeds)
        osess.run(None, feeds)
    tn, to = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(feeds)
        tn.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        osess.run(None, feeds)
        to.append(time.perf_counter() - t0)
    res = {"model": name, "npuc_ms": statistics.median(tn) * 1e3, "ort_ms": statistics.median(to) * 1e3,
           "max_abs_diff": max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(y_npuc, y_ort)),
           "load_npuc_ms": load_npuc * 1e3, "load_ort_ms": load_ort * 1e3, "compile_ms": compile_s * 1e3,
           "fallback_ops": list(sess.fallback_ops), "arena_bytes": report.arena_bytes}
    res["ratio"] = res["npuc_ms"] / res["ort_ms"]
    res["ratio_min"] = min(tn) / min(to)
    if profile:
        per_op = defaultdict(float)
        kernel_of = {o.name: o.kernel for o in sess.program.ops}
        prof = sess.profile(feeds, runs=5)
        for op_name, sec in prof:
            per_op[kernel_of.get(op_name, "?")] += sec
        total = sum(per_op.values())
        print(f"\n  {name}: npuc time per kernel (sum of ops, {total * 1e3:.2f} ms total)")
        for k, sec in sorted(per_op.items(), key=lambda kv: -kv[1]):
            print(f"    {k:24s} {sec * 1e3:8.2f} ms  {100 * sec / total:5.1f}%")
        print(f"  slowest {profile} ops:")
        for op_name, sec in sorted(prof, key=lambda kv: -kv[1])[:profile]:
            print(f"    {sec * 1e3:8.3f} ms  {kernel_of.get(op_name, '?'):18s} {op_name}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print the N slowest npuc ops")
    ap.add_argument("--blas-coretype", metavar="NAME", help="OPENBLAS_CORETYPE for numpy's OpenBLAS (e.g. SkylakeX)")
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {list(MODELS)}")
    print(f"onnxruntime {ort.__version__}, numpy {np.__version__} (OpenBLAS core {blas_core()}), 1 thread, "
          f"{args.runs} interleaved runs")
    rows = []
    with tempfile.TemporaryDirectory(prefix="npuc-bench-") as d:
        for name in names:
            rows.append(bench_model(name, Path(d), args.runs, args.warmup, args.profile))
    print()
    print(f"{'model':14s} {'npuc ms':>9s} {'ort ms':>9s} {'ratio':>6s} {'(min)':>6s} {'max|diff|':>10s} "
          f"{'load npuc':>10s} {'load ort':>9s}  fallback ops")
    for r in rows:
        print(f"{r['model']:14s} {r['npuc_ms']:9.2f} {r['ort_ms']:9.2f} {r['ratio']:6.2f} {r['ratio_min']:6.2f} "
              f"{r['max_abs_diff']:10.2e} {r['load_npuc_ms']:8.0f}ms {r['load_ort_ms']:7.0f}ms  "
              f"{r['fallback_ops'] or '-'}")
    print("(npuc ms / ort ms: medians; ratio = npuc / onnxruntime of the medians, (min) of the fastest runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""k210 compiles of the real models and MobileNetV2-1.0, side by side with the cpu target.

For every model: the k210 outputs vs float (onnxruntime's reference outputs in the data
set), the cpu target's uint8 model vs float, and the k210 model vs a cpu-target run of the
very graph the k210 compile quantizes (what the KPU layers must reproduce); then the
placement (KPU layers, CPU ops, copies), the estimated time on the chip from the cost
model, AI SRAM peak vs its lower bound, and the file size.

    python benchmarks/k210_models.py            # the real models in tests/data
    python benchmarks/k210_models.py --mobilenet  # plus MobileNetV2-1.0 at 224 and 160
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import npuc  # noqa: E402
from npuc.cli import inspect_dict  # noqa: E402

MODELS = {"digits_dwcnn": "model.onnx", "mtcnn_pnet": "model.onnx", "blazeface_short": "model_tf2onnx.onnx",
          "mobilenetv2_digits": "model.onnx", "resnet_digits": "model.onnx"}


def cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def same_quantization_on_cpu(model, out, dataset):
    """The cpu program of the graph the k210 compile quantizes (k210 preparation + config)."""
    from npuc.api import CompileOptions, optimize
    from npuc.format.writer import write_program
    from npuc.frontends import load_model
    from npuc.lowering import lower
    from npuc.quant.driver import quantize_model
    from npuc.targets import get_target
    from npuc.targets.k210.target import k210_options

    opts = k210_options(CompileOptions(target="k210", dataset=dataset))
    g = load_model(model)
    optimize(g, opts)
    write_program(lower(quantize_model(g, opts), get_target("cpu")), out)


def placement_line(path) -> str:
    info = inspect_dict(str(path))
    tot = info["placement"]["totals"]
    kpu = info["memory"]["pools"]["kpu"]
    return (f"{tot['kpu_layers']} KPU layers, {tot['cpu_ops']} CPU ops, {tot['transfers']} copies "
            f"({tot['bytes_moved']:,} B); est. {tot['est_ms']:.2f} ms (KPU {tot['kpu_us'] / 1000:.2f}, CPU "
            f"{tot['cpu_us'] / 1000:.2f}, copies {tot['transfer_us'] / 1000:.2f}); AI SRAM {kpu['bytes']:,} B "
            f"(lower bound {kpu['lower_bound_bytes']:,}); file {Path(path).stat().st_size:,} B")


def real_model(name: str, tmp: Path) -> None:
    d = ROOT / "tests" / "data" / name
    model, calib = d / MODELS[name], str(d / "calib.npz")
    npuc.compile(model, tmp / "k.npuc", target="k210", dataset=calib)
    npuc.compile(model, tmp / "c.npuc", target="cpu", dataset=calib)
    same_quantization_on_cpu(model, tmp / "s.npuc", calib)
    sk, sc, ss = (npuc.load(tmp / f"{x}.npuc") for x in "kcs")
    test, ref = dict(np.load(d / "test.npz")), dict(np.load(d / "ref.npz"))
    n = len(next(iter(test.values())))
    feeds = [{k: v[i] for k, v in test.items()} for i in range(n)]
    rk, rc, rs = ([s.run(f) for f in feeds] for s in (sk, sc, ss))
    print(f"{name}: {placement_line(tmp / 'k.npuc')}")
    for out, r in ref.items():
        gk, gc, gs = (np.stack([x[out] for x in runs]) for runs in (rk, rc, rs))
        worst = min(cos(gk[i], r[i]) for i in range(n))
        same = "identical" if np.array_equal(gk, gs) else f"cosine {cos(gk, gs):.5f}"
        print(f"  {out:16s} k210 vs float {cos(gk, r):.5f} (worst {worst:.4f}) | cpu uint8 vs float "
              f"{cos(gc, r):.5f} | k210 vs cpu, same quantization: {same}")


def mobilenet(res: int, tmp: Path) -> None:
    from tests.models import zoo

    m = zoo.mobilenet_v2(resolution=res)
    zoo.save(m, tmp / "m.onnx")
    np.savez(tmp / "c.npz", **zoo.random_inputs(m, seed=1, n=2))
    npuc.compile(tmp / "m.onnx", tmp / "m.npuc", target="k210", dataset=str(tmp / "c.npz"))
    print(f"MobileNetV2-1.0 {res}x{res}: {placement_line(tmp / 'm.npuc')}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mobilenet", action="store_true", help="also compile MobileNetV2-1.0 at 224 and 160")
    ap.add_argument("--models", nargs="*", default=list(MODELS), help="real models to run (tests/data names)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in args.models:
            real_model(name, tmp)
        if args.mobilenet:
            for res in (224, 160):
                mobilenet(res, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

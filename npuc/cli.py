"""The ``npuc`` command line: a thin layer over :mod:`npuc.api`.

Errors go to stderr with a non-zero exit status (2 for usage errors, 1 for the rest) and
no traceback unless ``--verbose``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from .errors import InputError, NpucError, OptionError


def parse_input_shape(text: str) -> tuple[str, list[int]]:
    """``NAME:D0,D1,...`` → (name, dims). The name may itself contain ':'."""
    name, sep, dims = text.rpartition(":")
    if not sep or not name:
        raise OptionError(f"--input-shape {text!r}: expected NAME:D0,D1,... (e.g. input:1,3,224,224)")
    try:
        shape = [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise OptionError(f"--input-shape {text!r}: dimensions must be integers") from None
    if not shape or any(d <= 0 for d in shape):
        raise OptionError(f"--input-shape {text!r}: dimensions must be positive integers")
    return name, shape


def parse_floats(text: str, what: str, n: int | None = None, integer: bool = False) -> tuple:
    try:
        vals = tuple((int if integer else float)(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise OptionError(f"{what} {text!r}: expected comma-separated numbers") from None
    if not vals or (n is not None and len(vals) != n):
        raise OptionError(f"{what} {text!r}: expected {n or 'one or more'} comma-separated numbers")
    return vals


def _load_npz(path: str) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise InputError(f"{p}: not a readable .npz file ({e})") from e


def split_samples(feeds: dict[str, np.ndarray], specs) -> tuple[int | None, list[dict[str, np.ndarray]]]:
    """Each array is the input's shape (one sample) or has an extra leading axis of N samples."""
    n = None
    for s in specs:
        if s.name not in feeds:
            continue
        a = feeds[s.name]
        if tuple(a.shape) == tuple(s.shape):
            k = None
        elif a.ndim == len(s.shape) + 1 and tuple(a.shape[1:]) == tuple(s.shape):
            k = a.shape[0]
        else:
            raise InputError(f"input {s.name!r}: array shape {list(a.shape)} is neither the input's shape "
                             f"{list(s.shape)} nor [N, {', '.join(map(str, s.shape))}]")
        if k is not None:
            if n is not None and n != k:
                raise InputError(f"inputs have different sample counts ({n} and {k})")
            n = k
    if n is None:
        return None, [feeds]
    samples = []
    for i in range(n):
        d = {}
        for s in specs:
            if s.name in feeds:
                a = feeds[s.name]
                d[s.name] = a[i] if a.ndim == len(s.shape) + 1 else a
        samples.append(d)
    return n, samples


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    import os
    import tempfile

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".npz", dir=str(p.parent))
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------- commands
def cmd_compile(args) -> int:
    from . import api

    shapes = dict(parse_input_shape(s) for s in args.input_shape or [])
    quant = {k: getattr(args, k) for k in ("dataset", "calib_samples", "quant_type", "w_quant_type",
                                          "symmetric_activations", "calibrate_method", "percentile",
                                          "per_tensor_weights", "quant_scheme", "export_quant_scheme",
                                          "auto_mixed_precision", "min_cosine", "mixed_precision_type",
                                          "dump_quant_error", "bias_correction")
             if getattr(args, k, None) not in (None, False)}
    for k in ("input_type", "input_layout", "swap_rb", "letterbox_value"):
        if getattr(args, k, None) not in (None, False):
            quant[k] = getattr(args, k)
    for k, n in (("input_range", 2), ("mean", None), ("std", None), ("image_size", 2)):
        text = getattr(args, k, None)
        if text:
            quant[k] = parse_floats(text, f"--{k.replace('_', '-')}", n, integer=(k == "image_size"))
    report = api.compile(args.model, args.output, target=args.target, input_shapes=shapes, dump_dir=args.dump_dir,
                         progress=not args.json and sys.stderr.isatty(), **quant)
    if args.json:
        print(json.dumps(report.__dict__, indent=2))
    else:
        print(report.summary())
        if args.target == "k210":
            from .format.reader import read_program
            from .targets.k210.report import summary

            print(summary(read_program(args.output)))
    return 0


def run_samples(sess, feeds):
    n, samples = split_samples(feeds, sess.inputs)
    results = [sess.run(s) for s in samples]
    if n is None:
        return results[0]
    return {o.name: np.stack([r[o.name] for r in results]) for o in sess.outputs}


def cmd_run(args) -> int:
    from .runtime.session import load

    sess = load(args.model)
    feeds = _load_npz(args.input)
    out = run_samples(sess, feeds)
    _write_npz(args.output, out)
    print(f"wrote {args.output}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in out.items()))
    return 0


def inspect_dict(path: str) -> dict:
    from .format.reader import read_program

    prog = read_program(path, verify=True)
    tensors = prog.tensors

    def spec(tid):
        t = tensors[tid]
        return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype}

    ops: dict[str, int] = {}
    kernels: dict[str, int] = {}
    for o in prog.ops:
        ops[o.op] = ops.get(o.op, 0) + 1
        kernels[o.kernel] = kernels.get(o.kernel, 0) + 1
    weights = sum(t.nbytes for t in tensors if t.kind == "const")
    info = {
        "file": str(path),
        "target": prog.target,
        "inputs": [spec(i) for i in prog.inputs],
        "outputs": [spec(i) for i in prog.outputs],
        "ops": dict(sorted(ops.items())),
        "op_count": len(prog.ops),
        "ops_imported": prog.meta.get("ops_imported", {}),
        "kernels": dict(sorted(kernels.items())),
        "memory": {
            "arena_bytes": sum(p.size for p in prog.pools),
            "lower_bound_bytes": sum(p.lower_bound for p in prog.pools),
            "weights_bytes": weights,
            "file_bytes": prog.file_bytes,
            "pools": {p.name: {"bytes": p.size, "capacity": p.capacity, "lower_bound_bytes": p.lower_bound,
                               "strategy": p.strategy} for p in prog.pools},
        },
        "meta": prog.meta,
        "op_list": [{"name": o.name, "op": o.op, "kernel": o.kernel} for o in prog.ops],
    }
    if prog.target == "k210":   # where each op runs and why, copies, time; both pools' usage
        from .targets.k210.report import augment_inspect

        augment_inspect(info, prog)
    return info


def cmd_inspect(args) -> int:
    info = inspect_dict(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = info["memory"]
    print(f"{info['file']}  target={info['target']}  ops={info['op_count']}")
    for kind in ("inputs", "outputs"):
        for s in info[kind]:
            print(f"  {kind[:-1]:6s} {s['name']}: {s['dtype']}{s['shape']}")
    print(f"  memory: arena {m['arena_bytes']:,} B (lower bound {m['lower_bound_bytes']:,} B), "
          f"weights {m['weights_bytes']:,} B, file {m['file_bytes']:,} B")
    before = info["ops_imported"]
    if before:
        print(f"  ops:    {sum(before.values())} imported -> {info['op_count']} compiled")
        print("  before: " + ", ".join(f"{k}×{v}" for k, v in before.items()))
    print("  after:  " + ", ".join(f"{k}×{v}" for k, v in info["ops"].items()))
    print("  kernels: " + ", ".join(f"{k}×{v}" for k, v in info["kernels"].items()))
    if info["target"] == "k210":
        from .format.reader import read_program
        from .targets.k210.report import summary

        print(summary(read_program(args.model)))
    return 0


def _random_feeds(specs, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        if s.dtype.kind == "f":
            feeds[s.name] = rng.standard_normal(s.shape).astype(s.dtype)
        elif s.dtype.kind == "b":
            feeds[s.name] = rng.integers(0, 2, s.shape).astype(bool)
        else:
            info = np.iinfo(s.dtype)
            feeds[s.name] = rng.integers(max(info.min, -128), min(info.max, 127) + 1, s.shape).astype(s.dtype)
    return feeds


@contextlib.contextmanager
def thread_limit(n: int | None):
    """Limit BLAS (threadpoolctl) and numba threads to ``n`` inside the block, then restore."""
    if not n:
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(n))
        except ImportError:
            logging.getLogger(__name__).warning("threadpoolctl is not installed: BLAS thread count unchanged")
        try:
            import numba

            before = numba.get_num_threads()
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            stack.callback(numba.set_num_threads, before)
        except Exception:  # numba without threading support: nothing to limit
            pass
        yield


def cmd_bench(args) -> int:
    with thread_limit(args.threads):
        return _bench(args)


def _bench(args) -> int:
    from .runtime.session import load

    t0 = time.perf_counter()
    sess = load(args.model, threads=args.threads)
    feeds = _load_npz(args.input) if args.input else _random_feeds(sess.inputs)
    _, samples = split_samples(feeds, sess.inputs)
    sess.run(samples[0])
    first = time.perf_counter() - t0
    for _ in range(args.warmup):
        sess.run(samples[0])
    times = []
    for i in range(args.runs):
        t = time.perf_counter()
        sess.run(samples[i % len(samples)])
        times.append(time.perf_counter() - t)
    res = {"model": args.model, "runs": args.runs, "threads": args.threads,
           "median_ms": float(np.median(times) * 1e3), "min_ms": float(np.min(times) * 1e3),
           "mean_ms": float(np.mean(times) * 1e3), "load_to_first_result_ms": first * 1e3}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{args.model}: median {res['median_ms']:.3f} ms, min {res['min_ms']:.3f} ms over {args.runs} runs "
              f"(threads={args.threads}); load+first run {res['load_to_first_result_ms']:.1f} ms")
    return 0


def compare_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, dict]:
    rows = {}
    for name, w in want.items():
        g = got[name]
        g64 = np.asarray(g, np.float64).ravel()
        w64 = np.asarray(w, np.float64).ravel()
        denom = np.linalg.norm(g64) * np.linalg.norm(w64)
        cos = float(g64 @ w64 / denom) if denom > 0 else (1.0 if np.array_equal(g64, w64) else 0.0)
        err = np.abs(g64 - w64)
        rel = err / np.maximum(np.abs(w64), 1e-12)
        rows[name] = {"cosine": cos, "max_abs_error": float(err.max(initial=0.0)),
                      "max_rel_error": float(rel.max(initial=0.0)),
                      "mean_abs_error": float(err.mean()) if err.size else 0.0}
    return rows


def run_reference(model_path: str, samples: list[dict[str, np.ndarray]], output_names: list[str]):
    suffix = Path(model_path).suffix.lower()
    if suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise OptionError("npuc compare needs onnxruntime for an .onnx reference: pip install 'npuc[test]'") \
                from None
        so = ort.SessionOptions()
        so.log_severity_level = 3
        ref = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
        names = [i.name for i in ref.get_inputs()]
        outs = []
        for s in samples:
            missing = [n for n in names if n not in s]
            if missing:
                raise InputError(f"reference model input(s) {missing} are not in the input file")
            res = ref.run(output_names, {n: s[n] for n in names})
            outs.append(dict(zip(output_names, res)))
        return outs
    if suffix == ".tflite":
        # the TFLite interpreter: ai-edge-litert, or TensorFlow's when that is what is installed
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            try:
                from tensorflow.lite.python.interpreter import Interpreter  # type: ignore
            except ImportError:
                raise OptionError("npuc compare needs the TFLite interpreter for a .tflite reference: "
                                  "pip install ai-edge-litert (or 'npuc[test]')") from None
        try:
            interp = Interpreter(model_path=model_path, num_threads=1)
        except (ValueError, RuntimeError) as e:
            raise OptionError(f"{model_path}: the TFLite interpreter cannot load it: {e}") from None
        ins = interp.get_input_details()
        by_name = {d["name"]: d for d in interp.get_output_details()}
        unknown = [n for n in output_names if n not in by_name]
        if unknown:
            raise InputError(f"output(s) {unknown} of the compiled model are not outputs of {model_path} "
                             f"(its outputs: {sorted(by_name)})")
        allocated = None
        outs = []
        for s in samples:
            missing = [d["name"] for d in ins if d["name"] not in s]
            if missing:
                raise InputError(f"reference model input(s) {missing} are not in the input file")
            shapes = tuple(tuple(np.shape(s[d["name"]])) for d in ins)
            if shapes != allocated:  # resize only when the sample shapes change
                for d, shp in zip(ins, shapes):
                    if tuple(d["shape"]) != shp:
                        interp.resize_tensor_input(d["index"], list(shp))
                interp.allocate_tensors()
                allocated = shapes
            for d in ins:
                interp.set_tensor(d["index"], np.ascontiguousarray(s[d["name"]], dtype=d["dtype"]))
            interp.invoke()
            outs.append({n: interp.get_tensor(by_name[n]["index"]).copy() for n in output_names})
        return outs
    raise OptionError(f"{model_path}: npuc compare takes an .onnx or .tflite reference model")


def cmd_compare(args) -> int:
    from .runtime.session import load

    sess = load(args.model)
    feeds = _load_npz(args.input)
    n, samples = split_samples(feeds, sess.inputs)
    names = [o.name for o in sess.outputs]
    ref = run_reference(args.reference, samples, names)
    got = [sess.run(s) for s in samples]
    stack = (lambda rs: {k: np.stack([r[k] for r in rs]) for k in names})
    rows = compare_outputs(stack(got), stack(ref))
    if args.json:
        print(json.dumps({"samples": len(samples), "outputs": rows}, indent=2))
    else:
        print(f"{len(samples)} sample(s): npuc {args.model} vs reference {args.reference}")
        print(f"  {'output':24s} {'cosine':>12s} {'max abs err':>12s} {'max rel err':>12s}")
        for k, r in rows.items():
            print(f"  {k:24s} {r['cosine']:12.8f} {r['max_abs_error']:12.4g} {r['max_rel_error']:12.4g}")
    return 0


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .targets import target_names

    p = argparse.ArgumentParser(prog="npuc", description="Neural-network compiler for edge AI accelerators")
    p.add_argument("--verbose", "-v", action="store_true", help="log progress; show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile a model into a .npuc file")
    c.add_argument("model", help="model file (.onnx or .tflite)")
    c.add_argument("-o", "--output", required=True, help="output .npuc file")
    c.add_argument("-t", "--target", default="cpu", choices=target_names())
    c.add_argument("--input-shape", action="append", metavar="NAME:D0,D1,...",
                   help="fix an input's shape (repeatable)")
    c.add_argument("--dump-dir", help="write the graph as text after every pass into this folder")
    c.add_argument("--json", action="store_true", help="print the compile report as JSON")
    q = c.add_argument_group("quantization (any of --dataset, --quant-type, --quant-scheme turns it on)")
    q.add_argument("--dataset", help="calibration data: .npz (keys = input names), or a folder of .npy/.bin/images")
    q.add_argument("--calib-samples", type=int, metavar="N", help="use at most N calibration samples")
    q.add_argument("--quant-type", choices=["uint8", "int8", "int16"], help="activation type (default uint8)")
    q.add_argument("--w-quant-type", choices=["int8", "uint8"], help="weight type (default int8)")
    q.add_argument("--symmetric-activations", action="store_true", help="int8 activations with zero point 0")
    q.add_argument("--calibrate-method", choices=["minmax", "percentile", "kl", "mse"],
                   help="how clipping ranges are chosen (see docs/quantization.md)")
    q.add_argument("--percentile", type=float, help="percentile for --calibrate-method percentile (99.99)")
    q.add_argument("--per-tensor-weights", action="store_true", help="one weight scale per tensor, not per channel")
    q.add_argument("--quant-scheme", metavar="FILE", help="per-tensor precision and ranges (JSON) to apply")
    q.add_argument("--export-quant-scheme", metavar="FILE", help="write the per-tensor precision and ranges used")
    q.add_argument("--auto-mixed-precision", action="store_true",
                   help="keep the fewest layers in higher precision needed to reach --min-cosine")
    q.add_argument("--min-cosine", type=float, help="target output cosine vs float (default 0.99)")
    q.add_argument("--mixed-precision-type", choices=["int16", "float"], help="precision of promoted layers")
    q.add_argument("--dump-quant-error", metavar="DIR", help="write per-layer cosine/relative error (CSV, PNG)")
    q.add_argument("--bias-correction", action="store_true",
                   help="correct each layer's mean output error on the calibration set (slower compile)")
    pre = c.add_argument_group("preprocessing folded into the model (applied in this order)")
    pre.add_argument("--input-type", choices=["uint8", "int8", "float32"], help="type of the raw input")
    pre.add_argument("--input-range", metavar="MIN,MAX", help="float range an integer input is mapped onto")
    pre.add_argument("--input-layout", choices=["NCHW", "NHWC"], help="layout of the raw input")
    pre.add_argument("--swap-rb", action="store_true", help="reverse the channel order (RGB <-> BGR)")
    pre.add_argument("--image-size", metavar="H,W", help="raw image size: letterbox-resize it to the model's")
    pre.add_argument("--letterbox-value", type=float, help="padding value of the letterbox")
    pre.add_argument("--mean", metavar="M[,M,M]", help="subtract per channel")
    pre.add_argument("--std", metavar="S[,S,S]", help="divide per channel")
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run a compiled model on inputs from an .npz file")
    r.add_argument("model")
    r.add_argument("--input", "-i", required=True, help=".npz whose keys are input names")
    r.add_argument("-o", "--output", required=True, help=".npz to write the outputs to")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("inspect", help="describe a compiled model")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)

    b = sub.add_parser("bench", help="measure a compiled model's latency")
    b.add_argument("model")
    b.add_argument("--runs", type=int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--input", "-i", help=".npz inputs (random inputs when omitted)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)

    m = sub.add_parser("compare", help="compare a compiled model against the original model")
    m.add_argument("model")
    m.add_argument("--reference", required=True, help="the original model (.onnx)")
    m.add_argument("--input", "-i", required=True, help=".npz inputs")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except NpucError as e:
        if args.verbose:
            raise
        print(f"npuc {args.command}: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, OptionError) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # a bug in npuc: still no traceback unless asked for
        if args.verbose:
            raise
        print(f"npuc {args.command}: internal error: {type(e).__name__}: {e}\n"
              f"(this is a bug in npuc; rerun with --verbose for the traceback and report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())

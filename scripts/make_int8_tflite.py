"""Write tests/data/tflite_int8: a full-integer int8 TFLite classifier built WITHOUT TensorFlow.

Source: tests/data/digits_dwcnn/model.onnx (a depthwise-separable CNN trained for this
project on scikit-learn's 8x8 digits upsampled to 16x16, BN folded). Its float activations
on calib.npz (onnxruntime) give the activation ranges; the TFLite converter's scheme is
applied with numpy: asymmetric int8 activations (scale = range/255, zero point so that 0.0
is exact), symmetric per-channel int8 weights in [-127, 127] with zero point 0, int32 biases
at scale s_in·s_w[c]. The flatbuffer is written with the `tflite` schema package through the
tests' ModelBuilder (tests/frontends/tflite/tflite_builder.py).

Graph (NHWC, int8 input and output): CONV_2D 3x3 (RELU6) → [PAD → DEPTHWISE 3x3/2 VALID
(RELU6) → CONV_2D 1x1 (RELU6)] ×2 → DEPTHWISE 3x3 SAME (RELU6) → CONV_2D 1x1 → ADD (RELU6,
residual) → MEAN(1,2) → FULLY_CONNECTED → int8 logits. PyTorch's symmetric padding of the
stride-2 convs is an explicit PAD (TFLite's SAME would pad 0 before, 1 after).

The TFLite interpreter (ai-edge-litert) then runs the int8 test digits: inputs.npz holds
them (int8, quantized with the input's scale 1/255 and zero point -128), ref.npz its outputs.

    python scripts/make_int8_tflite.py [--out tests/data/tflite_int8]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "tests" / "data" / "digits_dwcnn"
sys.path.insert(0, str(ROOT))

from tests.frontends.tflite.tflite_builder import ModelBuilder  # noqa: E402

SAME, VALID = 0, 1
RELU6, NONE = 3, 0
I8 = np.int8


def float_activations(model_path: Path, x: np.ndarray) -> tuple[dict, dict]:
    """Every intermediate tensor of the ONNX model on ``x`` (N,1,1,16,16), and the initializers."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.load(str(model_path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    names = [o for n in m.graph.node if n.op_type != "Constant" for o in n.output]
    del m.graph.output[:]
    for n in names:
        m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    acts = {n: [] for n in names}
    for s in x:
        for n, v in zip(names, sess.run(names, {"input": s})):
            acts[n].append(v)
    return {k: np.concatenate(v) for k, v in acts.items()}, inits, m


def act_qparams(a: np.ndarray) -> tuple[np.float32, int]:
    lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    s = (hi - lo) / 255.0 or 1.0
    zp = int(np.clip(np.round(-128 - lo / s), -128, 127))
    return np.float32(s), zp


def weight_qparams(w: np.ndarray, axis: int):
    red = tuple(i for i in range(w.ndim) if i != axis)
    s = (np.abs(w).max(axis=red) / 127.0).astype(np.float32)
    s = np.where(s > 0, s, np.float32(1.0)).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / s.reshape(shape)), -127, 127).astype(I8)
    return q, s


def build(acts: dict, inits: dict, onnx_model) -> bytes:
    b = ModelBuilder()
    nodes = [n for n in onnx_model.graph.node if n.op_type != "Constant"]
    # the float output each quantized tensor stands for (post-activation when a Clip follows)
    x_q = (np.float32(1 / 255), -128)
    x = b.input("input", [1, 16, 16, 1], I8, quant=x_q)
    cur, cur_q = x, x_q
    cur_hw = 16
    produced = {"input": (x, x_q)}
    i = 0
    count = 0
    while i < len(nodes):
        n = nodes[i]
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        if n.op_type == "Conv":
            src, src_q = produced[n.input[0]]
            w, bias = inits[n.input[1]], inits[n.input[2]]
            attrs = {a.name: a for a in n.attribute}
            group = attrs["group"].i
            stride = list(attrs["strides"].ints)[0]
            pad = list(attrs["pads"].ints)[0]
            fused = nxt is not None and nxt.op_type == "Clip" and nxt.input[0] == n.output[0]
            out_name = nxt.output[0] if fused else n.output[0]
            y_q = act_qparams(acts[out_name])
            o = w.shape[0]
            k = w.shape[2]
            in_hw = cur_hw
            padding = SAME
            if stride != 1 and pad:
                # PyTorch pads symmetrically: an explicit PAD (in the input's parameters), then VALID
                padded = b.tensor(f"pad{count}", [1, in_hw + 2 * pad, in_hw + 2 * pad, src_c(b, src)], I8,
                                  quant=src_q)
                b.op("PAD", [src, b.const(f"pad{count}_paddings",
                                          np.array([[0, 0], [pad, pad], [pad, pad], [0, 0]], np.int32))], [padded])
                src, in_hw, padding = padded, in_hw + 2 * pad, VALID
            out_hw = (in_hw + stride - 1) // stride if padding == SAME else (in_hw - k) // stride + 1
            name = f"layer{count}"
            s_in = np.float64(src_q[0])
            if group == 1:
                wt = w.transpose(0, 2, 3, 1)                        # OIHW → OHWI
                wq, ws = weight_qparams(wt, 0)
                wt_t = b.const(f"{name}_w", wq, quant=(ws, np.zeros(o, np.int64), 0))
                op = "CONV_2D"
                opts = {"Padding": padding, "StrideH": stride, "StrideW": stride}
            else:
                wt = w.transpose(1, 2, 3, 0)                        # (C,1,H,W) → 1HWC
                wq, ws = weight_qparams(wt, 3)
                wt_t = b.const(f"{name}_w", wq, quant=(ws, np.zeros(o, np.int64), 3))
                op = "DEPTHWISE_CONV_2D"
                opts = {"Padding": padding, "StrideH": stride, "StrideW": stride, "DepthMultiplier": 1}
            bs = (s_in * ws.astype(np.float64)).astype(np.float32)
            bq = np.clip(np.rint(bias.astype(np.float64) / bs.astype(np.float64)), -2 ** 31 + 1, 2 ** 31 - 1)
            b_t = b.const(f"{name}_b", bq.astype(np.int32), quant=(bs, np.zeros(o, np.int64), 0))
            opts["FusedActivationFunction"] = RELU6 if fused else NONE
            y = b.tensor(name, [1, out_hw, out_hw, o], I8, quant=y_q)
            b.op(op, [src, wt_t, b_t], [y], opts)
            produced[out_name] = (y, y_q)
            produced[n.output[0]] = (y, y_q)
            cur, cur_q, cur_hw = y, y_q, out_hw
            i += 2 if fused else 1
        elif n.op_type == "Add":
            (a, aq), (c, cq) = produced[n.input[0]], produced[n.input[1]]
            fused = nxt is not None and nxt.op_type == "Clip"
            out_name = nxt.output[0] if fused else n.output[0]
            y_q = act_qparams(acts[out_name])
            y = b.tensor(f"add{count}", [1, cur_hw, cur_hw, src_c(b, a)], I8, quant=y_q)
            b.op("ADD", [a, c], [y], {"FusedActivationFunction": RELU6 if fused else NONE})
            produced[out_name] = (y, y_q)
            cur, cur_q = y, y_q
            i += 2 if fused else 1
        elif n.op_type == "ReduceMean":
            src, src_q = produced[n.input[0]]
            y_q = act_qparams(acts[n.output[0]])
            y = b.tensor("mean", [1, src_c(b, src)], I8, quant=y_q)
            b.op("MEAN", [src, b.const("mean_axes", np.array([1, 2], np.int32))], [y], {"KeepDims": False})
            produced[n.output[0]] = (y, y_q)
            cur, cur_q = y, y_q
            i += 1
        elif n.op_type == "Gemm":
            src, src_q = produced[n.input[0]]
            w, bias = inits[n.input[1]], inits[n.input[2]]     # (10, 64), transB
            y_q = act_qparams(acts[n.output[0]])
            wq, ws = weight_qparams(w, 0)
            o = w.shape[0]
            bs = (np.float64(src_q[0]) * ws.astype(np.float64)).astype(np.float32)
            bq = np.rint(bias.astype(np.float64) / bs.astype(np.float64)).astype(np.int32)
            y = b.tensor("logits", [1, o], I8, quant=y_q)
            b.op("FULLY_CONNECTED", [src, b.const("fc_w", wq, quant=(ws, np.zeros(o, np.int64), 0)),
                                     b.const("fc_b", bq, quant=(bs, np.zeros(o, np.int64), 0))], [y],
                 {"FusedActivationFunction": NONE})
            produced[n.output[0]] = (y, y_q)
            cur, cur_q = y, y_q
            i += 1
        else:
            raise SystemExit(f"unexpected ONNX op {n.op_type}")
        count += 1
    return b.build([x], [cur], description="npuc int8 digits classifier (scripts/make_int8_tflite.py)")


def src_c(b: ModelBuilder, t: int) -> int:
    return b.tensors[t]["shape"][-1]


def run_interpreter(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=data, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    res = []
    for s in x:
        it.set_tensor(inp["index"], s)
        it.invoke()
        res.append(it.get_tensor(out["index"]).copy())
    return np.stack(res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "tflite_int8"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calib = np.load(SRC / "calib.npz")["input"]
    test = np.load(SRC / "test.npz")["input"]
    labels = json.loads((SRC / "manifest.json").read_text())["extra"]["test_labels"]
    acts, inits, model = float_activations(SRC / "model.onnx", calib)
    data = build(acts, inits, model)
    (out / "model.tflite").write_bytes(data)
    # int8 test inputs: NCHW [1,1,16,16] floats in [0,1] → NHWC int8 with scale 1/255, zp -128
    xq = np.clip(np.rint(test.transpose(0, 1, 3, 4, 2) * 255.0) - 128, -128, 127).astype(I8)
    ref = run_interpreter(data, xq)
    np.savez(out / "inputs.npz", input=xq)
    np.savez(out / "ref.npz", logits=ref)
    top1 = ref.reshape(len(ref), -1).argmax(-1)
    float_top1 = np.load(SRC / "ref.npz")["logits"].reshape(len(ref), -1).argmax(-1)
    acc = float(np.mean(top1 == np.asarray(labels)))
    print(f"wrote {out}/model.tflite ({len(data)} bytes); interpreter top-1 {top1.tolist()}, labels {labels}, "
          f"accuracy {acc:.3f}, agrees with the float model on {np.mean(top1 == float_top1):.3f}")
    sha = hashlib.sha256(data).hexdigest()
    (out / "README.txt").write_text(f"""tflite_int8
===========

A full-integer (int8 input, weights, activations and output) TFLite classifier of 16x16
digits, written by scripts/make_int8_tflite.py WITHOUT TensorFlow: the weights of
tests/data/digits_dwcnn/model.onnx (trained for this project with torch on scikit-learn's
digits data set, BN folded) quantized with numpy the way TFLite's converter does
(per-channel symmetric int8 weights in [-127, 127], int32 biases at s_in*s_w, asymmetric
int8 activations from the ranges on digits_dwcnn/calib.npz), the flatbuffer written with the
`tflite` schema package (tests/frontends/tflite/tflite_builder.py).

Ops: CONV_2D, PAD, DEPTHWISE_CONV_2D, ADD (residual), MEAN, FULLY_CONNECTED, fused RELU6.

Files:
  model.tflite  {len(data)} bytes, sha256 {sha}
  inputs.npz    input: int8 (8, 1, 16, 16, 1) = digits_dwcnn/test.npz in NHWC, q = round(255*x) - 128
  ref.npz       logits: int8 (8, 1, 10), outputs of the TFLite interpreter (ai-edge-litert,
                builtin kernels without delegates)

Interpreter top-1 on the 8 test digits: {top1.tolist()} (labels {labels}, accuracy {acc:.3f}).

Licence: the weights were trained for this project (same licence as npuc); the digits
data come from scikit-learn (BSD-3-Clause).
Regenerate: python scripts/make_int8_tflite.py
""")


if __name__ == "__main__":
    main()

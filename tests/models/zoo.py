"""Realistic ONNX test networks, built with numpy + onnx only (no torch).

The graphs mimic what ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``, eval
mode) writes for the same PyTorch modules:

* node names follow the module scopes (``/features/features.1/conv/conv.0/conv.0.0/Conv``,
  ``/layer1/layer1.0/relu_1/Relu``, ``/model.9/m_2/MaxPool``), every value produced by a
  node is called ``<node name>_output_<i>``; parameters keep their ``state_dict`` names
  (``layer1.0.conv1.weight``, ``features.0.1.running_var``);
* ``fold_bn=False`` is the unfolded export: ``Conv`` without bias followed by
  ``BatchNormalization`` (epsilon, momentum = 1 - torch momentum), scalars such as the
  ReLU6 bounds and the Resize scales are ``Constant`` nodes;
* ``fold_bn=True`` is what the exporter writes by default in eval mode: BN folded into
  the conv (W' = W·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε)), anonymous ``onnx::Conv_<n>``
  initializers, constants as initializers;
* activations: ``Relu``; ReLU6 as ``Clip(x, min, max)`` with min/max as inputs (opset
  >= 11); SiLU as ``Sigmoid`` + ``Mul``;
* ``x.view(x.size(0), -1)`` and YOLO's ``x.view(bs, na, no, ny, nx)`` are traced as
  ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains, ``nn.Upsample`` as
  ``Resize(nearest, asymmetric, floor)`` with constant scales, ``torch.chunk`` as
  ``Split``;
* static shapes (batch 1) and ``value_info`` for every intermediate value.

Weights are random but "trained-looking".  While the graph is built, a calibration batch
of 16 N(0, 1) images at the model's own resolution is pushed through it in numpy (this is
why builds take ~0.1-2 s).  Convs are He-initialised, then scaled so the pre-BN output
has unit variance on average; the BN running statistics are the measured per-channel
statistics of that output (what a trained network's BN holds), plus a little noise
(mean ± 0.05σ, var × e^{±0.1}), γ ≈ 1 ± 0.1, β ≈ ±0.1.  So running_var is around 1,
running_mean around 0, and every activation stays O(1) through the depth on N(0, 1)
inputs such as ``random_inputs`` gives.  Layers without BN (classifiers, detection
heads, the tiny CNN) are scaled to unit output spread over the batch and centred with
their bias, so outputs depend on the input (top-1 differs from image to image).  Folded
and unfolded variants built with the same seed compute the same function.

Every builder is deterministic in its arguments.  Models pass
``onnx.checker.check_model(full_check=True)`` and run in onnxruntime.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "MODELS",
    "mobilenet_v2",
    "multi_io_branching",
    "random_inputs",
    "resnet18",
    "save",
    "tiny_cnn",
    "yolo_like",
]

_CAL_BATCH = 16  # calibration images (at the model's resolution) that set the BN statistics
_IM2COL_MAX = 1 << 23  # elements of one im2col chunk in the calibration convolution
_MIN_OPSET = 11


# ---------------------------------------------------------------------------------------
# numpy reference computations used while building (calibration only)
# ---------------------------------------------------------------------------------------


def _conv_np(x: np.ndarray, w: np.ndarray, b, stride: int, pad: int, groups: int) -> np.ndarray:
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (wd + 2 * pad - kw) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x

    def tap(i, j):
        return xp[:, :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]

    if groups == 1:
        per_sample = ho * wo * c * kh * kw
        if n > 1 and n * per_sample > _IM2COL_MAX:  # bound the im2col memory
            step = max(1, _IM2COL_MAX // per_sample)
            return np.concatenate(
                [_conv_np(x[i : i + step], w, b, stride, pad, 1) for i in range(0, n, step)]
            )
        if kh == kw == 1:
            cols = xp[:, :, ::stride, ::stride][:, :, :ho, :wo].transpose(0, 2, 3, 1).reshape(-1, c)
        else:
            win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
            win = win[:, :, ::stride, ::stride][:, :, :ho, :wo]  # (n, c, ho, wo, kh, kw)
            cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
        out = (cols @ w.reshape(o, -1).T).reshape(n, ho, wo, o).transpose(0, 3, 1, 2)
        out = np.ascontiguousarray(out, dtype=np.float32)
    elif groups == c == o:  # depthwise
        out = np.zeros((n, o, ho, wo), np.float32)
        for i in range(kh):
            for j in range(kw):
                out += tap(i, j) * w[:, 0, i, j][None, :, None, None]
    else:
        out = np.zeros((n, o, ho, wo), np.float32)
        og = o // groups
        for g in range(groups):
            out[:, g * og : (g + 1) * og] = _conv_np(
                x[:, g * cg : (g + 1) * cg], w[g * og : (g + 1) * og], None, stride, pad, 1
            )
    if b is not None:
        out += b[None, :, None, None]
    return out


def _pool_np(x: np.ndarray, k: int, stride: int, pad: int, mode: str) -> np.ndarray:
    n, c, h, w = x.shape
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill) if pad else x
    taps = [
        xp[:, :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
        for i in range(k)
        for j in range(k)
    ]
    if mode == "max":
        return np.max(taps, axis=0).astype(np.float32)
    return (np.sum(taps, axis=0) / (k * k)).astype(np.float32)  # count_include_pad=1


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _i64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


# ---------------------------------------------------------------------------------------
# graph builder: emits ONNX nodes and carries the calibration value of every tensor
# ---------------------------------------------------------------------------------------


class _T:
    """A tensor of the graph under construction: its ONNX name and calibration value."""

    __slots__ = ("name", "val")

    def __init__(self, name: str, val: np.ndarray):
        self.name = name
        self.val = val

    @property
    def channels(self) -> int:
        return self.val.shape[1]


class _Builder:
    def __init__(self, opset: int, seed: int, fold_bn: bool):
        max_opset = onnx.defs.onnx_opset_version()
        if not isinstance(opset, int) or not _MIN_OPSET <= opset <= max_opset:
            raise ValueError(f"opset must be an int in [{_MIN_OPSET}, {max_opset}], got {opset!r}")
        self.opset = opset
        self.fold_bn = bool(fold_bn)
        self.rng = np.random.default_rng(seed)  # weights and statistics
        self.data_rng = np.random.default_rng([seed, 0xCA1])  # calibration images
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.output_names: list[str] = []
        self._name_count: dict[str, int] = {}
        self._init_names: set[str] = set()
        self._anon = 0
        self._types: dict[str, tuple[np.dtype, list[int]]] = {}

    # -- naming -------------------------------------------------------------------------
    def _node_name(self, scope: str, op: str) -> str:
        base = f"{scope}/{op}"
        k = self._name_count.get(base, 0)
        self._name_count[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    # -- primitives ---------------------------------------------------------------------
    def input(self, name: str, shape: Sequence[int], cal: np.ndarray) -> _T:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return _T(name, _f32(cal))

    def output(self, t: _T, name: str) -> _T:
        """Make ``t`` a graph output called ``name`` (renames the value, like output_names)."""
        old = t.name
        for node in self.nodes:
            for i, v in enumerate(node.output):
                if v == old:
                    node.output[i] = name
            for i, v in enumerate(node.input):
                if v == old:
                    node.input[i] = name
        self.output_names.append(name)
        self._types[name] = self._types.pop(old)
        t.name = name
        return t

    def param(self, arr: np.ndarray, name: str | None = None, op: str = "Conv") -> str:
        if name is None:
            self._anon += 1
            name = f"onnx::{op}_{self._anon}"
        if name in self._init_names:
            raise AssertionError(f"duplicate initializer {name}")
        self._init_names.add(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def add(self, op: str, inputs: Sequence, scope: str, vals: Sequence[np.ndarray], **attrs):
        name = self._node_name(scope, op)
        outs = [f"{name}_output_{i}" for i in range(len(vals))]
        ins = [i.name if isinstance(i, _T) else i for i in inputs]
        self.nodes.append(helper.make_node(op, ins, outs, name=name, **attrs))
        ts = [_T(o, v) for o, v in zip(outs, vals)]
        for t in ts:
            # calibration runs the real resolution with a batch of images: float tensors are
            # batch-first (batch 1 in the graph), integer ones are shape arithmetic
            v = np.asarray(t.val)
            shape = [1, *v.shape[1:]] if v.dtype.kind == "f" else list(v.shape)
            self._types[t.name] = (v.dtype, shape)
        return ts[0] if len(ts) == 1 else ts

    def const(self, arr: np.ndarray, scope: str, op: str) -> str:
        """A literal: a Constant node (unfolded export) or an initializer (folded export)."""
        arr = np.asarray(arr)
        if self.fold_bn:
            return self.param(arr, None, op)
        return self.add("Constant", [], scope, [arr], value=numpy_helper.from_array(arr)).name

    def shape_const(self, arr: np.ndarray, scope: str) -> str:
        """Literals of traced shape arithmetic: Constant nodes in either export mode."""
        arr = np.asarray(arr)
        return self.add("Constant", [], scope, [arr], value=numpy_helper.from_array(arr)).name

    # -- finishing ----------------------------------------------------------------------
    def finish(self, doc: str) -> onnx.ModelProto:
        """Assemble the model; every value gets a static type (batch 1) like torch writes."""

        def info(name):
            dtype, shape = self._types[name]
            return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), shape)

        outputs = [info(n) for n in self.output_names]
        taken = set(self.output_names)
        value_info = [info(o) for n in self.nodes if n.op_type != "Constant" for o in n.output if o not in taken]
        graph = helper.make_graph(
            self.nodes, "main_graph", self.inputs, outputs, initializer=self.initializers, value_info=value_info
        )
        opsets = [helper.make_opsetid("", self.opset)]
        return helper.make_model(
            graph,
            opset_imports=opsets,
            producer_name="npuc-test-zoo",
            producer_version="1",
            doc_string=doc,
            ir_version=helper.find_min_ir_version_for(opsets),
        )


# ---------------------------------------------------------------------------------------
# layers (torch module -> exported nodes)
# ---------------------------------------------------------------------------------------


def _he(rng, shape, fan_in) -> np.ndarray:
    return _f32(rng.standard_normal(shape) * np.sqrt(2.0 / fan_in))


def _conv_attrs(k, stride, pad, groups):
    return dict(
        dilations=[1, 1], group=groups, kernel_shape=[k, k], pads=[pad] * 4, strides=[stride] * 2
    )


def _conv_bn(
    b: _Builder,
    x: _T,
    cout: int,
    k: int,
    stride: int = 1,
    pad: int | None = None,
    groups: int = 1,
    *,
    conv: str,
    bn: str,
    eps: float = 1e-5,
    momentum: float = 0.1,
) -> _T:
    """Conv2d(bias=False) + BatchNorm2d; ``conv``/``bn`` are the module paths."""
    rng = b.rng
    cin = x.channels
    pad = k // 2 if pad is None else pad
    w = _he(rng, (cout, cin // groups, k, k), cin // groups * k * k)
    y = _conv_np(x.val, w, None, stride, pad, groups)
    mu, var = _population_stats(y)
    s = np.float32(1.0 / np.sqrt(float(var.mean()) + 1e-12))
    w *= s
    y *= s
    mu, var = mu * s, np.maximum(var * s * s, 1e-4)
    running_mean = _f32(mu + 0.05 * np.sqrt(var) * rng.standard_normal(cout))
    running_var = _f32(var * np.exp(0.1 * rng.standard_normal(cout)))
    gamma = _f32(1.0 + 0.1 * rng.standard_normal(cout))
    beta = _f32(0.1 * rng.standard_normal(cout))
    scale = _f32(gamma / np.sqrt(running_var + np.float32(eps)))
    out = _f32((y - running_mean[None, :, None, None]) * scale[None, :, None, None] + beta[None, :, None, None])
    cscope = _scope(conv)
    attrs = _conv_attrs(k, stride, pad, groups)
    if b.fold_bn:
        wf = _f32(w * scale[:, None, None, None])
        bf = _f32(beta - running_mean * scale)
        return b.add("Conv", [x, b.param(wf), b.param(bf)], cscope, [out], **attrs)
    c = b.add("Conv", [x, b.param(w, conv + ".weight")], cscope, [y], **attrs)
    bn_params = {"weight": gamma, "bias": beta, "running_mean": running_mean, "running_var": running_var}
    ins = [c] + [b.param(a, f"{bn}.{n}") for n, a in bn_params.items()]
    return b.add("BatchNormalization", ins, _scope(bn), [out], epsilon=eps, momentum=1.0 - momentum)


def _population_stats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (axis 1) mean and the variance expected on an unseen sample.

    The calibration batch has only a few samples, and deep features carry a large
    per-sample component (a channel's offset differs from image to image).  A new
    image deviates from the batch mean by within-sample variance plus
    between-sample variance × (1 + 1/n); the plain batch variance underestimates that
    by (n-1)/n, and the error compounds through dozens of BN layers, so estimate it
    properly.
    """
    n = y.shape[0]
    red = tuple(range(2, y.ndim))
    sm = y.mean(axis=red) if red else y  # (n, C) per-sample means
    mu = sm.mean(axis=0)
    within = ((y - sm.reshape(sm.shape + (1,) * len(red))) ** 2).mean(axis=(0, *red)) if red else 0.0
    between = sm.var(axis=0) * n / max(n - 1, 1)
    return _f32(mu), _f32(within + between * (1.0 + 1.0 / n))


def _calibrated_weights(b: _Builder, y_fn: Callable[[np.ndarray], np.ndarray], w: np.ndarray):
    """Scale ``w`` so y = y_fn(w) has unit spread; return (w, bias) centring y."""
    mu, var = _population_stats(y_fn(w))
    s = np.float32(1.0 / max(float(np.sqrt(var).mean()), 1e-6))
    w = _f32(w * s)
    bias = _f32(-mu * s + 0.1 * b.rng.standard_normal(w.shape[0]))
    return w, bias


def _conv_bias(b: _Builder, x: _T, cout: int, k: int, stride=1, pad=None, *, module: str) -> _T:
    """Conv2d(bias=True) not followed by BN (heads, small nets)."""
    cin = x.channels
    pad = k // 2 if pad is None else pad
    w0 = _he(b.rng, (cout, cin, k, k), cin * k * k)
    w, bias = _calibrated_weights(b, lambda w_: _conv_np(x.val, w_, None, stride, pad, 1), w0)
    y = _conv_np(x.val, w, bias, stride, pad, 1)
    names = (b.param(w, module + ".weight"), b.param(bias, module + ".bias"))
    return b.add("Conv", [x, *names], _scope(module), [y], **_conv_attrs(k, stride, pad, 1))


def _gemm(b: _Builder, x: _T, nout: int, *, module: str) -> _T:
    """nn.Linear -> Gemm(transB=1)."""
    nin = x.val.shape[1]
    w0 = _f32(b.rng.standard_normal((nout, nin)) / np.sqrt(nin))
    w, bias = _calibrated_weights(b, lambda w_: x.val @ w_.T, w0)
    y = _f32(x.val @ w.T + bias)
    names = (b.param(w, module + ".weight"), b.param(bias, module + ".bias"))
    return b.add("Gemm", [x, *names], _scope(module), [y], alpha=1.0, beta=1.0, transB=1)


def _scope(module: str) -> str:
    """torch scope of a module path: "features.1.conv.0.0" -> /features/features.1/conv/conv.0/conv.0.0."""
    if not module:
        return ""
    parts: list[str] = []
    prev = ""
    names = module.split(".")
    if len(names) > 1 and names[0] == "model" and names[1].isdigit():
        # ultralytics iterates DetectionModel.model itself, so the Sequential's own scope
        # is not recorded: "model.9.cv1.conv" -> /model.9/cv1/conv
        names = [f"model.{names[1]}", *names[2:]]
    for p in names:
        if p.isdigit() and prev:
            prev = f"{prev}.{p}"
        else:
            prev = p
        parts.append(prev)
    return "/" + "/".join(parts)


def _relu(b: _Builder, x: _T, module: str) -> _T:
    return b.add("Relu", [x], _scope(module), [np.maximum(x.val, 0)])


def _relu6(b: _Builder, x: _T, module: str) -> _T:
    scope = _scope(module)
    lo = b.const(np.array(0.0, np.float32), scope, "Clip")
    hi = b.const(np.array(6.0, np.float32), scope, "Clip")
    return b.add("Clip", [x, lo, hi], scope, [np.clip(x.val, 0, 6)])


def _silu(b: _Builder, x: _T, module: str) -> _T:
    scope = _scope(module)
    s = b.add("Sigmoid", [x], scope, [_sigmoid(x.val)])
    return b.add("Mul", [x, s], scope, [x.val * s.val])


def _add(b: _Builder, x: _T, y: _T, scope: str) -> _T:
    return b.add("Add", [x, y], scope, [x.val + y.val])


def _mul(b: _Builder, x: _T, y: _T, scope: str) -> _T:
    return b.add("Mul", [x, y], scope, [x.val * y.val])


def _concat(b: _Builder, xs: Sequence[_T], scope: str, axis: int = 1) -> _T:
    return b.add("Concat", list(xs), scope, [np.concatenate([x.val for x in xs], axis)], axis=axis)


def _maxpool(b: _Builder, x: _T, k: int, stride: int, pad: int, module: str) -> _T:
    return b.add(
        "MaxPool", [x], _scope(module), [_pool_np(x.val, k, stride, pad, "max")],
        ceil_mode=0, dilations=[1, 1], kernel_shape=[k, k], pads=[pad] * 4, strides=[stride] * 2,
    )


def _avgpool(b: _Builder, x: _T, k: int, stride: int, module: str) -> _T:
    return b.add(
        "AveragePool", [x], _scope(module), [_pool_np(x.val, k, stride, 0, "avg")],
        ceil_mode=0, count_include_pad=1, kernel_shape=[k, k], pads=[0] * 4, strides=[stride] * 2,
    )


def _gap(b: _Builder, x: _T, scope: str) -> _T:
    return b.add("GlobalAveragePool", [x], scope, [_f32(x.val.mean(axis=(2, 3), keepdims=True))])


def _flatten(b: _Builder, x: _T, scope: str) -> _T:
    return b.add("Flatten", [x], scope, [x.val.reshape(x.val.shape[0], -1)], axis=1)


def _unsqueeze0(b: _Builder, x: _T, scope: str) -> _T:
    val = np.asarray(x.val).reshape(1)
    if b.opset >= 13:
        axes = b.shape_const(_i64([0]), scope)
        return b.add("Unsqueeze", [x, axes], scope, [val])
    return b.add("Unsqueeze", [x], scope, [val], axes=[0])


def _view(b: _Builder, x: _T, dims: Sequence, scope: str) -> _T:
    """x.view(*dims) as traced by torch: each ``("size", i)`` entry is ``x.size(i)``
    (Shape -> Gather -> Unsqueeze), each int a Constant, all Concat'ed into the shape."""
    pieces = []
    for d in dims:
        if isinstance(d, tuple):
            shp = b.add("Shape", [x], scope, [_i64(x.val.shape)])
            idx = b.shape_const(_i64(d[1]), scope)
            g = b.add("Gather", [shp, idx], scope, [shp.val[d[1]]], axis=0)
            pieces.append(_unsqueeze0(b, g, scope))
        else:
            pieces.append(_T(b.shape_const(_i64([d]), scope), _i64([d])))
    shape = b.add("Concat", pieces, scope, [np.concatenate([p.val for p in pieces])], axis=0)
    attrs = {"allowzero": 0} if b.opset >= 14 else {}
    return b.add("Reshape", [x, shape], scope, [x.val.reshape(tuple(shape.val))], **attrs)


def _transpose(b: _Builder, x: _T, perm: Sequence[int], scope: str) -> _T:
    return b.add("Transpose", [x], scope, [np.ascontiguousarray(x.val.transpose(perm))], perm=list(perm))


def _upsample2x(b: _Builder, x: _T, module: str) -> _T:
    """nn.Upsample(scale_factor=2, mode="nearest")."""
    scope = _scope(module)
    if b.opset >= 13:
        roi = ""
    else:
        roi = b.const(np.zeros(0, np.float32), scope, "Resize")
    scales = b.const(_f32([1, 1, 2, 2]), scope, "Resize")
    val = x.val.repeat(2, axis=2).repeat(2, axis=3)
    return b.add(
        "Resize", [x, roi, scales], scope, [val],
        coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75, mode="nearest", nearest_mode="floor",
    )


def _check_res(resolution: int, multiple: int, name: str) -> None:
    if not isinstance(resolution, int) or resolution < 32 or resolution % multiple:
        what = "an int >= 32" if multiple == 1 else f"a multiple of {multiple}"
        raise ValueError(f"{name}: resolution must be {what}, got {resolution!r}")


def _image_input(b: _Builder, resolution: int, name: str = "input") -> _T:
    cal = b.data_rng.standard_normal((_CAL_BATCH, 3, resolution, resolution))
    return b.input(name, [1, 3, resolution, resolution], cal)


# ---------------------------------------------------------------------------------------
# MobileNetV2 (torchvision)
# ---------------------------------------------------------------------------------------


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def mobilenet_v2(width=1.0, resolution=224, num_classes=1000, seed=0, fold_bn=False, opset=17) -> onnx.ModelProto:
    """torchvision.models.mobilenet_v2(width_mult=width) at ``[1, 3, resolution, resolution]``."""
    _check_res(resolution, 1, "mobilenet_v2")
    if not width > 0:
        raise ValueError(f"mobilenet_v2: width must be > 0, got {width!r}")
    b = _Builder(opset, seed, fold_bn)
    x = _image_input(b, resolution)

    def cna(x, cout, k, stride, groups, path):  # Conv2dNormActivation(..., ReLU6)
        y = _conv_bn(b, x, cout, k, stride, (k - 1) // 2, groups, conv=f"{path}.0", bn=f"{path}.1")
        return _relu6(b, y, f"{path}.2")

    # t (expansion), c (channels), n (blocks), s (first stride), as in torchvision
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
               [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
    cin = _make_divisible(32 * width)
    last = _make_divisible(1280 * max(1.0, width))
    x = cna(x, cin, 3, 2, 1, "features.0")
    idx = 1
    for t, c, n, s in setting:
        cout = _make_divisible(c * width)
        for i in range(n):
            stride = s if i == 0 else 1
            path = f"features.{idx}.conv"
            hidden = int(round(cin * t))
            h, j = x, 0
            if t != 1:
                h = cna(h, hidden, 1, 1, 1, f"{path}.0")
                j = 1
            h = cna(h, hidden, 3, stride, hidden, f"{path}.{j}")
            h = _conv_bn(b, h, cout, 1, 1, 0, conv=f"{path}.{j + 1}", bn=f"{path}.{j + 2}")
            if stride == 1 and cin == cout:
                h = _add(b, x, h, _scope(f"features.{idx}"))
            x, cin, idx = h, cout, idx + 1
    x = cna(x, last, 1, 1, 1, f"features.{idx}")
    x = _gap(b, x, "")
    x = _flatten(b, x, "")
    x = _gemm(b, x, num_classes, module="classifier.1")
    b.output(x, "output")
    return b.finish(f"torchvision mobilenet_v2(width_mult={width}) {resolution}x{resolution}, fold_bn={fold_bn}")


# ---------------------------------------------------------------------------------------
# ResNet-18 (torchvision)
# ---------------------------------------------------------------------------------------


def resnet18(resolution=224, num_classes=1000, seed=0, fold_bn=False, opset=17) -> onnx.ModelProto:
    """torchvision.models.resnet18() at ``[1, 3, resolution, resolution]``."""
    _check_res(resolution, 1, "resnet18")
    b = _Builder(opset, seed, fold_bn)
    x = _image_input(b, resolution)
    x = _conv_bn(b, x, 64, 7, 2, 3, conv="conv1", bn="bn1")
    x = _relu(b, x, "relu")
    x = _maxpool(b, x, 3, 2, 1, "maxpool")
    cin = 64
    for li, (c, s) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        for bi in range(2):
            stride = s if bi == 0 else 1
            p = f"layer{li}.{bi}"
            h = _conv_bn(b, x, c, 3, stride, 1, conv=f"{p}.conv1", bn=f"{p}.bn1")
            h = _relu(b, h, f"{p}.relu")
            h = _conv_bn(b, h, c, 3, 1, 1, conv=f"{p}.conv2", bn=f"{p}.bn2")
            idn = x
            if stride != 1 or cin != c:
                idn = _conv_bn(b, x, c, 1, stride, 0, conv=f"{p}.downsample.0", bn=f"{p}.downsample.1")
            h = _add(b, h, idn, _scope(p))
            x = _relu(b, h, f"{p}.relu_1")  # the block's relu module, second call
            cin = c
    x = _gap(b, x, _scope("avgpool"))
    x = _flatten(b, x, "")
    x = _gemm(b, x, num_classes, module="fc")
    b.output(x, "output")
    return b.finish(f"torchvision resnet18 {resolution}x{resolution}, fold_bn={fold_bn}")


# ---------------------------------------------------------------------------------------
# YOLOv5n-like detector
# ---------------------------------------------------------------------------------------


def yolo_like(resolution=320, num_classes=20, seed=0, fold_bn=False, opset=17) -> onnx.ModelProto:
    """YOLOv5n (v6.0 yaml: depth 0.33, width 0.25) with ``num_classes`` classes.

    Conv = Conv2d(bias=False) + BN(eps=1e-3, momentum=0.03) + SiLU (Sigmoid, Mul); C3 blocks
    with Bottleneck residual Adds and Concat; SPPF (3 chained MaxPool 5x5 + Concat); PAN neck
    with Resize(nearest, x2) + Concat; Detect: a 1x1 conv per level then
    ``view(bs, 3, nc+5, ny, nx).permute(0, 1, 3, 4, 2)``.  Outputs ``output0..2`` at strides
    8, 16, 32: ``[1, 3, res/s, res/s, num_classes + 5]`` (raw logits, as in training mode).
    """
    _check_res(resolution, 32, "yolo_like")
    b = _Builder(opset, seed, fold_bn)
    x = _image_input(b, resolution, "images")

    def conv(x, cout, k, s, m, p=None):  # models/common.py Conv, autopad k//2
        p = k // 2 if p is None else p
        y = _conv_bn(b, x, cout, k, s, p, conv=f"{m}.conv", bn=f"{m}.bn", eps=1e-3, momentum=0.03)
        return _silu(b, y, f"{m}.act")

    def c3(x, cout, n, shortcut, m):
        c_ = cout // 2
        y1 = conv(x, c_, 1, 1, f"{m}.cv1")
        for i in range(n):
            h = conv(y1, c_, 1, 1, f"{m}.m.{i}.cv1")
            h = conv(h, c_, 3, 1, f"{m}.m.{i}.cv2")
            y1 = _add(b, y1, h, _scope(f"{m}.m.{i}")) if shortcut else h
        y2 = conv(x, c_, 1, 1, f"{m}.cv2")
        return conv(_concat(b, [y1, y2], _scope(m)), cout, 1, 1, f"{m}.cv3")

    def sppf(x, cout, m):
        c_ = x.channels // 2
        x = conv(x, c_, 1, 1, f"{m}.cv1")
        ys = [x]
        for i in range(3):  # the same nn.MaxPool2d module called three times
            ys.append(_maxpool(b, ys[-1], 5, 1, 2, f"{m}.m" + (f"_{i}" if i else "")))
        return conv(_concat(b, ys, _scope(m)), cout, 1, 1, f"{m}.cv2")

    # backbone ("model.<i>" as in the yaml)
    x = conv(x, 16, 6, 2, "model.0", p=2)  # P1/2 (6x6 stem, pad 2)
    x = conv(x, 32, 3, 2, "model.1")  # P2/4
    x = c3(x, 32, 1, True, "model.2")
    x = conv(x, 64, 3, 2, "model.3")  # P3/8
    p3 = c3(x, 64, 2, True, "model.4")
    x = conv(p3, 128, 3, 2, "model.5")  # P4/16
    p4 = c3(x, 128, 3, True, "model.6")
    x = conv(p4, 256, 3, 2, "model.7")  # P5/32
    x = c3(x, 256, 1, True, "model.8")
    x = sppf(x, 256, "model.9")
    # head
    h10 = conv(x, 128, 1, 1, "model.10")
    x = _upsample2x(b, h10, "model.11")
    x = _concat(b, [x, p4], _scope("model.12"))
    x = c3(x, 128, 1, False, "model.13")
    h14 = conv(x, 64, 1, 1, "model.14")
    x = _upsample2x(b, h14, "model.15")
    x = _concat(b, [x, p3], _scope("model.16"))
    o3 = c3(x, 64, 1, False, "model.17")  # P3/8-small
    x = conv(o3, 64, 3, 2, "model.18")
    x = _concat(b, [x, h14], _scope("model.19"))
    o4 = c3(x, 128, 1, False, "model.20")  # P4/16-medium
    x = conv(o4, 128, 3, 2, "model.21")
    x = _concat(b, [x, h10], _scope("model.22"))
    o5 = c3(x, 256, 1, False, "model.23")  # P5/32-large
    # Detect
    na, no = 3, num_classes + 5
    scope = _scope("model.24")
    for i, feat in enumerate((o3, o4, o5)):
        y = _conv_bias(b, feat, na * no, 1, 1, 0, module=f"model.24.m.{i}")
        y = _view(b, y, [("size", 0), na, no, ("size", 2), ("size", 3)], scope)
        y = _transpose(b, y, (0, 1, 3, 4, 2), scope)
        b.output(y, f"output{i}")
    return b.finish(f"YOLOv5n-like detector {resolution}x{resolution}, {num_classes} classes, fold_bn={fold_bn}")


# ---------------------------------------------------------------------------------------
# multi-input / multi-output branching network
# ---------------------------------------------------------------------------------------


def multi_io_branching(seed=0, opset=17, fold_bn=False) -> onnx.ModelProto:
    """Two inputs (``image`` [1,3,64,64], ``vector`` [1,16]), three outputs.

    image -> stem conv -> two parallel convs (3x3, 1x1) -> Concat -> strided conv + BN,
    Add with an AveragePool shortcut -> Relu -> torch.chunk(2) (Split):
      half 1: SE-style gate (ReduceMean keepdims -> 1x1 conv -> Sigmoid -> Mul) -> 1x1 conv
              -> Sigmoid -> permute(0, 2, 3, 1) (Transpose)            => ``mask`` [1,16,16,1]
      half 2: MaxPool -> x.view(x.size(0), -1) (Shape/Gather/Unsqueeze/Concat/Reshape)
    features -> GlobalAveragePool -> Flatten, gated by Sigmoid(Gemm(vector)) (Mul), plus
    Relu(Gemm(vector)) (Add) -> Concat with the flattened half 2 -> Gemm -> Relu
                                                                         => ``embedding`` [1,64]
    embedding -> Gemm -> Softmax                                         => ``probs`` [1,10]
    """
    b = _Builder(opset, seed, fold_bn)
    img = b.input("image", [1, 3, 64, 64], b.data_rng.standard_normal((_CAL_BATCH * 2, 3, 64, 64)))
    vec = b.input("vector", [1, 16], b.data_rng.standard_normal((_CAL_BATCH * 2, 16)))

    x = _relu(b, _conv_bn(b, img, 16, 3, 2, 1, conv="stem.0", bn="stem.1"), "stem.2")  # 32x32
    a = _relu(b, _conv_bn(b, x, 16, 3, 1, 1, conv="branch_a.0", bn="branch_a.1"), "branch_a.2")
    c = _relu(b, _conv_bn(b, x, 16, 1, 1, 0, conv="branch_b.0", bn="branch_b.1"), "branch_b.2")
    x = _concat(b, [a, c], "")  # [1,32,32,32]
    d = _conv_bn(b, x, 32, 3, 2, 1, conv="down.0", bn="down.1")  # 16x16
    sc = _avgpool(b, x, 2, 2, "shortcut")
    feat = _relu(b, _add(b, d, sc, ""), "act")

    # torch.chunk(feat, 2, dim=1)
    half = feat.channels // 2
    vals = np.split(feat.val, 2, axis=1)
    if b.opset >= 13:
        split = b.shape_const(_i64([half, half]), "")
        f1, f2 = b.add("Split", [feat, split], "", vals, axis=1)
    else:
        f1, f2 = b.add("Split", [feat], "", vals, axis=1, split=[half, half])

    # half 1: squeeze-excitation gate then a 1-channel mask, NHWC
    if b.opset >= 18:
        axes = b.shape_const(_i64([2, 3]), _scope("se"))
        s = b.add("ReduceMean", [f1, axes], _scope("se"), [f1.val.mean(axis=(2, 3), keepdims=True)], keepdims=1)
    else:
        s = b.add("ReduceMean", [f1], _scope("se"), [f1.val.mean(axis=(2, 3), keepdims=True)], axes=[2, 3], keepdims=1)
    s = _conv_bias(b, s, f1.channels, 1, 1, 0, module="se.fc")
    s = b.add("Sigmoid", [s], _scope("se"), [_sigmoid(s.val)])
    g = _mul(b, f1, s, "")
    m = _conv_bias(b, g, 1, 1, 1, 0, module="mask_head")
    m = b.add("Sigmoid", [m], "", [_sigmoid(m.val)])
    m = _transpose(b, m, (0, 2, 3, 1), "")
    b.output(m, "mask")

    # half 2: pool and flatten the way x.view(x.size(0), -1) is traced
    f2 = _maxpool(b, f2, 2, 2, 0, "pool")  # [1,16,8,8]
    flat = _view(b, f2, [("size", 0), -1], "")  # [1,1024]

    # vector branch and merges
    gap = _flatten(b, _gap(b, feat, ""), "")  # [1,32]
    gate = _gemm(b, vec, 32, module="gate")
    gate = b.add("Sigmoid", [gate], "", [_sigmoid(gate.val)])
    v = _relu(b, _gemm(b, vec, 32, module="vec_fc"), "vec_act")
    merged = _add(b, _mul(b, gap, gate, ""), v, "")
    z = _concat(b, [flat, merged], "", axis=1)  # [1,1056]
    emb = _relu(b, _gemm(b, z, 64, module="fc1"), "fc1_act")
    logits = _gemm(b, emb, 10, module="fc2")
    e = np.exp(logits.val - logits.val.max(axis=1, keepdims=True))
    probs = b.add("Softmax", [logits], "", [_f32(e / e.sum(axis=1, keepdims=True))], axis=1)
    b.output(probs, "probs")
    b.output(emb, "embedding")
    return b.finish("multi-input multi-output branching network")


# ---------------------------------------------------------------------------------------
# tiny CNN
# ---------------------------------------------------------------------------------------


def tiny_cnn(seed=0, opset=17) -> onnx.ModelProto:
    """[1,3,32,32] -> Conv(8)+Relu+MaxPool -> Conv(16)+Relu+MaxPool -> Flatten -> Gemm(10)."""
    b = _Builder(opset, seed, fold_bn=False)
    x = _image_input(b, 32)
    x = _relu(b, _conv_bias(b, x, 8, 3, 1, 1, module="conv1"), "relu1")
    x = _maxpool(b, x, 2, 2, 0, "pool1")
    x = _relu(b, _conv_bias(b, x, 16, 3, 1, 1, module="conv2"), "relu2")
    x = _maxpool(b, x, 2, 2, 0, "pool2")
    x = _flatten(b, x, "")
    x = _gemm(b, x, 10, module="fc")
    b.output(x, "output")
    return b.finish("tiny CNN")


# ---------------------------------------------------------------------------------------
# registry and helpers
# ---------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., onnx.ModelProto]] = {
    "mobilenet_v2": mobilenet_v2,
    "resnet18": resnet18,
    "yolo_like": yolo_like,
    "multi_io": multi_io_branching,
    "tiny_cnn": tiny_cnn,
}


def save(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    onnx.save(model, os.fspath(path))


def random_inputs(model: onnx.ModelProto, seed: int = 0, n: int | None = None) -> dict[str, np.ndarray]:
    """N(0, 1) float32 data (random ints / bools for such inputs) for every graph input.

    Shapes are the model's input shapes (symbolic dims become 1); with ``n`` the arrays
    get a leading axis of length ``n`` (n samples, e.g. a calibration set).
    """
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    out: dict[str, np.ndarray] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        if n is not None:
            shape = [n, *shape]
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dtype, np.floating):
            a = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            a = rng.random(shape) < 0.5
        else:
            a = rng.integers(0, 10, shape).astype(dtype)
        out[vi.name] = a
    return out

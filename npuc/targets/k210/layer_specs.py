"""Quantized convolutions in KPU terms: :class:`ConvSpec` from ``QConv`` / ``QGemm`` nodes,
fused lookup-table activations, the split by output channels, and the KPU layer programs.

Used by :class:`npuc.targets.k210.lower.K210Lowering`; each ``*_spec`` function returns the
description or the reason the node cannot be a KPU layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...ir import Node, Value
from .layout import channel_offset
from .spec import KERNEL_SIZES, MAX_IN_CHANNELS, MAX_LOADS, MAX_OUT_CHANNELS, WEIGHTS_LOAD_LIMIT, KpuPool

W_ZERO_POINT = 128            #: int8 symmetric weights w become uint8 w + 128 on the KPU


@dataclass
class ConvSpec:
    """A quantized convolution (or fully-connected layer) in KPU terms."""

    name: str
    k: int
    stride: int
    pads: tuple[int, int, int, int]          # top, left, bottom, right
    depthwise: bool
    c: int
    m: int
    h: int
    w: int
    x_q: tuple[float, int]
    y_q: tuple[float, int]
    w_int8: np.ndarray                       # (M, C/g, k, k) int8, symmetric
    w_scales: np.ndarray                     # (M,) float64
    bias_q: np.ndarray                       # (M,) int64 at scale s_x · s_w
    act_min: int
    act_max: int
    alpha: float | None                      # leaky slope fused by the quantizer
    gemm: bool = False
    act_spec: dict | None = None             # a fused lookup-table activation (sigmoid, swish...)
    s2d: tuple | None = None                 # pads of a k×k/2 conv run as 3×3 on a space-to-depth upload
    slopes: np.ndarray | None = None         # per-channel PReLU slopes (one table region per slope)

    @property
    def macs(self) -> int:
        ho = (self.h + self.pads[0] + self.pads[2] - self.k) // self.stride + 1
        wo = (self.w + self.pads[1] + self.pads[3] - self.k) // self.stride + 1
        return self.m * ho * wo * (1 if self.depthwise else self.c) * self.k * self.k


def _scalar_q(v: Value) -> tuple[float, int] | None:
    q = v.quant
    if q is None or q.axis is not None:
        return None
    s = np.asarray(q.scale, np.float64).reshape(-1)
    z = np.asarray(q.zero_point).reshape(-1)
    if s.size != 1 or z.size != 1:
        return None
    return float(s[0]), int(z[0])


def _leaky_alpha(a: dict, m: int) -> tuple[float | np.ndarray | None, str | None]:
    """The slope of a fused PRelu/LeakyRelu (``neg_multiplier``): a float when one slope
    serves all channels, else the per-channel slopes (``(M,)`` array)."""
    if a.get("neg_multiplier") is None:
        return None, None
    mult = np.broadcast_to(np.asarray(a["multiplier"], np.float64), (m,))
    sh = np.broadcast_to(np.asarray(a["shift"], np.float64), (m,))
    nm = np.broadcast_to(np.asarray(a["neg_multiplier"], np.float64), (m,))
    ns = np.broadcast_to(np.asarray(a["neg_shift"], np.float64), (m,))
    pos = mult * np.exp2(-sh)
    neg = nm * np.exp2(-ns)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(pos > 0, neg / pos, 0.0)
    if alpha.size and np.ptp(alpha) <= 1e-6 * max(1.0, float(np.abs(alpha).max())):
        return float(alpha[0]), None
    # the same float slope in channels with different scales gives ratios equal to ~1e-9:
    # one table region per slope, not per rounding of the multipliers
    return np.ascontiguousarray(np.round(alpha, 7), np.float64), None


def _slopes_spec(alpha, lo: int, hi: int) -> tuple[float | None, np.ndarray | None, str | None]:
    """``(alpha, slopes, reason)`` of a fused two-slope activation with clamp bounds lo..hi."""
    if isinstance(alpha, np.ndarray):
        if lo > 0 or hi < 255:
            return None, None, "per-channel PReLU with a clamp (one of them per layer on the KPU)"
        return None, alpha, None
    return alpha, None, None


def conv_spec(n: Node) -> ConvSpec | str:
    """The KPU description of a ``QConv`` node, or the reason it cannot be a KPU layer."""
    from ...ops.nn import conv_node_geometry

    x, w = n.inputs[0], n.inputs[1]
    b = n.input(2)
    y = n.outputs[0]
    a = n.attrs
    if x.dtype != np.uint8 or y.dtype != np.uint8:
        return f"{x.dtype} → {y.dtype} activations (the KPU computes uint8 feature maps)"
    if x.rank != 4:
        return f"{x.rank - 2}-D convolution (the KPU convolves 2-D maps)"
    if x.shape[0] != 1:
        return f"batch {x.shape[0]} (the KPU lowering takes batch 1)"
    if not w.is_const or w.dtype != np.int8 or (b is not None and not b.is_const):
        return "weights are not constant int8 (the KPU needs symmetric weights: zero point 128 as uint8)"
    if np.any(np.asarray(a.get("w_zp", 0)) != 0):
        return "asymmetric weights (per-channel zero points; the KPU has one weight zero point)"
    geo = conv_node_geometry(x.shape, w.shape, **a)
    kh, kw = geo.kernel
    if kh != kw or kh not in KERNEL_SIZES:
        return f"kernel {kh}x{kw} (the KPU has 1x1 and 3x3)"
    if any(d != 1 for d in geo.dilations):
        return f"dilation {list(geo.dilations)} (the KPU has no dilated convolution)"
    sh, sw = geo.strides
    if sh != sw or sh not in (1, 2):
        return f"stride {list(geo.strides)} (the KPU does stride 1, and 2 through a select pool)"
    c, m = x.shape[1], w.shape[0]
    g = int(a["group"])
    depthwise = g > 1
    if depthwise and not (g == c == m):
        return f"grouped convolution (group {g}; the KPU has normal and depthwise layers)"
    if c > MAX_IN_CHANNELS and not depthwise:
        return f"{c} input channels > {MAX_IN_CHANNELS} (the KPU's limit; splitting by input channels " \
               "would need the partial sums on the CPU)"
    xq, yq = _scalar_q(x), _scalar_q(y)
    if xq is None or yq is None:
        return "per-channel activation quantization"
    alpha, why = _leaky_alpha(a, m)
    alpha, slopes, why = _slopes_spec(alpha, int(a["act_min"]), int(a["act_max"])) if not why else (0, 0, why)
    if why:
        return why
    wq = w.quant
    scales = np.broadcast_to(np.asarray(wq.scale, np.float64).reshape(-1), (m,)).copy()
    bias = np.zeros(m, np.int64) if b is None else np.asarray(b.const, np.int64).reshape(m)
    pads = (geo.pads_begin[0], geo.pads_begin[1], geo.pads_end[0], geo.pads_end[1])
    return ConvSpec(n.name, kh, sh, pads, depthwise, c, m, x.shape[2], x.shape[3], xq, yq,
                    np.asarray(w.const, np.int8), scales, bias, int(a["act_min"]), int(a["act_max"]), alpha,
                    slopes=slopes)


def s2d_spec(n: Node) -> ConvSpec | None:
    """A 4×4 … 12×12 stride-2 ``QConv`` as the 3×3 "valid" convolution of the input's
    padded 2×2 space-to-depth (4C channels): ``out[i] = Σ_t w[t] xp[2i + t]`` with
    ``t = 2a + b`` is ``Σ_a Σ_b w[2a + b] S_b[i + a]``, ``S_b[j] = xp[2j + b]``; taps past k
    get weight 0 (the uint8 zero point 128), so the accumulator is exactly the original's.
    Kernels past 6 (7×7 stems) have block taps a = 3q + p past 2: the upload adds copies of
    S shifted by 3 rows / columns (``T_q[j] = S[j + 3q]``, 16C channels), and the 3×3 conv
    of T with taps p covers a = 0..5."""
    from ...ops.nn import conv_node_geometry

    x, w = n.inputs[0], n.inputs[1]
    a = n.attrs
    if x.rank != 4 or not w.is_const or x.dtype != np.uint8 or int(a["group"]) != 1:
        return None
    geo = conv_node_geometry(x.shape, w.shape, **a)
    k = geo.kernel[0]
    shifts = 1 if k <= 6 else 2
    if geo.kernel != (k, k) or not 4 <= k <= 12 or tuple(geo.strides) != (2, 2) or any(
            d != 1 for d in geo.dilations) or x.shape[1] * 4 * shifts * shifts > MAX_IN_CHANNELS:
        return None
    import dataclasses

    probe = dict(a, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    fake = Node("QConv", n.name, [x, Value("w3", np.int8, (w.shape[0], x.shape[1], 3, 3),
                                           np.zeros((w.shape[0], x.shape[1], 3, 3), np.int8)), n.input(2)],
                n.outputs, probe)
    fake.inputs[1].quant = w.quant
    base = conv_spec(fake)
    if isinstance(base, str):
        return None
    c, h, wd = x.shape[1:]
    pt, pl = geo.pads_begin
    oh, ow = geo.out_shape
    # padded to exactly 2·(out + 2 (+ 3 for the shifted copies)) rows/columns: the 3×3 valid
    # conv then gives the out rows; rows past the original end padding only meet the zero
    # taps (t ≥ k), or are never read
    hs, ws = oh + 2, ow + 2
    extra = 3 * (shifts - 1)
    pb, pr = 2 * (hs + extra) - h - pt, 2 * (ws + extra) - wd - pl
    m = w.shape[0]
    kk = 6 * shifts
    wk = np.zeros((m, c, kk, kk), np.int8)
    wk[:, :, :k, :k] = np.asarray(w.const, np.int8)
    # tap t = 6q + 2p + b (q: shifted copy, p: 3x3 tap, b: position in the 2x2 block); channels
    # (copy 2·qy + qx, c, by, bx), as the upload lays them out
    w3 = wk.reshape(m, c, shifts, 3, 2, shifts, 3, 2).transpose(0, 2, 5, 1, 4, 7, 3, 6)
    w3 = w3.reshape(m, shifts * shifts * 4 * c, 3, 3)
    return dataclasses.replace(base, k=3, stride=1, pads=(0, 0, 0, 0), c=4 * c * shifts * shifts, h=hs, w=ws,
                               w_int8=np.ascontiguousarray(w3), s2d=(pt, pl, pb, pr, shifts))


def gemm_spec(n: Node) -> ConvSpec | str:
    """A ``QGemm`` ``(1, K) @ (K, N)`` as a 1×1 convolution of a K×1×1 map."""
    a_v, b_v = n.inputs[0], n.inputs[1]
    bias = n.input(2)
    y = n.outputs[0]
    at = n.attrs
    if a_v.dtype != np.uint8 or y.dtype != np.uint8:
        return f"{a_v.dtype} → {y.dtype} activations (the KPU computes uint8 feature maps)"
    if a_v.shape[0] != 1:
        return f"{a_v.shape[0]} rows (a KPU 1x1 layer runs one row on a padded 4x4 map)"
    if not b_v.is_const or b_v.dtype != np.int8 or np.any(np.asarray(at.get("b_zp", 0)) != 0):
        return "weights are not constant symmetric int8"
    k, nout = b_v.shape
    if k > MAX_IN_CHANNELS:
        return f"{k} inputs > {MAX_IN_CHANNELS} (the KPU's input-channel limit; splitting would need " \
               "the partial sums on the CPU)"
    xq, yq = _scalar_q(a_v), _scalar_q(y)
    if xq is None or yq is None:
        return "per-channel activation quantization"
    alpha, why = _leaky_alpha(at, nout)
    alpha, slopes, why = _slopes_spec(alpha, int(at["act_min"]), int(at["act_max"])) if not why else (0, 0, why)
    if why:
        return why
    scales = np.broadcast_to(np.asarray(b_v.quant.scale, np.float64).reshape(-1), (nout,)).copy()
    w = np.ascontiguousarray(np.asarray(b_v.const, np.int8).T).reshape(nout, k, 1, 1)
    b = np.zeros(nout, np.int64) if bias is None else np.asarray(bias.const, np.int64).reshape(nout)
    return ConvSpec(n.name, 1, 1, (0, 0, 0, 0), False, k, nout, 1, 1, xq, yq, w, scales, b,
                    int(at["act_min"]), int(at["act_max"]), alpha, gemm=True, slopes=slopes)


#: activations a QLut may stand for, with the attribute variants exporters write
_LUT_CANDIDATES = (("Sigmoid", {}), ("Swish", {}), ("HardSwish", {}), ("Tanh", {}),
                   ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}), ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
                   ("Gelu", {}), ("Gelu", {"approximate": "tanh"}), ("Mish", {}), ("Elu", {}), ("Softplus", {}),
                   ("Selu", {}), ("Celu", {}), ("Softsign", {}))


def identify_lut(n: Node) -> dict | None:
    """The activation an 8-bit ``QLut`` tabulates, when its table is exactly the quantized
    graph's table of a registry activation (as the quantize pass builds it), else None."""
    from ...ops.registry import get_op
    from ...quant.qparams import QParams, QType, dequantize, quantize

    x, y = n.inputs[0], n.outputs[0]
    if x.dtype != np.uint8 or y.dtype != np.uint8:
        return None
    qx, qy = _scalar_q(x), _scalar_q(y)
    if qx is None or qy is None:
        return None
    table = np.asarray(n.attrs["table"], np.int64).reshape(-1)
    if table.size != 256:
        return None
    px = QParams(np.asarray(qx[0], np.float32), np.asarray(qx[1], np.int64), QType.UINT8)
    py = QParams(np.asarray(qy[0], np.float32), np.asarray(qy[1], np.int64), QType.UINT8)
    xs = dequantize(np.arange(256).astype(np.uint8), px).astype(np.float32)
    for op, attrs in _LUT_CANDIDATES:
        d = get_op(op)
        full = d.normalize_attrs(attrs)
        with np.errstate(all="ignore"):
            ys = d.run([xs], full)[0]
        if np.array_equal(quantize(ys, py).astype(np.int64), table):
            return {"op": op, **{k: v for k, v in full.items()}}
    return None


def split_channels(spec: ConvSpec) -> list[tuple[int, int]]:
    """Output-channel ranges of the hardware layers: ≤ 1024 channels and ≤ 64 weight loads
    of ≤ 30 KiB each; every range but the last a multiple of 4 (a row group of any width)."""
    if spec.depthwise:
        limit = MAX_OUT_CHANNELS
    else:
        per_out = spec.c * spec.k * spec.k
        limit = min(MAX_OUT_CHANNELS, MAX_LOADS * (WEIGHTS_LOAD_LIMIT // per_out))
    if spec.slopes is not None:
        return _slope_parts(spec.slopes, limit)
    if spec.m <= limit:
        return [(0, spec.m)]
    parts = math.ceil(spec.m / (limit // 4 * 4))
    step = math.ceil(spec.m / parts / 4) * 4
    return [(c0, min(spec.m, c0 + step)) for c0 in range(0, spec.m, step)]


def _slope_parts(slopes: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Output-channel ranges (multiples of 4 but the last, ≤ ``limit``) whose per-channel
    PReLU slopes fit one activation table (:func:`.prelu_table.segments_needed`)."""
    from .prelu_table import segments_needed
    from .spec import ACT_SEGMENTS

    m = slopes.size
    parts, c0 = [], 0
    while c0 < m:
        c1 = min(m, c0 + 4)
        while c1 < m and c1 + 4 - c0 <= limit and segments_needed(slopes[c0:min(m, c1 + 4)]) <= ACT_SEGMENTS:
            c1 = min(m, c1 + 4)
        parts.append((c0, c1))
        c0 = c1
    return parts


def _activation(spec: ConvSpec, lo: int, hi: int):
    """The fused activation in real units for :func:`make_kpu_layer`."""
    s_y, z_y = spec.y_q
    if spec.act_spec is not None:
        return dict(spec.act_spec)
    if spec.slopes is not None:
        return {"op": "PRelu", "slope": spec.slopes}
    if spec.alpha is not None:
        return {"op": "LeakyRelu", "alpha": float(spec.alpha)}
    act = {}
    if lo > 0:
        act["min"] = (lo - z_y) * s_y
    if hi < 255:
        act["max"] = (hi - z_y) * s_y
    return {"op": "Clip", **act} if act else None


def activation_name(spec: ConvSpec, lo: int, hi: int) -> str:
    """The name of the layer's activation table (the ``act`` attribute of ``KpuConv``)."""
    act = _activation(spec, lo, hi)
    return act["op"] if act else "Identity"


def build_layers(spec: ConvSpec, in_map: tuple[int, int, int], pool: KpuPool, lo: int, hi: int,
                 pad_value: int | None = None):
    """KPU layer programs (one per output-channel part) for ``spec`` on a C×Hm×Wm map
    (``pad_value``: what the KPU's own padding reads; default the input zero point).

    Returns ``(layers attrs, weights uint8, bn words, act words, fits)``."""
    from .params import make_kpu_layer

    c, hm, wm = in_map
    parts = split_channels(spec)
    w_u8 = (spec.w_int8.astype(np.int16) + W_ZERO_POINT).astype(np.uint8)
    act = _activation(spec, lo, hi)
    layers, ws, bns, acts, fits = [], [], [], [], []
    w_off = 0
    for i, (c0, c1) in enumerate(parts):
        m = c1 - c0
        wq = np.ascontiguousarray(w_u8[c0:c1])
        sc = spec.w_scales[c0:c1]
        bias = spec.bias_q[c0:c1].astype(np.float64) * spec.x_q[0] * sc
        cin = m if spec.depthwise else c
        if spec.slopes is not None:       # this part's slopes: its own table regions
            act = {"op": "PRelu", "slope": spec.slopes[c0:c1]}
        prog = make_kpu_layer(spec.x_q, wq.astype(np.float64), bias, in_shape=(cin, hm, wm), out_q=spec.y_q,
                              depthwise=spec.depthwise, activation=act, pool=pool, src_addr=0, dst_addr=0,
                              weights_quant=(wq, sc, W_ZERO_POINT), pad_value=pad_value)
        mo, ho, wo = prog.out_shape
        layers.append({"words": [int(v) for v in prog.words],
                       "in_offset": channel_offset(c0, hm, wm) if spec.depthwise else 0,
                       "out_offset": channel_offset(c0, ho, wo),
                       "w_offset": w_off, "w_bytes": int(prog.weights.size), "bn_offset": c0, "channels": m,
                       "act_index": i, "fit_max_error": int(prog.fit.max_error),
                       "v_exponent": int(prog.v_exponent)})
        w_off += int(prog.weights.size)
        ws.append(prog.weights)
        bns.append(prog.bn_words)
        acts.append(prog.act_words)
        fits.append(prog.fit)
    return (layers, np.concatenate(ws), np.concatenate(bns).astype(np.uint64),
            np.concatenate(acts).astype(np.uint64), fits)

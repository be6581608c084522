"""The k210 lowering: a quantized graph → KPU layers + CPU ops + the copies between them.

Runs after :func:`npuc.quant.driver.quantize_model` (uint8 activations, int8 symmetric
per-channel weights, which on the KPU are uint8 weights with the one zero point 128) and
before :func:`npuc.lowering.lower`. It walks the quantized graph in order and rebuilds it:

* every ``QConv`` (and ``QGemm``, as a 1×1 convolution on a padded 4×4 map) the KPU can
  run becomes a ``KpuConv`` op: the convolution with its requantization (the BN stage),
  its clamp / leaky activation (the activation table), a following ``Clip`` and a
  following 2×2/2 or 4×4/4 ``MaxPool`` fused in, a stride 2 done as a stride-1
  convolution plus a "select" pool. Its parameters come from the quantized graph's
  scales (:func:`~.params.make_kpu_layer` with the graph's weights as they are), so the
  KPU computes what the cpu target's ``QConv`` computes, up to the last rounding
  (see docs/k210.md);
* layers beyond the limits are split by output channels into several hardware layers
  writing one output map (> 1024 outputs, or more than 64 weight loads);
* everything else stays a CPU op, with the reason it is not on the KPU;
* a KPU map is a ``uint8`` tensor of ``fmap_bytes(C, Hm, Wm)`` bytes in the AI SRAM row
  layout (memory pool ``kpu``); ``KpuUpload`` / ``KpuDownload`` copy between CPU tensors
  (NCHW, pool ``main``) and maps where a value changes sides.

Map geometry
------------
A map may be larger than the tensor it holds: the tensor is the window
``[y0:y0+H, x0:x0+W]`` of a ``Hm × Wm`` map. Per axis (:class:`Axis`) the lowering
tracks the window and whether the map rows outside it hold the pad value (uploaded
padding) or junk (rows a layer computed from padding). A convolution with kernel k,
stride s and pads (b, e) reads logical rows ``s·i + t − b``; on the KPU it is the
stride-1 "same" convolution of the whole map, whose output row ``r`` reads map rows
``r − c … r + c`` (c = k // 2; row −1 and row Hm are the KPU's own padding). So logical
output i is map output row ``r = y0 − b + c + s·i``, valid when every padding row it reads
is a KPU pad row or an uploaded pad row. Stride 2 then needs r even for rows (the select
pools take rows 0, 2, 4…) and takes the left-top or right-top pixel for columns; a fused
max pool of size p needs r ≡ 0 (mod p). The output window is ``r0 / s`` (or ``/ p``).
"Valid" convolutions therefore run on the KPU unchanged (their output is an inner window);
TensorFlow's asymmetric "SAME" padding of stride-2 layers gets one uploaded pad row on top.
When a map's geometry does not allow a layer (junk where padding should be, a map smaller
than 4×4), the value is uploaded again from its CPU copy with the padding the layer needs.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ...errors import NpucError
from ...ir import Graph, Node, Value
from . import cost
from .layout import channel_offset, fmap_bytes, row_layout
from .spec import (MAIN_SRAM_BYTES, MAX_IN_CHANNELS, MAX_IN_HEIGHT, MAX_IN_WIDTH, MAX_LOADS,
                   MAX_OUT_CHANNELS, MIN_IN_HEIGHT, MIN_IN_WIDTH, WEIGHTS_LOAD_LIMIT, KpuError, KpuPool)

log = logging.getLogger(__name__)

KPU_OPS = ("KpuConv", "KpuUpload", "KpuDownload")
W_ZERO_POINT = 128            #: int8 symmetric weights w become uint8 w + 128 on the KPU
TILE_ABOVE_BYTES = 2 * 1024 * 1024   #: a layer whose input + output maps exceed this is row-tiled
TILE_BYTES = 1024 * 1024             #: input + output maps of one row tile at most


class MainSramError(NpucError):
    """The model's weights (or weights + CPU tensors) do not fit the 6 MB general SRAM."""


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Axis:
    """One spatial axis of a map: ``size`` map rows, the tensor at ``start`` for ``n`` rows;
    ``pad_lo`` / ``pad_hi``: the map rows before / after the window hold the pad value."""

    size: int
    start: int
    n: int
    pad_lo: bool = True
    pad_hi: bool = True

    @property
    def full(self) -> bool:
        return self.start == 0 and self.n == self.size


@dataclass
class KMap:
    """A tensor held in AI SRAM: the map value and its window."""

    value: Value
    c: int
    rows: Axis
    cols: Axis

    @property
    def hw(self) -> tuple[int, int]:
        return self.rows.size, self.cols.size


def conv_axis(ax: Axis, k: int, s: int, pb: int, pe: int, pool: int, is_col: bool):
    """The output axis of a conv (kernel k, stride s, pads pb/pe, then an optional max pool of
    size ``pool``) run as the KPU's same-padded stride-1 conv on a map axis ``ax``.

    Returns ``(axis, select_offset)`` or None when the map cannot give the result."""
    c = (k - 1) // 2
    span = ax.n + pb + pe - k
    if span < 0:
        return None
    out_n = span // s + 1
    for q in range(ax.start - pb, ax.start):                    # padding read before the window
        if not ((q == -1 and k == 3) or (q >= 0 and ax.pad_lo)):
            return None
    jmax = s * (out_n - 1) + k - 1 - pb                         # last logical row read
    for q in range(ax.start + ax.n, ax.start + jmax + 1):      # padding read after the window
        if not ((q == ax.size and k == 3) or (q < ax.size and ax.pad_hi)):
            return None
    r0 = ax.start - pb + c
    if r0 < 0 or r0 + s * (out_n - 1) >= ax.size:
        return None
    if s == 1 and pool <= 1:
        return Axis(ax.size, r0, out_n, False, False), 0
    if s == 2 and pool <= 1:
        off = r0 % 2
        if off and not is_col:
            return None
        start, size = (r0 - off) // 2, ax.size // 2
        if start + out_n > size:
            return None
        return Axis(size, start, out_n, False, False), off
    if s == 1 and pool > 1:
        if r0 % pool:
            return None
        n = out_n // pool
        size = ax.size // pool
        if n < 1 or r0 // pool + n > size:
            return None
        return Axis(size, r0 // pool, n, False, False), 0
    return None


def _limits(is_col: bool) -> tuple[int, int]:
    return (MIN_IN_WIDTH, MAX_IN_WIDTH) if is_col else (MIN_IN_HEIGHT, MAX_IN_HEIGHT)


def upload_axis(n: int, k: int, s: int, pb: int, pe: int, pool: int, is_col: bool):
    """The smallest padded upload of a CPU tensor axis of length ``n`` on which the conv
    works: ``(map axis, output axis, select offset)`` or None."""
    lo, hi = _limits(is_col)
    best = None
    for before in range(0, 4):
        for after in range(0, 8):
            size = before + n + after
            if size < lo or size > hi:
                continue
            ax = Axis(size, before, n, True, True)
            got = conv_axis(ax, k, s, pb, pe, pool, is_col)
            if got is None:
                continue
            key = (size, before)
            if best is None or key < best[0]:
                best = (key, ax, got[0], got[1])
    return None if best is None else best[1:]


def _in_limits(ax: Axis, is_col: bool) -> bool:
    lo, hi = _limits(is_col)
    return lo <= ax.size <= hi


# ----------------------------------------------------------------------------- layer description
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


def _leaky_alpha(a: dict, m: int) -> tuple[float | None, str | None]:
    """The slope of a fused PRelu/LeakyRelu (``neg_multiplier``), when one slope serves all
    channels; else a reason."""
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
    return None, ("per-channel PReLU (the KPU's activation table is shared by all output channels; "
                  f"slopes range {alpha.min():.3g}..{alpha.max():.3g})")


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
    if kh != kw or kh not in (1, 3):
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
    if why:
        return why
    wq = w.quant
    scales = np.broadcast_to(np.asarray(wq.scale, np.float64).reshape(-1), (m,)).copy()
    bias = np.zeros(m, np.int64) if b is None else np.asarray(b.const, np.int64).reshape(m)
    pads = (geo.pads_begin[0], geo.pads_begin[1], geo.pads_end[0], geo.pads_end[1])
    return ConvSpec(n.name, kh, sh, pads, depthwise, c, m, x.shape[2], x.shape[3], xq, yq,
                    np.asarray(w.const, np.int8), scales, bias, int(a["act_min"]), int(a["act_max"]), alpha)


def s2d_spec(n: Node) -> ConvSpec | None:
    """A 4×4, 5×5 or 6×6 stride-2 ``QConv`` as the 3×3 "valid" convolution of the input's
    padded 2×2 space-to-depth (4C channels): ``out[i] = Σ_t w[t] xp[2i + t]`` with
    ``t = 2a + b`` is ``Σ_a Σ_b w[2a + b] S_b[i + a]``, ``S_b[j] = xp[2j + b]``; taps past k
    get weight 0 (the uint8 zero point 128), so the accumulator is exactly the original's."""
    from ...ops.nn import conv_node_geometry

    x, w = n.inputs[0], n.inputs[1]
    a = n.attrs
    if x.rank != 4 or not w.is_const or x.dtype != np.uint8 or int(a["group"]) != 1:
        return None
    geo = conv_node_geometry(x.shape, w.shape, **a)
    k = geo.kernel[0]
    if geo.kernel != (k, k) or k not in (4, 5, 6) or tuple(geo.strides) != (2, 2) or any(
            d != 1 for d in geo.dilations) or x.shape[1] * 4 > MAX_IN_CHANNELS:
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
    # padded to exactly 2·(out + 2) rows/columns: the 3×3 valid conv then gives the out rows;
    # rows past the original end padding only meet the zero taps (t ≥ k), or are never read
    hs, ws = oh + 2, ow + 2
    pb, pr = 2 * hs - h - pt, 2 * ws - wd - pl
    m = w.shape[0]
    w6 = np.zeros((m, c, 6, 6), np.int8)
    w6[:, :, :k, :k] = np.asarray(w.const, np.int8)
    w3 = w6.reshape(m, c, 3, 2, 3, 2).transpose(0, 1, 3, 5, 2, 4).reshape(m, 4 * c, 3, 3)
    return dataclasses.replace(base, k=3, stride=1, pads=(0, 0, 0, 0), c=4 * c, h=hs, w=ws,
                               w_int8=np.ascontiguousarray(w3), s2d=(pt, pl, pb, pr))


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
    if why:
        return why
    scales = np.broadcast_to(np.asarray(b_v.quant.scale, np.float64).reshape(-1), (nout,)).copy()
    w = np.ascontiguousarray(np.asarray(b_v.const, np.int8).T).reshape(nout, k, 1, 1)
    b = np.zeros(nout, np.int64) if bias is None else np.asarray(bias.const, np.int64).reshape(nout)
    return ConvSpec(n.name, 1, 1, (0, 0, 0, 0), False, k, nout, 1, 1, xq, yq, w, scales, b,
                    int(at["act_min"]), int(at["act_max"]), alpha, gemm=True)


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
    if spec.m <= limit:
        return [(0, spec.m)]
    parts = math.ceil(spec.m / (limit // 4 * 4))
    step = math.ceil(spec.m / parts / 4) * 4
    return [(c0, min(spec.m, c0 + step)) for c0 in range(0, spec.m, step)]


def _activation(spec: ConvSpec, lo: int, hi: int):
    """The fused activation in real units for :func:`make_kpu_layer`."""
    s_y, z_y = spec.y_q
    if spec.act_spec is not None:
        return dict(spec.act_spec)
    if spec.alpha is not None:
        return {"op": "LeakyRelu", "alpha": float(spec.alpha)}
    act = {}
    if lo > 0:
        act["min"] = (lo - z_y) * s_y
    if hi < 255:
        act["max"] = (hi - z_y) * s_y
    return {"op": "Clip", **act} if act else None


def build_layers(spec: ConvSpec, in_map: tuple[int, int, int], pool: KpuPool, lo: int, hi: int):
    """KPU layer programs (one per output-channel part) for ``spec`` on a C×Hm×Wm map.

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
        prog = make_kpu_layer(spec.x_q, wq.astype(np.float64), bias, in_shape=(cin, hm, wm), out_q=spec.y_q,
                              depthwise=spec.depthwise, activation=act, pool=pool, src_addr=0, dst_addr=0,
                              weights_quant=(wq, sc, W_ZERO_POINT))
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


# ----------------------------------------------------------------------------- CPU reasons
_CPU_REASONS = {
    "QuantizeLinear": "quantizes a float input (the KPU takes uint8 maps)",
    "DequantizeLinear": "dequantizes a result to float",
    "QAdd": "elementwise add (the KPU runs convolution layers only)",
    "QMul": "elementwise multiply (the KPU runs convolution layers only)",
    "QConcat": "concatenation with requantization (a CPU copy)",
    "Concat": "concatenation (a CPU copy)",
    "QMean": "global / reduce mean (the KPU's mean pool works on a layer's own output, 2x2 or 4x4 cells)",
    "QAvgPool": "average pool (not fused: the KPU's mean pool truncates and works on a layer's own output)",
    "QLut": "lookup-table activation on its own (the KPU's activation table belongs to a convolution layer)",
    "QPRelu": "PReLU on its own (per-channel slopes do not fit the KPU's shared activation table)",
    "Requantize": "requantization between precisions",
    "Reshape": "layout op (a view on the CPU)",
    "Flatten": "layout op (a view on the CPU)",
    "Squeeze": "layout op (a view on the CPU)",
    "Unsqueeze": "layout op (a view on the CPU)",
    "Transpose": "transpose (a CPU copy; the KPU has no layout ops)",
    "Pad": "explicit padding op (a CPU copy)",
    "Softmax": "softmax (float on the CPU)",
}


def cpu_reason(n: Node) -> str:
    r = _CPU_REASONS.get(n.op)
    if r:
        return r
    if n.op in ("MaxPool", "AveragePool"):
        ks = n.attrs.get("kernel_shape")
        st = n.attrs.get("strides") or [1] * len(ks or [])
        return (f"{n.op} {'x'.join(map(str, ks or []))}/{'x'.join(map(str, st))} not fused (the KPU pools "
                "2x2/2 or 4x4/4 the output of its own convolution when that has no other reader)")
    if any(o.dtype.kind == "f" for o in n.outputs):
        return f"{n.op} in float (not quantized; the KPU computes uint8)"
    return f"{n.op} has no KPU equivalent (the KPU runs convolution layers only)"


# ----------------------------------------------------------------------------- the rewrite
@dataclass
class _Plan:
    """How one conv becomes a KPU op."""

    src_map: KMap | None         # existing map (None: upload)
    upload: tuple | None         # (rows axis, cols axis) of the upload
    rows: Axis
    cols: Axis
    pool: KpuPool
    fused: list = field(default_factory=list)     # nodes fused after the conv (Clip, MaxPool)
    lo: int = 0
    hi: int = 255


_LATER_KPU = ("QConv", "QGemm")


class K210Lowering:
    """Rebuilds a quantized graph with KPU ops (see the module docstring)."""

    def __init__(self, graph: Graph, *, use_cost_model: bool = True):
        self.src = graph
        self.g = Graph(graph.name)
        self.g.metadata = {k: v for k, v in graph.metadata.items() if k != "k210"}
        self.cpu: dict[int, Value] = {}
        self.kpu: dict[int, KMap] = {}
        self.consts: dict[int, Value] = {}
        self.fused_nodes: set[int] = set()
        self.reasons: dict[str, str] = {}       # final node name -> why it runs on the CPU
        self.sources: dict[str, list[str]] = {}  # KpuConv name -> quantized nodes it implements
        self.fit_errors: dict[str, int] = {}
        self.use_cost = use_cost_model
        self.outputs = {id(v) for v in graph.outputs}

    # ------------------------------------------------------------------ values
    def const(self, v: Value) -> Value:
        c = self.consts.get(id(v))
        if c is None:
            c = self.g.add_const(v.name, v.const)
            c.quant = v.quant
            self.consts[id(v)] = c
        return c

    def _name(self, base: str) -> str:
        return self.g.unique_name(base)

    def cpu_value(self, v: Value) -> Value:
        """The CPU tensor of ``v`` (downloading it from AI SRAM if it lives only there)."""
        if v.is_const:
            return self.const(v)
        got = self.cpu.get(id(v))
        if got is not None:
            return got
        km = self.kpu[id(v)]
        c = km.c
        node = self.g.make_node("KpuDownload", [km.value], name=self._name(f"{v.name}/download"),
                                attrs={"chw": [c, km.rows.n, km.cols.n], "map": [km.rows.size, km.cols.size],
                                       "window": [km.rows.start, km.cols.start], "out_shape": list(v.shape)},
                                outputs=[v.name if v.name not in self.g.values else f"{v.name}@cpu"])
        out = node.outputs[0]
        out.quant = v.quant
        self.cpu[id(v)] = out
        self.reasons[node.name] = "copies a KPU result from AI SRAM to general SRAM for the CPU"
        return out

    def upload(self, v: Value, c: int, h: int, w: int, rows: Axis, cols: Axis, pad: int, s2d=None) -> KMap:
        x = self.cpu_value(v)
        attrs = {"chw": [c, h, w], "map": [rows.size, cols.size], "window": [rows.start, cols.start],
                 "pad_value": int(pad)}
        if s2d is not None:
            attrs["space_to_depth"] = list(s2d)
        node = self.g.make_node("KpuUpload", [x], name=self._name(f"{v.name}/upload"), attrs=attrs,
                                outputs=[f"{v.name}@kpu" if s2d is None else f"{v.name}@kpu_s2d"])
        node.outputs[0].quant = v.quant
        self.reasons[node.name] = ("copies a CPU tensor into AI SRAM for the KPU" if s2d is None else
                                   "copies a CPU tensor into AI SRAM as 2x2 space-to-depth (a k x k stride-2 "
                                   "convolution becomes a 3x3 KPU layer)")
        return KMap(node.outputs[0], c, rows, cols)

    # ------------------------------------------------------------------ fusion
    def _single_user(self, v: Value) -> Node | None:
        if id(v) in self.outputs or len(v.users) != 1:
            return None
        return v.users[0]

    def _fusable_chain(self, n: Node) -> list[Node]:
        """Clip (code bounds) and MaxPool nodes right after ``n`` that the layer can absorb."""
        chain = []
        v = n.outputs[0]
        seen = set()
        while True:
            u = self._single_user(v)
            if u is None or u.op in seen:
                break
            if u.op == "QLut" and not chain and self._lut_ok(n) and identify_lut(u) is not None:
                chain.append(u)
            elif u.op == "Clip" and u.inputs[0] is v and u.outputs[0].dtype == np.uint8 and not chain and all(
                    x is None or x.is_const for x in u.inputs[1:]):
                chain.append(u)
            elif u.op == "MaxPool" and u.outputs[0].dtype == np.uint8 and len(u.outputs) == 1 \
                    and self._pool_size(u):
                chain.append(u)
            else:
                break
            seen.add(u.op)
            v = u.outputs[0]
        return chain

    @staticmethod
    def _lut_ok(n: Node) -> bool:
        """A table activation can replace the layer's own only when that is the identity."""
        a = n.attrs
        return a.get("neg_multiplier") is None and int(a["act_min"]) == 0 and int(a["act_max"]) == 255

    @staticmethod
    def _pool_size(u: Node) -> int:
        from ...ops.nn import pool_node_geometry

        try:
            geo = pool_node_geometry(u.inputs[0].shape, **u.attrs)
        except Exception:
            return 0
        k = geo.kernel
        if (len(k) != 2 or k[0] != k[1] or k[0] not in (2, 4) or tuple(geo.strides) != (k[0], k[0])
                or any(geo.pads_begin) or any(geo.pads_end) or any(geo.extra) or any(d != 1 for d in geo.dilations)):
            return 0
        return k[0]

    # ------------------------------------------------------------------ planning one layer
    def plan(self, n: Node, spec: ConvSpec) -> _Plan | str:
        chain = self._fusable_chain(n)
        pool_node = next((u for u in chain if u.op == "MaxPool"), None)
        x = n.inputs[0]
        km = self.kpu.get(id(x)) if spec.s2d is None else None   # space-to-depth comes from the CPU copy
        pt, pl, pb, pr = spec.pads
        tries = []
        if pool_node is not None and spec.stride == 1:
            tries.append(self._pool_size(pool_node))
        tries.append(1)
        for ps in tries:
            fused = chain if ps > 1 else [u for u in chain[:1] if u.op in ("Clip", "QLut")]
            rows = cols = None
            plan = None
            if km is not None and _in_limits(km.rows, False) and _in_limits(km.cols, True):
                r = conv_axis(km.rows, spec.k, spec.stride, pt, pb, ps, False)
                cc = conv_axis(km.cols, spec.k, spec.stride, pl, pr, ps, True)
                if r is not None and cc is not None and r[1] == 0:
                    rows, cols, off = r[0], cc[0], cc[1]
                    plan = _Plan(km, None, rows, cols, self._kpu_pool(spec.stride, ps, off), fused)
            if plan is None:
                r = upload_axis(spec.h, spec.k, spec.stride, pt, pb, ps, False)
                cc = upload_axis(spec.w, spec.k, spec.stride, pl, pr, ps, True)
                if r is None or cc is None or r[2] != 0:
                    continue
                plan = _Plan(None, (r[0], cc[0]), r[1], cc[1], self._kpu_pool(spec.stride, ps, cc[2]), fused)
            lo, hi = spec.act_min, spec.act_max
            for u in fused:
                if u.op == "Clip":
                    bl = u.input(1)
                    bh = u.input(2)
                    if bl is not None:
                        lo = max(lo, int(np.asarray(bl.const).reshape(-1)[0]))
                    if bh is not None:
                        hi = min(hi, int(np.asarray(bh.const).reshape(-1)[0]))
            plan.lo, plan.hi = lo, min(max(hi, lo), 255)
            return plan
        in_h, in_w = (km.hw if km is not None else (spec.h, spec.w))
        return (f"no KPU map geometry for this layer (input {spec.h}x{spec.w}, kernel {spec.k}, stride "
                f"{spec.stride}, pads {list(spec.pads)}; the KPU takes maps of {MIN_IN_HEIGHT}..{MAX_IN_HEIGHT} rows "
                f"and {MIN_IN_WIDTH}..{MAX_IN_WIDTH} columns)" if max(in_h, spec.h) <= MAX_IN_HEIGHT
                and max(in_w, spec.w) <= MAX_IN_WIDTH else
                f"input {spec.h}x{spec.w} exceeds the KPU's {MAX_IN_HEIGHT} rows x {MAX_IN_WIDTH} columns "
                "in one layer")

    @staticmethod
    def _kpu_pool(stride: int, ps: int, off: int) -> KpuPool:
        if stride == 2:
            return KpuPool.RIGHT_TOP_2_S2 if off else KpuPool.LEFT_TOP_2_S2
        if ps == 2:
            return KpuPool.MAX_2_S2
        if ps == 4:
            return KpuPool.MAX_4_S4
        return KpuPool.BYPASS

    def _will_be_cpu(self, v: Value) -> bool:
        """Whether some reader of ``v`` surely runs on the CPU (or ``v`` is a graph output)."""
        if id(v) in self.outputs:
            return True
        return any(u.op not in _LATER_KPU for u in v.users)

    def _cost_check(self, n: Node, spec: ConvSpec, plan: _Plan, out_v: Value) -> str | None:
        if not self.use_cost:
            return None
        cpu = spec.macs * cost.CPU_INT_MAC
        # KPU: compute on the whole map + moves
        hm, wm = (plan.src_map.hw if plan.src_map is not None else (plan.upload[0].size, plan.upload[1].size))
        lay = row_layout(wm)
        cg = 1 if spec.depthwise else spec.c
        comp = (math.ceil(spec.m / lay.groups) if spec.depthwise else spec.m * math.ceil(cg / lay.groups)) \
            * hm * lay.row_len
        kpu = cost.KPU_LAYER_OVERHEAD * len(split_channels(spec)) + comp + spec.w_int8.size // 8
        if plan.src_map is None:
            kpu += cost.move_cycles(spec.c * spec.h * spec.w)
        if self._will_be_cpu(out_v):
            kpu += cost.move_cycles(int(np.prod(out_v.shape)))
        if kpu >= cpu:
            return (f"faster on the CPU: about {cost.us(cpu):.1f} us there vs {cost.us(kpu):.1f} us on the KPU "
                    "with the copies to and from AI SRAM")
        return None

    # ------------------------------------------------------------------ emit
    def _with_lut(self, spec: ConvSpec, fused: list) -> ConvSpec:
        lut = next((u for u in fused if u.op == "QLut"), None)
        if lut is None:
            return spec
        import dataclasses   # the table's activation, straight to the table's output scale

        return dataclasses.replace(spec, act_spec=identify_lut(lut), y_q=_scalar_q(lut.outputs[0]))

    def try_kpu(self, n: Node) -> str | None:
        spec = conv_spec(n) if n.op == "QConv" else gemm_spec(n)
        if isinstance(spec, str) and n.op == "QConv" and spec.startswith("kernel"):
            spec = s2d_spec(n) or spec
        if isinstance(spec, str):
            return spec
        plan = self.plan(n, spec)
        if isinstance(plan, str):
            if spec.gemm or spec.s2d or not plan.startswith("input"):
                return plan
            return self.try_tiled(n, spec, plan)
        in_hw = plan.src_map.hw if plan.src_map is not None else (plan.upload[0].size, plan.upload[1].size)
        if fmap_bytes(spec.c, *in_hw) + fmap_bytes(spec.m, plan.rows.size, plan.cols.size) > TILE_ABOVE_BYTES \
                and not spec.gemm and not spec.s2d:
            return self.try_tiled(n, spec, f"input and output maps need more than {TILE_ABOVE_BYTES:,} bytes "
                                           "of AI SRAM")
        out_v = plan.fused[-1].outputs[0] if plan.fused else n.outputs[0]
        spec = self._with_lut(spec, plan.fused)
        why = self._cost_check(n, spec, plan, out_v)
        if why:
            return why
        if plan.src_map is not None:
            in_map = plan.src_map.hw
        else:
            in_map = (plan.upload[0].size, plan.upload[1].size)
        try:
            layers, wts, bn, act, fits = build_layers(spec, (spec.c, *in_map), plan.pool, plan.lo, plan.hi)
        except KpuError as e:
            return f"KPU parameters out of range: {e}"
        if plan.src_map is not None:
            xin = plan.src_map
        else:
            xin = self.upload(n.inputs[0], spec.c, spec.h, spec.w, plan.upload[0], plan.upload[1], spec.x_q[1],
                              s2d=spec.s2d)
        L0 = layers[0]
        from .encode import KpuLayer

        out_map = KpuLayer.from_words(np.asarray(L0["words"], np.uint64)).out_shape
        out_map = (spec.m, out_map[1], out_map[2])
        names = [n.name] + [u.name for u in plan.fused]
        wv = self.g.add_const(f"{n.name}/kpu_weights", wts)
        bv = self.g.add_const(f"{n.name}/kpu_bn", bn)
        av = self.g.add_const(f"{n.name}/kpu_act", act)
        act_name = spec.act_spec["op"] if spec.act_spec else "LeakyRelu" if spec.alpha is not None else (
            "Clip" if (plan.lo > 0 or plan.hi < 255) else "Identity")
        node = self.g.make_node(
            "KpuConv", [xin.value, wv, bv, av], name=self._name(n.name),
            attrs={"layers": layers, "in_map": [spec.c, *in_map], "out_map": list(out_map), "kernel": spec.k,
                   "stride": spec.stride, "depthwise": int(spec.depthwise), "pool": plan.pool.name.lower(),
                   "act": act_name, "fused": names},
            outputs=[f"{out_v.name}@kpu"])
        node.outputs[0].quant = out_v.quant
        self.sources[node.name] = names
        self.fit_errors[node.name] = max(f.max_error for f in fits)
        for u in plan.fused:
            self.fused_nodes.add(id(u))
        c = spec.m
        self.kpu[id(out_v)] = KMap(node.outputs[0], c, plan.rows, plan.cols)
        if any(u.op not in _LATER_KPU for u in out_v.users) or id(out_v) in self.outputs:
            self.cpu_value(out_v)      # download right away: the AI SRAM copy can die early
        return None

    def try_tiled(self, n: Node, spec: ConvSpec, why: str) -> str | None:
        """Row tiles with halos: each tile of output rows is its own KPU layer on an upload of
        the input rows it reads (plus explicit padding at the image border); the tiles come
        back to the CPU and are concatenated. For maps taller than 256 rows, or layers whose
        input + output maps do not fit AI SRAM together."""
        import dataclasses

        pt, pl, pb, pr = spec.pads
        k, s = spec.k, spec.stride
        chain = self._fusable_chain(n)
        pool_node = next((u for u in chain if u.op == "MaxPool"), None)
        ps = self._pool_size(pool_node) if (pool_node is not None and s == 1) else 1
        fused = chain if ps > 1 else [u for u in chain[:1] if u.op in ("Clip", "QLut")]
        cols = upload_axis(spec.w, k, s, pl, pr, ps, True)
        if cols is None:
            return f"{why}; no column geometry for row tiles (the KPU takes {MAX_IN_WIDTH} columns)"
        col_ax, col_out, off = cols
        conv_h = (spec.h + pt + pb - k) // s + 1
        out_rows = conv_h // ps

        def tiles(t_rows):
            out = []
            for o0 in range(0, out_rows, t_rows):
                o1 = min(out_rows, o0 + t_rows)
                a, b = o0 * ps, o1 * ps                      # conv output rows
                ja, jb = a * s - pt, (b - 1) * s + k - pt    # input rows read [ja, jb)
                r0, r1 = max(ja, 0), min(jb, spec.h)
                ptop, pbot = max(0, -ja), max(0, jb - spec.h)
                got = upload_axis(r1 - r0, k, s, ptop, pbot, ps, False)
                if got is None:
                    return None
                row_ax, row_out, roff = got
                if roff or row_out.n != o1 - o0:
                    return None
                ib = fmap_bytes(spec.c, row_ax.size, col_ax.size)
                ob = fmap_bytes(spec.m, row_out.size, col_out.size)
                if ib + ob > TILE_BYTES:
                    return None
                out.append((o0, o1, r0, r1, ptop, pbot, row_ax, row_out))
            return out

        plan_t = None
        for t_rows in range(min(out_rows, MAX_IN_HEIGHT), 0, -1):
            n_tiles = math.ceil(out_rows / t_rows)
            t_even = math.ceil(out_rows / n_tiles)           # balanced tiles
            plan_t = tiles(t_even) or tiles(t_rows)
            if plan_t:
                break
        if not plan_t:
            return f"{why}; no row tiling fits"
        out_v = fused[-1].outputs[0] if fused else n.outputs[0]
        spec = self._with_lut(spec, fused)
        lo, hi = spec.act_min, spec.act_max
        for u in fused:
            if u.op == "Clip":
                bl, bh = u.input(1), u.input(2)
                lo = max(lo, int(np.asarray(bl.const).reshape(-1)[0])) if bl is not None else lo
                hi = min(hi, int(np.asarray(bh.const).reshape(-1)[0])) if bh is not None else hi
        pool = self._kpu_pool(s, ps, off)
        parts = []
        names = [n.name] + [u.name for u in fused]
        x_cpu = self.cpu_value(n.inputs[0])
        for i, (o0, o1, r0, r1, ptop, pbot, row_ax, row_out) in enumerate(plan_t):
            tspec = dataclasses.replace(spec, h=r1 - r0, pads=(ptop, pl, pbot, pr))
            try:
                layers, wts, bn, act, fits = build_layers(tspec, (spec.c, row_ax.size, col_ax.size), pool, lo, hi)
            except KpuError as e:
                return f"{why}; KPU parameters out of range: {e}"
            up = self.g.make_node("KpuUpload", [x_cpu], name=self._name(f"{n.inputs[0].name}/upload_rows{i}"),
                                  attrs={"chw": [spec.c, r1 - r0, spec.w], "map": [row_ax.size, col_ax.size],
                                         "window": [row_ax.start, col_ax.start], "pad_value": int(spec.x_q[1]),
                                         "rows": [r0, r1]},
                                  outputs=[f"{n.inputs[0].name}@kpu_rows{i}"])
            up.outputs[0].quant = n.inputs[0].quant
            self.reasons[up.name] = f"copies input rows {r0}..{r1 - 1} (a row tile with its halo) into AI SRAM"
            sfx = f"/rows{i}" if len(plan_t) > 1 else ""
            wv = self.g.add_const(f"{n.name}/kpu_weights{sfx}", wts)
            bv = self.g.add_const(f"{n.name}/kpu_bn{sfx}", bn)
            av = self.g.add_const(f"{n.name}/kpu_act{sfx}", act)
            out_map = (spec.m, row_out.size, col_out.size)
            conv = self.g.make_node(
                "KpuConv", [up.outputs[0], wv, bv, av], name=self._name(f"{n.name}{sfx}"),
                attrs={"layers": layers, "in_map": [spec.c, row_ax.size, col_ax.size], "out_map": list(out_map),
                       "kernel": k, "stride": s, "depthwise": int(spec.depthwise), "pool": pool.name.lower(),
                       "act": (spec.act_spec or {}).get("op") or ("LeakyRelu" if spec.alpha is not None else
                                                                  "Clip" if (lo > 0 or hi < 255) else "Identity"),
                       "fused": names, "row_tile": [o0, o1]},
                outputs=[f"{out_v.name}@kpu_rows{i}"])
            conv.outputs[0].quant = out_v.quant
            self.sources[conv.name] = names
            self.fit_errors[conv.name] = max(f.max_error for f in fits)
            shape = list(out_v.shape)
            shape[2] = o1 - o0
            dn = self.g.make_node("KpuDownload", [conv.outputs[0]], name=self._name(f"{out_v.name}/download_rows{i}"),
                                  attrs={"chw": [spec.m, o1 - o0, col_out.n], "map": [row_out.size, col_out.size],
                                         "window": [row_out.start, col_out.start], "out_shape": shape},
                                  outputs=[f"{out_v.name}@rows{i}"])
            dn.outputs[0].quant = out_v.quant
            self.reasons[dn.name] = "copies a row tile of a KPU result to general SRAM"
            parts.append(dn.outputs[0])
        for u in fused:
            self.fused_nodes.add(id(u))
        if len(parts) == 1:
            res = parts[0]
        else:
            cat = self.g.make_node("Concat", parts, name=self._name(f"{out_v.name}/concat_rows"), attrs={"axis": 2},
                                   outputs=[out_v.name if out_v.name not in self.g.values else f"{out_v.name}@cpu"])
            res = cat.outputs[0]
            self.reasons[cat.name] = "joins the row tiles of a KPU layer"
        res.quant = out_v.quant
        self.cpu[id(out_v)] = res
        return None

    def cpu_node(self, n: Node, reason: str) -> None:
        ins = [None if v is None else self.cpu_value(v) for v in n.inputs]
        outs = [o.name if o.name not in self.g.values else self._name(o.name) for o in n.outputs]
        node = self.g.make_node(n.op, ins, attrs=dict(n.attrs), name=self._name(n.name), outputs=outs)
        for o, no in zip(n.outputs, node.outputs):
            no.quant = o.quant
            self.cpu[id(o)] = no
        self.reasons[node.name] = reason

    def run(self) -> Graph:
        for v in self.src.inputs:
            nv = self.g.add_input(v.name, v.dtype, v.shape)
            nv.quant = v.quant
            self.cpu[id(v)] = nv
        for n in self.src.nodes:
            if id(n) in self.fused_nodes:
                continue
            reason = None
            if n.op in ("QConv", "QGemm"):
                reason = self.try_kpu(n)
                if reason is None:
                    continue
            self.cpu_node(n, reason or cpu_reason(n))
        self.g.outputs = [self.cpu_value(v) for v in self.src.outputs]
        for v, o in zip(self.src.outputs, self.g.outputs):
            if o.name != v.name and v.name not in self.g.values:
                self.g.rename(o, v.name)
        self.g.prune_values()
        self.g.metadata["k210"] = {"reasons": dict(self.reasons), "sources": dict(self.sources),
                                   "fit_max_error": dict(self.fit_errors)}
        return self.g


def check_weights(graph: Graph, capacity: int = MAIN_SRAM_BYTES) -> None:
    """Refuse a model whose constants alone exceed general SRAM, naming the biggest."""
    consts = list(graph.constants())
    total = sum(v.nbytes for v in consts)
    if total <= capacity:
        return
    big = [v for v in sorted(consts, key=lambda v: -v.nbytes)[:5] if v.nbytes * 100 >= total] or consts[:1]
    names = ", ".join(f"{v.name!r} {v.nbytes / 2**20:.2f} MB" for v in big)
    raise MainSramError(
        f"the model's weights need {total:,} bytes ({total / 2**20:.2f} MB) but the K210's general SRAM holds "
        f"{capacity:,} bytes ({capacity / 2**20:.0f} MB), {total - capacity:,} bytes over, before any CPU tensor or "
        f"the program itself; largest: {names}. Use a smaller model (fewer channels or layers), or prune / "
        "share weights: the K210 has no external RAM.")


def lower_k210(graph: Graph, *, use_cost_model: bool = True, timings: dict | None = None) -> Graph:
    """The KPU rewrite of a quantized graph (see the module docstring)."""
    t0 = time.perf_counter()
    from .spec import AI_SRAM_BYTES

    g = K210Lowering(graph, use_cost_model=use_cost_model).run()
    check_weights(g)
    check_kpu_memory(g, AI_SRAM_BYTES)
    if timings is not None:
        timings["kpu_lowering"] = time.perf_counter() - t0
    return g


def kpu_peak(graph: Graph) -> tuple[int, int, list[tuple[Value, int]]]:
    """The AI SRAM lower bound of a lowered graph: ``(bytes, step, [(map, bytes) live there])``,
    with the lifetimes :func:`npuc.lowering.lower` gives (producer step to last reader;
    graph outputs to the end)."""
    from ...memory import Buffer, peak

    first, last, vals = {}, {}, {}
    steps = len(graph.nodes)
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            if v is not None and id(v) in first:
                last[id(v)] = max(last[id(v)], i)
        if n.op in ("KpuConv", "KpuUpload"):
            o = n.outputs[0]
            first[id(o)] = last[id(o)] = i
            vals[id(o)] = o
    for v in graph.outputs:
        if id(v) in last:
            last[id(v)] = steps
    if not vals:
        return 0, 0, []
    bufs = [Buffer(k, v.nbytes, first[k], last[k], "kpu", 64) for k, v in vals.items()]
    lb, step, live = peak(bufs)["kpu"]
    return lb, step, [(vals[k], vals[k].nbytes) for k in live]


class KpuMemoryError(NpucError):
    """The feature maps the KPU needs at one step exceed the 2 MB AI SRAM."""


def check_kpu_memory(graph: Graph, capacity: int) -> None:
    lb, step, live = kpu_peak(graph)
    if lb <= capacity:
        return
    node = graph.nodes[min(step, len(graph.nodes) - 1)]
    items = ", ".join(f"{v.name!r} {b:,} B" for v, b in live[:6])
    raise KpuMemoryError(
        f"AI SRAM: {lb:,} bytes of KPU feature maps are live at once but the K210 has {capacity:,} "
        f"({lb - capacity:,} bytes over), at step {step} ({node.op} {node.name!r}); live there: {items}"
        f"{' and more' if len(live) > 6 else ''}. Lower the input resolution or the channel count of the layers "
        "there, or reorder branches so fewer maps are live together.")

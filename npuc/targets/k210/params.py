"""The KPU's own arithmetic: from a float (or quantized) convolution layer to the real
hardware parameters of one KPU layer.

What one KPU layer computes
---------------------------
For output channel ``c`` and pixel ``p`` (uint8 inputs ``x``, pad positions holding
``pad_value``; uint8 weights ``w``; sums over the k×k window and the ``n`` input channels
of the group, ``n = C`` for a normal and ``n = 1`` for a depthwise layer):

1. ``acc = Σ x·w + ((arg_x · Σx) >> shr_x) + ((arg_w · Σw) >> shr_w) + arg_add · n``
   (36-bit signed; ``>>`` is the flooring arithmetic shift). ``arg_add`` is multiplied by
   the number of *channels* ``n``, not of taps: nncase's simulator adds
   ``arg_add * g_ic`` and its compiler sets ``arg_add = k² · z_x · z_w``.
2. batch-norm: ``v = ((acc · mul_c) >> shift_c) + add_c`` (mul 24-bit signed, shift
   0..15, add 32-bit signed; v is 36 bits).
3. activation, one 16-segment table shared by all channels: the highest segment ``s``
   with ``v > start_s`` gives ``y = clamp(rhe((v − start_s) · mul_s / 2^shift_s) +
   bias_s, 0, 255)``, ``rhe`` = round half to even (start 36-bit signed, mul 16-bit
   signed, shift 0..255, bias 0..255).
4. pooling of the uint8 map (bypass, max/mean 2×2 s2, 2×2 s1, 4×4 s4, select).

How the parameters are chosen here
----------------------------------
*Inputs* carry one uint8 ``(s_x, z_x)``; the pad value is ``z_x`` so padding is a real 0.

*Weights* are uint8 per output channel with **one zero point** ``z_w`` for the whole
layer (the hardware has one ``arg_x``, which multiplies Σx by the weights' zero point):
``w_q = clamp(rhe(w / s_w[c]) + z_w, 0, 255)``; ``z_w`` is 128 (symmetric, as nncase) or,
by default, the code that minimizes the geometric mean of the per-channel scales
``s_w[c] = max(hi_c / (255 − z_w), −lo_c / z_w)``.

*Zero points fold into the conv arguments* so that the accumulator is exactly
``Σ (x − z_x)(w − z_w) = Σxw − z_w Σx − z_x Σw + n k² z_x z_w``:
``arg_x = −z_w``, ``arg_w = −z_x``, ``shr_x = shr_w = 0``, ``arg_add = k² · z_x · z_w``.

*BN* maps the accumulator to a fixed-point value ``v`` of the pre-activation
``u = γ_c · (s_x s_w[c] · acc) + b_c`` (``γ_c`` an optional per-channel scale, e.g. a real
batch-norm's γ/σ, ``b_c`` the bias) at one scale ``s_v = s_y · 2^−e`` shared by all
channels (the activation table is shared): ``mul_c / 2^shift_c ≈ r_c = γ_c s_x s_w[c] / s_v``
(shift_c the largest ≤ 15 with |mul_c| < 2^23) and ``add_c = round(b_c / s_v + ½)`` (the
½ undoes the mean −½ of the flooring shift, so ``u ≈ s_v · v``). The exponent ``e`` is
the largest in −20..40 keeping every ``mul_c`` in 24 bits, every ``add_c`` in 32 bits and
the worst-case ``|v|`` (from ``max |acc_c| = max(z_x, 255 − z_x) · Σ|w_q − z_w|``) below
2^34, inside the 36-bit ALU.

*The activation table* maps ``v`` to output codes through the fused activation ``f``:
the ideal is ``y*(v) = clamp(rhe(t(v)), 0, 255)`` with ``t(v) = f(s_v · v) / s_y + z_y``.
:func:`fit_activation` samples ``t`` (densely where ``y*`` changes, sparsely out to the
worst-case v range, always at the kinks of piecewise-linear activations), then places
≤ 16 anchored segments greedily, minimizing by bisection the tolerance ε of the band
each sample must fall in: ``line ∈ [min(t − ε, r − ½ + η), max(t + ε, r + ½ − η)]``
(``r = y*``, one-sided where r is 0 or 255 because the output clamps; η = 0.02 guards the
slope's 16-bit rounding), i.e. a line either rounds to the right code or stays within ε
of the true value. Each segment is anchored at an integer ``start`` where ``t`` crosses
an integer ``bias`` (or where ``t`` is flat), since ``bias`` must be an integer code.
Piecewise-linear activations (identity, ReLU, ReLU6/Clip, leaky ReLU, hard sigmoid) fit
with ε ≈ 0; smooth ones (sigmoid, tanh, swish, h-swish's curved part, GELU, ...) with
the smallest ε 16 segments allow. The report gives the exact error of the table in output
codes against ``y*``, over every integer v of the active range (or a 2^18-point grid of it).

The float → code mapping of the whole layer (for tests): ``x_q = quantize(x)``, the
emulator's output ``y_q``, ``y ≈ s_y (y_q − z_y)`` ≈ pool(f(γ ⊙ conv(x, w) + b)).

The weight quantization, conv arguments and BN table live in :mod:`.conv_bn`, the
activation-table fit in :mod:`.activation_fit`; this module builds the layer from them
(:func:`make_kpu_layer`, :class:`KpuLayerProgram`, :func:`float_layer`) and re-exports
their public names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .activation_fit import FitReport, activation_function, fit_activation
from .conv_bn import ConvArgs, QParams, conv_args, make_bn, quantize_weights
from .encode import ActTable, BnTable, KpuLayer, encode_act, encode_bn
from .layout import fmap_bytes
from .spec import (ACT_SEGMENTS, ACT_TABLE_ALIGN, AI_SRAM_BYTES, ROW_BYTES, WEIGHTS_LOAD_LIMIT, KpuError, KpuPool,
                   layer_limit_violations, parse_pool, row_layout)

__all__ = ["QParams", "ConvArgs", "FitReport", "KpuLayerProgram", "quantize_weights", "conv_args", "make_bn",
           "activation_function", "fit_activation", "make_kpu_layer", "float_layer"]

# ----------------------------------------------------------------------------- the layer
@dataclass
class KpuLayerProgram:
    """Everything the KPU needs for one layer, plus the numbers behind it.

    ``words`` (12 uint64), ``bn_words`` (uint64 per output channel), ``act_words``
    (18 uint64, to be placed 256-byte aligned) and ``weights`` (uint8 OIHW bytes) are what
    the hardware reads; the rest documents how they were derived.
    """

    layer: KpuLayer
    words: np.ndarray
    bn: BnTable
    bn_words: np.ndarray
    act: ActTable
    act_words: np.ndarray
    weights: np.ndarray                  #: uint8, flattened OIHW (M · C/g · k · k bytes)
    weights_q: np.ndarray                #: the same, shaped (M, C/g, k, k)
    w_scales: np.ndarray                 #: per output channel, float64
    w_zero_point: int
    conv: ConvArgs
    x_q: QParams
    y_q: QParams
    v_exponent: int                      #: s_v = s_y · 2^−v_exponent
    v_scale: float
    v_range: tuple[int, int]             #: worst-case BN output range
    activation: Any
    pool: KpuPool
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    fit: FitReport
    depthwise: bool = False
    kernel: int = 3
    extra: dict = field(default_factory=dict)

    @property
    def in_bytes(self) -> int:
        return fmap_bytes(*self.in_shape)

    @property
    def out_bytes(self) -> int:
        return fmap_bytes(*self.out_shape)

    def quantize_input(self, x) -> np.ndarray:
        return self.x_q.quantize(x)

    def dequantize_output(self, y) -> np.ndarray:
        return self.y_q.dequantize(y)

    def relocate(self, *, src_addr: int | None = None, dst_addr: int | None = None,
                 weights_addr: int | None = None, bn_addr: int | None = None, act_addr: int | None = None,
                 send_data_out: bool | None = None) -> "KpuLayerProgram":
        """A copy with new addresses in the words (the memory planner's job)."""
        ch = {}
        if src_addr is not None:
            ch["image_src_addr"] = _row_addr(src_addr, "src_addr", self.in_bytes)
        if dst_addr is not None:
            ch["image_dst_addr"] = _row_addr(dst_addr, "dst_addr", self.out_bytes)
        if weights_addr is not None:
            ch["para_start_addr"] = int(weights_addr)
        if bn_addr is not None:
            ch["bwsx_base_addr"] = int(bn_addr)
        if act_addr is not None:
            if act_addr % ACT_TABLE_ALIGN:
                raise KpuError(f"the activation table address {act_addr:#x} must be {ACT_TABLE_ALIGN}-byte aligned")
            ch["active_addr"] = int(act_addr)
        if send_data_out is not None:
            ch["send_data_out"] = int(bool(send_data_out))
        layer = self.layer.replace(**ch)
        import dataclasses

        return dataclasses.replace(self, layer=layer, words=layer.to_words())


def _row_addr(addr: int, what: str, size: int) -> int:
    addr = int(addr)
    if addr % ROW_BYTES:
        raise KpuError(f"{what} {addr:#x} is not a multiple of {ROW_BYTES}")
    if addr < 0 or addr + size > AI_SRAM_BYTES:
        raise KpuError(f"{what} {addr:#x} + {size} bytes does not fit in the 2 MB AI SRAM")
    return addr // ROW_BYTES


def make_kpu_layer(x_q, weights, bias=None, *, in_shape, out_q, depthwise: bool = False,
                   activation=None, pool="none", channel_scale=None, src_addr: int = 0,
                   dst_addr: int | None = None, pad_value: int | None = None,
                   weight_zero_point: int | None = None, weights_addr: int = 0, bn_addr: int = 0,
                   act_addr: int = 0, send_data_out: bool = False, weights_quant=None,
                   max_segments: int = ACT_SEGMENTS) -> KpuLayerProgram:
    """Build one KPU layer from a float convolution.

    ``weights`` float ``(M, C, k, k)`` (or ``(C, 1, k, k)`` with ``depthwise``), k = 1 or 3,
    stride 1, "same" padding; ``bias`` float ``(M,)``; ``channel_scale`` an optional float
    ``(M,)`` applied to the convolution before the bias (a real batch-norm's γ/σ);
    ``in_shape`` = (C, H, W); ``x_q`` / ``out_q`` = (scale, zero point) of the uint8 input
    and output; ``activation`` a fused activation spec (``{"op": "Relu"}``,
    ``{"op": "Clip", "min": 0, "max": 6}``, ``{"op": "LeakyRelu", "alpha": 0.1}``,
    ``{"op": "Sigmoid"}``, ``{"op": "HardSwish"}``, ... or None); ``pool`` a
    :class:`~.spec.KpuPool` or its name. Addresses are byte addresses (feature maps in AI
    SRAM, 64-aligned; weights/BN/activation table in main memory); ``dst_addr`` defaults
    to right after the input map. ``pad_value`` defaults to the input zero point.
    ``weights_quant = (w_q uint8, scales (M,), zero_point)`` keeps already-quantized
    weights as they are (``weights`` is then only used for its shape).
    """
    x_q = QParams.of(x_q)
    y_q = QParams.of(out_q)
    w = np.asarray(weights, np.float64)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise KpuError(f"weights must be (M, C/g, k, k), got shape {w.shape}")
    c, h, wd = (int(v) for v in in_shape)
    m, cg, k, _ = w.shape
    if depthwise and cg != 1:
        raise KpuError(f"depthwise weights must be (C, 1, k, k), got {w.shape}")
    if not depthwise and cg != c:
        raise KpuError(f"weights {w.shape} do not match {c} input channels")
    why = layer_limit_violations(c, h, wd, m, k, depthwise)
    if why:
        raise KpuError("not a KPU layer: " + "; ".join(why))
    pool = parse_pool(pool)
    b = np.zeros(m) if bias is None else np.asarray(bias, np.float64).reshape(-1)
    gamma = np.ones(m) if channel_scale is None else np.asarray(channel_scale, np.float64).reshape(-1)
    if b.size != m or gamma.size != m:
        raise KpuError(f"bias and channel_scale need {m} values")
    pv = x_q.zero_point if pad_value is None else int(pad_value)

    if weights_quant is None:
        wq, w_scales, z_w = quantize_weights(w, weight_zero_point)
    else:
        wq = np.asarray(weights_quant[0])
        w_scales = np.asarray(weights_quant[1], np.float64).reshape(-1)
        z_w = int(weights_quant[2])
        if wq.dtype != np.uint8 or wq.shape != w.shape or w_scales.size != m or not 0 <= z_w <= 255:
            raise KpuError(f"weights_quant must be (uint8 {w.shape}, {m} scales, zero point 0..255)")
    args = conv_args(x_q.zero_point, z_w, k)
    dev = np.abs(wq.reshape(m, -1).astype(np.int64) - z_w).sum(axis=1)
    max_acc = dev * max(x_q.zero_point, 255 - x_q.zero_point, abs(pv - x_q.zero_point))
    if _per_channel_prelu(activation):     # one region of the v axis per slope (prelu_table.py)
        from .prelu_table import prelu_tables

        bn, e, s_v, v_lo, v_hi, act, report = prelu_tables(gamma * x_q.scale * w_scales, b, y_q, max_acc,
                                                           np.broadcast_to(activation["slope"], (m,)))
    else:
        bn, e, s_v, v_lo, v_hi = make_bn(gamma * x_q.scale * w_scales, b, y_q.scale, max_acc)
        act, report = fit_activation(activation, s_v, y_q, v_lo, v_hi, max_segments=max_segments)

    ho, wo = pool.out_size(h), pool.out_size(wd)
    if ho < 1 or wo < 1:
        raise KpuError(f"{pool.name} of a {h}x{wd} map leaves nothing")
    in_bytes = fmap_bytes(c, h, wd)
    out_bytes = fmap_bytes(m, ho, wo)
    if dst_addr is None:
        dst_addr = src_addr + in_bytes
    per_out = cg * k * k
    if depthwise:
        oc_one, loads = m, 1
    else:
        oc_one = min(m, WEIGHTS_LOAD_LIMIT // per_out)
        loads = -(-m // oc_one)
    if act_addr % ACT_TABLE_ALIGN:
        raise KpuError(f"the activation table address {act_addr:#x} must be {ACT_TABLE_ALIGN}-byte aligned")
    lin, lout = row_layout(wd), row_layout(wo)
    if send_data_out and wo * ho > 1 << 16:
        raise KpuError(f"a {ho}x{wo} output channel is too big for the DMA's 16-bit channel_byte_num")
    layer = KpuLayer(
        depth_wise_layer=int(bool(depthwise)),
        image_src_addr=_row_addr(src_addr, "src_addr", in_bytes),
        image_dst_addr=_row_addr(dst_addr, "dst_addr", out_bytes),
        i_ch_num=c - 1, o_ch_num=m - 1, o_ch_num_coef=oc_one - 1,
        i_row_wid=wd - 1, i_col_high=h - 1, o_row_wid=wo - 1, o_col_high=ho - 1,
        kernel_type=1 if k == 3 else 0, pad_type=0, pool_type=int(pool), first_stride=0, bypass_conv=0,
        load_para=1, dma_burst_size=15, pad_value=pv, bwsx_base_addr=int(bn_addr),
        load_coor=1, load_time=loads - 1, para_size=oc_one * per_out, para_start_addr=int(weights_addr),
        coef_column_offset=0, coef_row_offset=0,
        channel_switch_addr=lin.row_len * h, row_switch_addr=lin.row_len, coef_size=0, coef_group=lin.groups,
        load_act=1, active_addr=int(act_addr),
        wb_channel_switch_addr=lout.row_len * ho, wb_row_switch_addr=lout.row_len, wb_group=lout.groups,
        shr_w=args.shift_w, shr_x=args.shift_x, arg_w=args.arg_w, arg_x=args.arg_x, arg_add=args.arg_add,
        send_data_out=int(bool(send_data_out)), channel_byte_num=(wo * ho - 1) & 0xFFFF,
        dma_total_byte=wo * ho * m - 1,
    )
    return KpuLayerProgram(
        layer=layer, words=layer.to_words(), bn=bn, bn_words=encode_bn(bn), act=act, act_words=encode_act(act),
        weights=np.ascontiguousarray(wq).reshape(-1), weights_q=wq, w_scales=w_scales, w_zero_point=z_w,
        conv=args, x_q=x_q, y_q=y_q, v_exponent=e, v_scale=s_v, v_range=(v_lo, v_hi), activation=activation,
        pool=pool, in_shape=(c, h, wd), out_shape=(m, ho, wo), fit=report, depthwise=bool(depthwise), kernel=k)


def _per_channel_prelu(activation) -> bool:
    return (isinstance(activation, dict) and activation.get("op") == "PRelu"
            and np.asarray(activation.get("slope")).size > 1)


# ----------------------------------------------------------------------------- float semantics
def float_layer(x: np.ndarray, weights: np.ndarray, bias=None, *, depthwise: bool = False, activation=None,
                pool="none", channel_scale=None) -> np.ndarray:
    """The float meaning of a KPU layer on a ``(C, H, W)`` map: same-padded stride-1
    convolution, ``channel_scale`` and ``bias``, the activation, then the pool (max and
    mean over the same windows as the KPU, mean with edge replication at the border of a
    2×2 stride-1 pool; select takes the cell's pixel)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(weights, np.float64)
    c, h, wd = x.shape
    m, cg, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    y = np.zeros((m, h, wd))
    for ky in range(k):
        for kx in range(k):
            win = xp[:, ky:ky + h, kx:kx + wd]
            if depthwise:
                y += w[:, 0, ky, kx][:, None, None] * win
            else:
                y += np.tensordot(w[:, :, ky, kx], win, axes=1)
    if channel_scale is not None:
        y *= np.asarray(channel_scale, np.float64)[:, None, None]
    if bias is not None:
        y += np.asarray(bias, np.float64)[:, None, None]
    f, _, _ = activation_function(activation)
    y = f(y)
    pool = parse_pool(pool)
    s = pool.stride
    ho, wo = h // s, wd // s
    if pool.kind == "bypass":
        return y
    if pool.kind == "select":
        oy, ox = pool.select_offset
        return y[:, oy::s, ox::s][:, :ho, :wo]
    fs = pool.size
    if s == fs:
        cells = y[:, :ho * fs, :wo * fs].reshape(m, ho, fs, wo, fs)
        return cells.max(axis=(2, 4)) if pool.kind == "max" else cells.mean(axis=(2, 4))
    q = np.pad(y, ((0, 0), (0, 1), (0, 1)), mode="edge")
    if pool.kind == "max":
        q[:, h, :] = -np.inf
        q[:, :, wd] = -np.inf
        return np.maximum(np.maximum(q[:, :h, :wd], q[:, :h, 1:]), np.maximum(q[:, 1:, :wd], q[:, 1:, 1:]))
    return (q[:, :h, :wd] + q[:, :h, 1:] + q[:, 1:, :wd] + q[:, 1:, 1:]) / 4

"""Bit-exact emulation of one KPU layer, driven by its twelve register words.

:func:`run_layer` does what the KPU does with a layer argument: it reads the input map
from AI SRAM at ``image_src_addr`` through the row layout the words give
(``coef_group``, ``row_switch_addr``, ``channel_switch_addr``), the uint8 weights
(OIHW, ``M · C/g · k²`` bytes), the BN words and the activation table, computes the
layer in integer arithmetic and writes the output map at ``image_dst_addr`` through the
write-back layout (``wb_group``, ``wb_row_switch_addr``, ``wb_channel_switch_addr``).

The arithmetic (nncase 1.x's simulator, ``kernels/k210/k210_kernels.h``; see
``npuc/targets/k210/params.py`` for the derivation of the parameters):

1. convolution, stride 1, "same" padding with ``pad_value`` (k = 3: one pixel each side):
   ``acc = Σ x·w + ((arg_x · Σx) >> shr_x) + ((arg_w · Σw) >> shr_w) + arg_add · n``, sums
   over the k×k window and the input channels of the group (all C, or the one channel
   of a depthwise layer), ``n`` = input channels of the group (C, or 1);
2. batch-norm per output channel: ``v = ((acc · mul) >> shift) + add``;
3. activation: the highest segment ``i`` with ``v > start[i]`` (segment 0 if none),
   ``y = clamp(round_half_even((v − start[i]) · mul[i] / 2^shift[i]) + bias[i], 0, 255)``;
4. pooling of the uint8 map (:class:`~.spec.KpuPool`): max (outside pixels count as 0),
   mean (outside pixels replicate the edge; the sum is divided with truncation), select
   (top-left / top-right pixel of each cell); output size ``n // stride``.

``>>`` is the arithmetic (flooring) shift. The hardware's ALU and BN output are 36 bits
wide; parameters built by :mod:`.params` stay inside that range, and the emulator
computes in int64 without wrapping (a layer whose values leave 36 bits has no defined
result on the chip).

Speed: the normal convolution is a float64 BLAS matrix product per kernel tap (exact:
every partial sum is an integer below 2^53); depthwise taps are int32 numpy; BN and the
activation table run in one compiled numba loop (compiled lazily, cached on disk).
"""
from __future__ import annotations

import numpy as np

from .encode import KpuLayer, decode_act, decode_bn
from .layout import map_view
from .spec import (ACT_TABLE_ALIGN, ACT_TABLE_WORDS, AI_SRAM_BYTES, KpuError, KpuPool)

__all__ = ["run_layer", "emulate_layer", "pool_map"]


def _bn_act_py(acc, bn_mul, bn_shift, bn_add, start, amul, ashift, abias, out):  # pragma: no cover - numba
    m_count, p_count = acc.shape
    for m in range(m_count):
        mul = bn_mul[m]
        sh = bn_shift[m]
        add = bn_add[m]
        for p in range(p_count):
            v = ((acc[m, p] * mul) >> sh) + add
            s = 15
            while s > 0 and not v > start[s]:
                s -= 1
            prod = (v - start[s]) * amul[s]
            k = ashift[s]
            if k > 62:
                q = np.int64(0)
            elif k > 0:
                q = prod >> k
                r = prod - (q << k)
                half = np.int64(1) << (k - 1)
                if r > half or (r == half and (q & 1) == 1):
                    q += 1
            else:
                q = prod
            y = q + abias[s]
            if y < 0:
                y = 0
            elif y > 255:
                y = 255
            out[m, p] = y


def _dw_acc_py(xp, w, k, arg_x, shr_x, const, out):  # pragma: no cover - numba
    """Depthwise: out[c, y, x] = Σ w·x + ((arg_x · Σx) >> shr_x) + const[c] over the k×k window."""
    c_count, h, wd = out.shape
    for c in range(c_count):
        for y in range(h):
            for x in range(wd):
                dot = np.int64(0)
                sx = np.int64(0)
                for ky in range(k):
                    for kx in range(k):
                        v = np.int64(xp[c, y + ky, x + kx])
                        dot += v * np.int64(w[c, ky * k + kx])
                        sx += v
                out[c, y, x] = dot + ((arg_x * sx) >> shr_x) + const[c]


_KERNELS: dict = {}


def _kernel(name):
    f = _KERNELS.get(name)
    if f is None:
        import numba

        f = numba.njit(cache=True, nogil=True)({"bn_act": _bn_act_py, "dw_acc": _dw_acc_py}[name])
        _KERNELS[name] = f
    return f


def _bn_act():
    return _kernel("bn_act")


_STRIP_BYTES = 8 << 20        # float64 im2col strip size


def _conv_acc(x: np.ndarray, w: np.ndarray, L: KpuLayer) -> np.ndarray:
    """The 36-bit convolution results, int64 ``(M, H·W)``."""
    c, h, wd = x.shape
    m = L.out_channels
    k = L.kernel
    if k == 3:
        xp = np.full((c, h + 2, wd + 2), L.pad_value, np.uint8)
        xp[:, 1:-1, 1:-1] = x
    else:
        xp = x
    wsum = w.reshape(m, -1).sum(axis=1, dtype=np.int64)
    const = ((np.int64(L.arg_w) * wsum) >> np.int64(L.shr_w)) + np.int64(L.arg_add) * (1 if L.depthwise else c)
    if L.depthwise:
        acc = np.empty((c, h, wd), np.int64)
        _kernel("dw_acc")(xp, np.ascontiguousarray(w.reshape(c, k * k)), k, np.int64(L.arg_x), np.int64(L.shr_x),
                          const, acc)
        return acc.reshape(c, -1)
    if k == 1:
        dot = w.reshape(m, c).astype(np.float64) @ xp.reshape(c, -1).astype(np.float64)
        sx = xp.sum(axis=0, dtype=np.int64).reshape(-1)
    else:
        # im2col in strips of rows: columns (c, ky, kx) match the OIHW weight order
        wf = w.reshape(m, c * 9).astype(np.float64)
        dot = np.empty((m, h * wd), np.float64)
        rows = max(1, min(h, _STRIP_BYTES // (9 * c * wd * 8)))
        col = np.empty((c, 3, 3, rows, wd), np.float64)
        for y0 in range(0, h, rows):
            n = min(rows, h - y0)
            for ky in range(3):
                for kx in range(3):
                    col[:, ky, kx, :n] = xp[:, y0 + ky:y0 + ky + n, kx:kx + wd]
            np.matmul(wf, col[:, :, :, :n].reshape(c * 9, n * wd), out=dot[:, y0 * wd:(y0 + n) * wd])
        colsum = xp.sum(axis=0, dtype=np.int64)
        sx2 = np.zeros((h, wd), np.int64)
        for ky in range(3):
            for kx in range(3):
                sx2 += colsum[ky:ky + h, kx:kx + wd]
        sx = sx2.reshape(-1)
    acc = dot.astype(np.int64)
    acc += ((np.int64(L.arg_x) * sx) >> np.int64(L.shr_x))[None, :]
    acc += const[:, None]
    return acc


def pool_map(y: np.ndarray, pool: KpuPool) -> np.ndarray:
    """The KPU's pooling of a uint8 ``(M, H, W)`` map."""
    pool = KpuPool(pool)
    m, h, w = y.shape
    s = pool.stride
    ho, wo = h // s, w // s
    kind = pool.kind
    if kind == "bypass":
        return y
    if kind == "select":
        oy, ox = pool.select_offset
        return np.ascontiguousarray(y[:, oy::s, ox::s][:, :ho, :wo])
    f = pool.size
    if s == f:  # non-overlapping cells, all inside the map
        cells = y[:, :ho * f, :wo * f].reshape(m, ho, f, wo, f)
        if kind == "max":
            return cells.max(axis=(2, 4))
        return (cells.sum(axis=(2, 4), dtype=np.int32) // (f * f)).astype(np.uint8)
    # 2x2 stride 1: the window at the last row/column reaches one pixel past the map
    if kind == "max":
        p = np.zeros((m, h + 1, w + 1), np.uint8)
        p[:, :h, :w] = y
        return np.maximum(np.maximum(p[:, :h, :w], p[:, :h, 1:]), np.maximum(p[:, 1:, :w], p[:, 1:, 1:]))
    p = np.pad(y, ((0, 0), (0, 1), (0, 1)), mode="edge").astype(np.int32)
    return ((p[:, :h, :w] + p[:, :h, 1:] + p[:, 1:, :w] + p[:, 1:, 1:]) // 4).astype(np.uint8)


def _check_layer(L: KpuLayer) -> None:
    c, h, w = L.in_shape
    m, ho, wo = L.out_shape
    pool = L.pool
    _ = L.kernel
    if L.bypass_conv:
        raise KpuError("bypass_conv = 1 is not emulated (its semantics are undocumented)")
    if L.first_stride:
        raise KpuError("first_stride = 1 is not emulated (its semantics are undocumented)")
    if L.depthwise and c != m:
        raise KpuError(f"a depthwise layer needs as many outputs as inputs, got {c} -> {m}")
    if (ho, wo) != (pool.out_size(h), pool.out_size(w)):
        raise KpuError(f"output size {ho}x{wo} does not match {pool.name} of a {h}x{w} map "
                       f"({pool.out_size(h)}x{pool.out_size(w)})")
    per_out = (1 if L.depthwise else c) * L.kernel ** 2
    coef = L.o_ch_num_coef + 1
    loads = L.load_time + 1
    if L.para_size != coef * per_out or loads != -(-m // coef):
        raise KpuError(f"weight loads do not add up: {loads} load(s) of {coef} channel(s), para_size "
                       f"{L.para_size}, for {m} output channels of {per_out} bytes each")


def run_layer(sram, words, *, weights=None, bn=None, act=None, main=None) -> np.ndarray:
    """Run the KPU layer described by ``words`` (12 uint64) on ``sram`` (the 2 MB AI SRAM,
    a uint8 numpy array, modified in place) and return its output map ``(M, H', W')``.

    The weights (uint8 OIHW bytes), BN words (uint64, one per output channel) and the
    activation table (18 uint64 words) come either from the explicit arrays, or, when
    ``main`` (the 6 MB main SRAM image, uint8) is given, from it at the addresses in the
    words (``para_start_addr``, ``bwsx_base_addr``, ``active_addr``, read as offsets
    into ``main``), as the hardware fetches them.
    """
    if not isinstance(sram, np.ndarray):
        sram = np.frombuffer(sram, np.uint8)
    if sram.dtype != np.uint8 or sram.ndim != 1 or sram.size < AI_SRAM_BYTES:
        raise KpuError(f"AI SRAM must be a 1-D uint8 array of {AI_SRAM_BYTES} bytes, got "
                       f"{sram.dtype} {sram.shape}")
    L = KpuLayer.from_words(words)
    _check_layer(L)
    c, h, w = L.in_shape
    m, ho, wo = L.out_shape
    k = L.kernel
    nw = L.weight_bytes
    if main is not None:
        main = np.asarray(main).view(np.uint8).reshape(-1)
        if L.active_addr % ACT_TABLE_ALIGN:
            raise KpuError(f"active_addr {L.active_addr:#x} is not {ACT_TABLE_ALIGN}-byte aligned")
        for name, a, size in (("para_start_addr", L.para_start_addr, nw), ("bwsx_base_addr", L.bwsx_base_addr, 8 * m),
                              ("active_addr", L.active_addr, 8 * ACT_TABLE_WORDS)):
            if a + size > main.size:
                raise KpuError(f"{name} {a:#x} + {size} bytes is past the end of main memory ({main.size:#x})")
        weights = main[L.para_start_addr:L.para_start_addr + nw]
        bn = np.frombuffer(main[L.bwsx_base_addr:L.bwsx_base_addr + 8 * m].tobytes(), "<u8")
        act = np.frombuffer(main[L.active_addr:L.active_addr + 8 * ACT_TABLE_WORDS].tobytes(), "<u8")
    if weights is None or bn is None or act is None:
        raise KpuError("run_layer needs weights, bn and act (or main memory to fetch them from)")
    weights = np.asarray(weights).view(np.uint8).reshape(-1)
    if weights.size < nw:
        raise KpuError(f"the layer reads {nw} weight bytes, only {weights.size} given")
    bn_t = decode_bn(np.asarray(bn, np.uint64).reshape(-1)[:m])
    if len(bn_t) != m:
        raise KpuError(f"the layer needs {m} BN words, got {len(bn_t)}")
    act_t = decode_act(act)

    # 1. input map, through the layout of the words
    x = np.empty((c, h, w), np.uint8)
    g = L.coef_group
    for j, v in enumerate(map_view(sram, L.src_addr, c, h, w, groups=g, row_len=L.row_switch_addr,
                                   channel_rows=L.channel_switch_addr)):
        x[j::g] = v
    wq = weights[:nw].reshape(m, 1 if L.depthwise else c, k, k)

    # 2. convolution, BN, activation
    acc = _conv_acc(x, wq, L)
    y = np.empty((m, h * w), np.uint8)
    _bn_act()(acc, bn_t.mul, bn_t.shift, bn_t.add, act_t.start, act_t.mul, act_t.shift, act_t.bias, y)

    # 3. pooling and write-back
    out = pool_map(y.reshape(m, h, w), L.pool)
    g = L.wb_group
    for j, v in enumerate(map_view(sram, L.dst_addr, m, ho, wo, groups=g, row_len=L.wb_row_switch_addr,
                                   channel_rows=L.wb_channel_switch_addr)):
        v[...] = out[j::g]
    return out


def emulate_layer(sram, prog) -> np.ndarray:
    """Run a :class:`~.params.KpuLayerProgram` (its words, weights, BN and activation
    tables) on ``sram``; returns the output map."""
    return run_layer(sram, prog.words, weights=prog.weights, bn=prog.bn_words, act=prog.act_words)

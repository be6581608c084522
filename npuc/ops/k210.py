"""The Kendryte K210 target's ops: KPU layers and the copies between AI SRAM and the CPU.

A KPU feature map is a flat ``uint8`` tensor of ``fmap_bytes(C, Hm, Wm)`` bytes in the
KPU's 64-byte-row layout (see :mod:`npuc.targets.k210.layout`). The map may be larger
than the logical tensor it holds: the tensor is the *window* ``[:, y0:y0+H, x0:x0+W]`` of
the ``C × Hm × Wm`` map (uploads pad a tensor to the geometry a layer needs; a "valid"
convolution leaves junk rows around its window). The k210 lowering
(:mod:`npuc.targets.k210.lower`) creates these ops after quantization.

* ``KpuUpload(x)``: the CPU tensor ``x`` (uint8, ``C·H·W`` elements, NCHW order; or rows
  ``[r0, r1)`` and/or columns ``[c0, c1)`` of it, a tile; or its padded 2×2 space-to-depth, which turns a 5×5 or
  6×6 stride-2 convolution into a 3×3 one) into a ``C × Hm × Wm`` map, at ``window``,
  every other pixel of the map = ``pad_value``.
* ``KpuDownload(m)``: the window of map ``m`` back into a CPU tensor of ``out_shape``.
* ``KpuConv(x, weights, bn, act)``: one or more KPU layers (``layers``: the hardware's
  twelve register words each, plus where the layer reads and writes inside the input /
  output maps and where its weights, BN words and activation table are in the constant
  inputs). Several layers occur when a convolution is split by output channels (more
  than 1024 outputs, or more than 64 weight loads): each layer writes its channel range
  of the one output map.

The reference kernels here are the straightforward path: the emulator
(:func:`npuc.targets.k210.emulator.run_layer`) on a scratch 2 MB AI SRAM image, with the
input map at address 0 and the output right after it, so the register words' addresses
and layout fields are exercised as the hardware would use them.
"""
from __future__ import annotations

import numpy as np

from .registry import REQUIRED, InferContext, register


def _fmap_bytes(c: int, h: int, w: int) -> int:
    from ..targets.k210.layout import fmap_bytes

    return fmap_bytes(int(c), int(h), int(w))


def _source_window(x_shape, chw, rows, cols):
    """``(H, W, r0, c0)`` of the CPU tensor a window is taken from: the whole tensor
    (``chw``), or rows ``[r0, r1)`` and/or columns ``[c0, c1)`` of an NCHW tensor (a tile)."""
    c, h, w = (int(d) for d in chw)
    r0, r1 = (int(d) for d in rows)
    c0, c1 = (int(d) for d in (cols or (0, 0)))
    hs, y = (int(x_shape[-2]), r0) if r1 > r0 else (h, 0)
    ws, x = (int(x_shape[-1]), c0) if c1 > c0 else (w, 0)
    return hs, ws, y, x


def s2d_blocks(x: np.ndarray, pads, pad_value: int, shifts: int = 1) -> np.ndarray:
    """``(C, H, W)`` → ``(4C, ceil(Hp/2), ceil(Wp/2))``: the input padded by ``pads``
    (top, left, bottom, right; then to even sizes) with ``pad_value``, its 2×2 blocks
    spread over channels ``4c + 2·by + bx``. A k×k stride-2 convolution (k ≤ 6) of ``x``
    is the 3×3 stride-1 "valid" convolution of this tensor with the weights rearranged.
    With ``shifts = 2`` (k ≤ 12: 7×7 stems), four copies of that tensor shifted by 0 or 3
    rows and 0 or 3 columns, ``(16C, ceil(Hp/2) − 3, ceil(Wp/2) − 3)``, copy ``2·ay + ax``
    first: the taps 3..5 of the block grid become taps 0..2 of the shifted copies."""
    c, h, w = x.shape
    pt, pl, pb, pr = (int(p) for p in pads)
    hp, wp = h + pt + pb, w + pl + pr
    hs, ws = -(-hp // 2), -(-wp // 2)
    buf = np.full((c, 2 * hs, 2 * ws), pad_value, np.uint8)
    hk, wk = min(h, 2 * hs - pt), min(w, 2 * ws - pl)     # negative end pads drop unread rows
    buf[:, pt:pt + hk, pl:pl + wk] = x[:, :hk, :wk]
    s = np.ascontiguousarray(buf.reshape(c, hs, 2, ws, 2).transpose(0, 2, 4, 1, 3)).reshape(4 * c, hs, ws)
    if int(shifts) == 1:
        return s
    return np.concatenate([s[:, 3 * ay:hs - 3 + 3 * ay, 3 * ax:ws - 3 + 3 * ax] for ay in (0, 1) for ax in (0, 1)])


def _s2d_shape(x_shape, pads, shifts: int = 1) -> tuple[int, int, int]:
    c, h, w = (int(d) for d in x_shape[-3:])
    pt, pl, pb, pr = (int(p) for p in pads)
    hs, ws = -(-(h + pt + pb) // 2), -(-(w + pl + pr) // 2)
    return (4 * c, hs, ws) if int(shifts) == 1 else (16 * c, hs - 3, ws - 3)


def _s2d_source_shape(x_shape, rows, cols) -> tuple[int, int, int]:
    """(C, H, W) of the part of the CPU tensor a space-to-depth upload rearranges: its rows
    ``[r0, r1)`` and columns ``[c0, c1)`` when given (a tile), else all of it."""
    c, h, w = (int(d) for d in x_shape[-3:])
    r0, r1 = (int(d) for d in rows)
    c0, c1 = (int(d) for d in (cols or (0, 0)))
    return c, (r1 - r0 if r1 > r0 else h), (c1 - c0 if c1 > c0 else w)


def _upload_infer(ctx: InferContext):
    c, h, w = (int(d) for d in ctx.attrs["chw"])
    hm, wm = (int(d) for d in ctx.attrs["map"])
    y0, x0 = (int(d) for d in ctx.attrs["window"])
    n = int(np.prod(ctx.shape(0))) if ctx.shape(0) else 1
    if ctx.attrs.get("space_to_depth") is not None:
        if len(ctx.shape(0)) < 3 or _s2d_shape(_s2d_source_shape(ctx.shape(0), ctx.attrs["rows"], ctx.attrs["cols"]),
                                               ctx.attrs["space_to_depth"], ctx.attrs["s2d_shifts"]) != (c, h, w):
            raise ctx.fail(f"space-to-depth of {list(ctx.shape(0))} is not {c}x{h}x{w}")
    else:
        hs, ws, r0, c0 = _source_window(ctx.shape(0), ctx.attrs["chw"], ctx.attrs["rows"], ctx.attrs["cols"])
        if n != c * hs * ws or r0 + h > hs or c0 + w > ws:
            raise ctx.fail(f"input {list(ctx.shape(0))} does not hold the {c}x{h}x{w} window (from row {r0}, "
                           f"column {c0})")
    if ctx.dtype(0) != np.uint8:
        raise ctx.fail(f"only uint8 tensors go to AI SRAM, got {ctx.dtype(0)}")
    if y0 < 0 or x0 < 0 or y0 + h > hm or x0 + w > wm:
        raise ctx.fail(f"window {h}x{w} at ({y0}, {x0}) does not fit the {hm}x{wm} map")
    return [(np.dtype(np.uint8), (_fmap_bytes(c, hm, wm),))]


@register("KpuUpload", attrs={"chw": REQUIRED, "map": REQUIRED, "window": [0, 0], "pad_value": 0,
                              "rows": [0, 0], "cols": [0, 0], "space_to_depth": None, "s2d_shifts": 1},
          infer=_upload_infer)
def kpu_upload(x, *, chw, map, window, pad_value, rows, cols, space_to_depth, s2d_shifts):
    """CPU tensor (or its rows ``[r0, r1)`` / columns ``[c0, c1)``: a tile; or its padded space-to-depth
    rearrangement, see :func:`s2d_blocks`) → AI SRAM row layout, padded to the ``map``
    geometry with ``pad_value``."""
    from ..targets.k210.layout import to_rows

    c, h, w = (int(d) for d in chw)
    hm, wm = (int(d) for d in map)
    y0, x0 = (int(d) for d in window)
    full = np.full((c, hm, wm), int(pad_value), np.uint8)
    if space_to_depth is not None:     # of the whole tensor, or of a tile's rows / columns
        r0, r1 = (int(d) for d in rows)
        c0, c1 = (int(d) for d in (cols or (0, 0)))
        xs = np.asarray(x, np.uint8)
        xs = xs.reshape(xs.shape[-3:])
        xs = xs[:, r0:r1] if r1 > r0 else xs
        xs = xs[:, :, c0:c1] if c1 > c0 else xs
        src = s2d_blocks(xs, space_to_depth, int(pad_value), s2d_shifts)
    else:
        hs, ws, r0, c0 = _source_window(np.shape(x), chw, rows, cols)
        src = np.asarray(x, np.uint8).reshape(c, hs, ws)[:, r0:r0 + h, c0:c0 + w]
    full[:, y0:y0 + h, x0:x0 + w] = src
    return to_rows(full)


def _download_infer(ctx: InferContext):
    c, h, w = (int(d) for d in ctx.attrs["chw"])
    hm, wm = (int(d) for d in ctx.attrs["map"])
    shape = tuple(int(d) for d in ctx.attrs["out_shape"])
    if int(np.prod(shape)) != c * h * w:
        raise ctx.fail(f"out_shape {list(shape)} does not hold a {c}x{h}x{w} window")
    if ctx.shape(0) != (_fmap_bytes(c, hm, wm),):
        raise ctx.fail(f"input is {list(ctx.shape(0))}, a {c}x{hm}x{wm} map is {_fmap_bytes(c, hm, wm)} bytes")
    return [(np.dtype(np.uint8), shape)]


@register("KpuDownload", attrs={"chw": REQUIRED, "map": REQUIRED, "window": [0, 0], "out_shape": REQUIRED},
          infer=_download_infer)
def kpu_download(m, *, chw, map, window, out_shape):
    """AI SRAM row layout → CPU tensor: the window of the map, reshaped to ``out_shape``."""
    from ..targets.k210.layout import from_rows

    c, h, w = (int(d) for d in chw)
    hm, wm = (int(d) for d in map)
    y0, x0 = (int(d) for d in window)
    full = from_rows(np.asarray(m, np.uint8), (c, hm, wm))
    return np.ascontiguousarray(full[:, y0:y0 + h, x0:x0 + w]).reshape([int(d) for d in out_shape])


def _conv_infer(ctx: InferContext):
    c, h, w = (int(d) for d in ctx.attrs["in_map"])
    m, ho, wo = (int(d) for d in ctx.attrs["out_map"])
    if ctx.shape(0) != (_fmap_bytes(c, h, w),):
        raise ctx.fail(f"input is {list(ctx.shape(0))}, a {c}x{h}x{w} map is {_fmap_bytes(c, h, w)} bytes")
    return [(np.dtype(np.uint8), (_fmap_bytes(m, ho, wo),))]


@register("KpuConv", attrs={"layers": REQUIRED, "in_map": REQUIRED, "out_map": REQUIRED, "kernel": 3,
                            "stride": 1, "depthwise": 0, "pool": "none", "act": "Identity", "fused": None,
                            "row_tile": None, "residual_add": None},
          inputs=4, infer=_conv_infer)
def kpu_conv(x, weights, bn, act_table, *, layers, in_map, out_map, **_info):
    """Run the KPU layers on a scratch AI SRAM: input map at 0, output map right after."""
    from ..targets.k210.emulator import run_layer
    from ..targets.k210.encode import KpuLayer
    from ..targets.k210.layout import new_sram

    sram = new_sram()
    in_bytes = _fmap_bytes(*in_map)
    out_bytes = _fmap_bytes(*out_map)
    x = np.asarray(x, np.uint8).reshape(-1)
    sram[:in_bytes] = x[:in_bytes]
    weights = np.asarray(weights, np.uint8).reshape(-1)
    bn = np.asarray(bn, np.uint64).reshape(-1)
    act_table = np.asarray(act_table, np.uint64).reshape(-1)
    for i, lay in enumerate(layers):
        L = KpuLayer.from_words(np.asarray(lay["words"], np.uint64))
        L = L.replace(image_src_addr=int(lay["in_offset"]) // 64,
                      image_dst_addr=(in_bytes + int(lay["out_offset"])) // 64)
        w0, nw = int(lay["w_offset"]), int(lay["w_bytes"])
        b0, nb = int(lay["bn_offset"]), int(lay["channels"])
        a0 = int(lay["act_index"]) * 18
        run_layer(sram, L.to_words(), weights=weights[w0:w0 + nw], bn=bn[b0:b0 + nb], act=act_table[a0:a0 + 18])
    return sram[in_bytes:in_bytes + out_bytes].copy()

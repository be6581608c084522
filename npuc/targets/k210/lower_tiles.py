"""Tiles with halos: a layer too big for one KPU layer runs as a grid of smaller ones.

For maps taller than 256 rows or wider than 512 columns (the KPU's input limits), or a
layer whose input + output maps do not fit AI SRAM together. Each tile of output rows ×
output columns is its own KPU layer on an upload of the input rows and columns it reads
(its halo), with explicit padding where the tile meets the image border; the tiles come
back to the CPU and are joined (``Concat`` along the width within a band of rows, then
along the height). Stride 2 and fused pools work per tile: a tile starts on an output row
and column of the whole layer, so every select / pool cell lies inside one tile.
"""
from __future__ import annotations

import dataclasses
import math


from ...ir import Node
from .geometry import upload_axis
from .layer_specs import ConvSpec, activation_name, build_layers
from .layout import fmap_bytes
from .spec import MAX_IN_HEIGHT, MAX_IN_WIDTH, KpuError

TILE_BYTES = 1024 * 1024             #: input + output maps of one tile at most


def _axis_tiles(n_in: int, k: int, s: int, pb: int, pe: int, ps: int, out_n: int, per: int, is_col: bool):
    """Tiles of ``per`` outputs along one axis: ``(o0, o1, i0, i1, map axis, out axis, select offset)``
    with input ``[i0, i1)`` read and explicit pads where the tile meets the border; None when
    some tile has no KPU geometry."""
    out = []
    for o0 in range(0, out_n, per):
        o1 = min(out_n, o0 + per)
        a, b = o0 * ps, o1 * ps                        # conv outputs of the tile
        ja, jb = a * s - pb, (b - 1) * s + k - pb      # input positions read [ja, jb)
        i0, i1 = max(ja, 0), min(jb, n_in)
        pa, pz = max(0, -ja), max(0, jb - n_in)
        got = upload_axis(i1 - i0, k, s, pa, pz, ps, is_col)
        if got is None:
            return None
        ax, ax_out, off = got
        if ax_out.n != o1 - o0 or (off and not is_col):
            return None
        out.append((o0, o1, i0, i1, ax, ax_out, off, pa, pz))
    return out


def _balanced(out_n: int, limit: int):
    """Tile lengths from the largest to 1 output, balanced (``ceil(n / tiles)``) first."""
    for t in range(min(out_n, limit), 0, -1):
        tiles = math.ceil(out_n / t)
        yield math.ceil(out_n / tiles)
        yield t


def plan_tiles(spec: ConvSpec, ps: int):
    """``(row tiles, column tiles)`` of a conv (kernel, stride, pads of ``spec``, fused pool
    ``ps``) whose every tile is a KPU layer within :data:`TILE_BYTES`; None if there is none."""
    pt, pl, pb, pr = spec.pads
    k, s = spec.k, spec.stride
    out_h = ((spec.h + pt + pb - k) // s + 1) // ps
    out_w = ((spec.w + pl + pr - k) // s + 1) // ps
    cols = None
    for per in _balanced(out_w, MAX_IN_WIDTH):         # widest column tiles that fit the KPU
        cols = _axis_tiles(spec.w, k, s, pl, pr, ps, out_w, per, True)
        if cols:
            break
    if not cols:
        return None
    wide = max(c[4].size for c in cols)
    wide_out = max(c[5].size for c in cols)
    for per in _balanced(out_h, MAX_IN_HEIGHT):
        rows = _axis_tiles(spec.h, k, s, pt, pb, ps, out_h, per, False)
        if rows and all(fmap_bytes(spec.c, r[4].size, wide) + fmap_bytes(spec.m, r[5].size, wide_out) <= TILE_BYTES
                        for r in rows):
            return rows, cols
    return None


def try_tiled(low, n: Node, spec: ConvSpec, why: str) -> str | None:
    """Lower ``QConv`` ``n`` as a grid of tiles for :class:`~.lower.K210Lowering` ``low``;
    None when done, else the reason it stays on the CPU."""
    chain = low._fusable_chain(n)
    pool_node = next((u for u in chain if u.op in ("MaxPool", "QAvgPool")), None)
    ps = low._pool_size(pool_node) if (pool_node is not None and spec.stride == 1) else 1
    fused = chain if ps > 1 else [u for u in chain[:1] if u.op in ("Clip", "QLut")]
    if ps == 1:
        pool_node = None
    tiles = plan_tiles(spec, ps)
    if tiles is None:
        return f"{why}; no tiling fits the KPU's {MAX_IN_HEIGHT}x{MAX_IN_WIDTH} input limit and AI SRAM"
    rows, cols = tiles
    out_v = fused[-1].outputs[0] if fused else n.outputs[0]
    from .lower import clamp_bounds

    spec = low._with_lut(spec, fused)
    lo, hi = clamp_bounds(spec, fused)
    spec = low._with_mean_pool(spec, fused, lo, hi)
    names = [n.name] + [u.name for u in fused]
    act_name = activation_name(spec, lo, hi)
    x_cpu = low.cpu_value(n.inputs[0])
    _, pl, _, pr = spec.pads
    bands = []
    for i, (o0, o1, r0, r1, row_ax, row_out, _, ptop, pbot) in enumerate(rows):
        band = []
        for j, (q0, q1, c0, c1, col_ax, col_out, off, pleft, pright) in enumerate(cols):
            tag = "".join(f"/{a}{b}" for a, b, cnt in (("rows", i, len(rows)), ("cols", j, len(cols))) if cnt > 1)
            tspec = dataclasses.replace(spec, h=r1 - r0, w=c1 - c0, pads=(ptop, pleft, pbot, pright))
            pool = low._kpu_pool(spec.stride, ps, off, pool_node)
            try:
                built = build_layers(tspec, (spec.c, row_ax.size, col_ax.size), pool, lo, hi)
            except KpuError as e:
                return f"{why}; KPU parameters out of range: {e}"
            attrs = {"chw": [spec.c, r1 - r0, c1 - c0], "map": [row_ax.size, col_ax.size],
                     "window": [row_ax.start, col_ax.start], "pad_value": int(spec.x_q[1]),
                     "rows": [r0, r1], "cols": [c0, c1]}
            if spec.s2d is not None:    # the tile's rows / columns of the space-to-depth tensor
                attrs.update(_s2d_tile(spec, n.inputs[0].shape, (r0, r1), (c0, c1)))
            up = low.g.make_node("KpuUpload", [x_cpu], name=low._name(f"{n.inputs[0].name}/upload{tag}"),
                                 attrs=attrs, outputs=[f"{n.inputs[0].name}@kpu{tag.replace('/', '_')}"])
            up.outputs[0].quant = n.inputs[0].quant
            (ur0, ur1), (uc0, uc1) = attrs["rows"], attrs["cols"]
            low.reasons[up.name] = (f"copies input rows {ur0}..{ur1 - 1}, columns {uc0}..{uc1 - 1} (a tile with its "
                                    "halo) into AI SRAM" + (" as space-to-depth" if spec.s2d is not None else ""))
            conv = low.emit_conv(n.name, up.outputs[0], built, spec=spec, pool=pool,
                                 in_map=(spec.c, row_ax.size, col_ax.size),
                                 out_map=(spec.m, row_out.size, col_out.size), act=act_name, fused=names,
                                 out_value=out_v, suffix=tag, row_tile=[o0, o1])
            shape = list(out_v.shape)
            shape[2], shape[3] = o1 - o0, q1 - q0
            dn = low.g.make_node("KpuDownload", [conv], name=low._name(f"{out_v.name}/download{tag}"),
                                 attrs={"chw": [spec.m, o1 - o0, q1 - q0], "map": [row_out.size, col_out.size],
                                        "window": [row_out.start, col_out.start], "out_shape": shape},
                                 outputs=[f"{out_v.name}@tile{tag.replace('/', '_')}"])
            dn.outputs[0].quant = out_v.quant
            low.reasons[dn.name] = "copies a tile of a KPU result to general SRAM"
            band.append(dn.outputs[0])
        bands.append(_join(low, band, 3, f"{out_v.name}/concat_cols{i}", out_v.quant))
    for u in fused:
        low.fused_nodes.add(id(u))
    res = _join(low, bands, 2, f"{out_v.name}/concat_rows", out_v.quant,
                out_name=out_v.name if out_v.name not in low.g.values else f"{out_v.name}@cpu")
    low.cpu[id(out_v)] = res
    return None


def _s2d_tile(spec: ConvSpec, x_shape, t_rows, t_cols) -> dict:
    """Upload attributes for rows ``t_rows`` × columns ``t_cols`` of a space-to-depth tensor
    T (:func:`.layer_specs.s2d_spec`): T row j holds input rows ``2j − pt`` and ``2j − pt + 1``
    (and, with shifted copies, 3 block rows further), so the tile is the space-to-depth of
    the input rows / columns it covers, padded where they leave the input."""
    pt, pl, _, _ = spec.s2d[:4]
    shifts = int(spec.s2d[4]) if len(spec.s2d) > 4 else 1
    extra = 3 * (shifts - 1)
    h, w = int(x_shape[-2]), int(x_shape[-1])
    out = {"s2d_shifts": shifts}
    pads = []
    for (t0, t1), p0, n in ((t_rows, pt, h), (t_cols, pl, w)):
        start, end = 2 * t0 - p0, 2 * (t1 + extra) - p0
        i0, i1 = max(0, start), min(n, end)
        pads.append((i0 - start, end - i1, i0, i1))
    (ptop, pbot, r0, r1), (pleft, pright, c0, c1) = pads
    out.update(space_to_depth=[ptop, pleft, pbot, pright], rows=[r0, r1], cols=[c0, c1])
    return out


def _join(low, parts, axis: int, name: str, quant, out_name: str | None = None):
    """One tensor from tiles along ``axis`` (a CPU ``Concat``; the part itself if alone)."""
    if len(parts) == 1:
        return parts[0]
    cat = low.g.make_node("Concat", parts, name=low._name(name), attrs={"axis": axis},
                          outputs=[out_name or name.replace("/", "_")])
    cat.outputs[0].quant = quant
    low.reasons[cat.name] = "joins the tiles of a KPU layer"
    return cat.outputs[0]

"""Text rendering of a memory plan: one line per buffer, and an ASCII drawing of an arena
over time (steps left to right, addresses bottom to top)."""
from __future__ import annotations

from typing import Iterable

from .planner import Buffer, MemoryPlan

__all__ = ["format_plan", "draw_pool"]

_SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _symbols(bufs: list[Buffer]) -> dict:
    return {b.id: (_SYMBOLS[k] if k < len(_SYMBOLS) else "#") for k, b in enumerate(bufs)}


def _sorted_pool(plan: MemoryPlan, buffers: Iterable[Buffer], pool: str) -> list[Buffer]:
    bufs = [b for b in buffers if b.pool == pool]
    bufs.sort(key=lambda b: (plan.offsets[b.id], b.first, str(b.id)))
    return bufs


def format_plan(plan: MemoryPlan, buffers: Iterable[Buffer], *, draw: bool = False,
                width: int = 72, height: int = 16) -> str:
    """One header per pool (arena, lower bound, ratio, peak step, strategy) and one line
    per buffer (id, offset, size, aligned size, lifetime); with ``draw=True`` also the
    arena drawn by :func:`draw_pool`, buffers labelled by the ``sym`` column."""
    buffers = list(buffers)
    out = []
    for name, pp in plan.pools.items():
        bufs = _sorted_pool(plan, buffers, name)
        sym = _symbols(bufs)
        out.append(
            f"pool {name!r}: arena {pp.size:,} B, lower bound {pp.lower_bound:,} B "
            f"(x{pp.ratio:.3f}), peak at step {pp.peak_step}, strategy {pp.strategy}, "
            f"{pp.num_buffers} buffers, base alignment {pp.alignment}"
        )
        idw = max([len(str(b.id)) for b in bufs] + [2])
        head = f"  {'id':<{idw}} {'offset':>12} {'size':>12} {'aligned':>12}  steps"
        out.append(("  sym" + head) if draw else head)
        for b in bufs:
            line = (f"  {str(b.id):<{idw}} {plan.offsets[b.id]:>12,} {b.size:>12,} "
                    f"{b.aligned_size:>12,}  {b.first}..{b.last}")
            out.append(f"  {sym[b.id]:<3}" + line if draw else line)
        if draw:
            out.append(draw_pool(plan, bufs, name, width=width, height=height))
    return "\n".join(out)


def draw_pool(plan: MemoryPlan, buffers: Iterable[Buffer], pool: str = "main", *,
              width: int = 72, height: int = 16) -> str:
    """ASCII drawing of one arena: a column per step (or per group of steps when there are
    more than ``width``), a row per ``size/height`` bytes, highest addresses on top. A cell
    shows the buffer covering most of it ('.' when free)."""
    bufs = [b for b in _sorted_pool(plan, buffers, pool) if b.aligned_size]
    sym = _symbols(_sorted_pool(plan, buffers, pool))
    size = plan.pools[pool].size
    if not bufs or size == 0:
        return "  (empty arena)"
    t0 = min(b.first for b in bufs)
    t1 = max(b.last for b in bufs)
    nsteps = t1 - t0 + 1
    cols = min(width, nsteps)
    cw = max(1, min(4, width // cols))  # characters per column, to widen short plans
    rows = max(1, min(height, size))
    band = size / rows
    grid = [["."] * cols for _ in range(rows)]
    for c in range(cols):
        s0 = t0 + c * nsteps // cols
        s1 = t0 + (c + 1) * nsteps // cols - 1
        live = [b for b in bufs if b.first <= s1 and s0 <= b.last]
        for r in range(rows):
            lo, hi = r * band, (r + 1) * band
            best, cover = None, 0.0
            for b in live:
                o = plan.offsets[b.id]
                ov = min(hi, o + b.aligned_size) - max(lo, o)
                if ov > cover:
                    best, cover = b, ov
            if best is not None:
                grid[rows - 1 - r][c] = sym[best.id]
    lines = [f"  {size:>10,} +" + "-" * (cols * cw)]
    lines += ["             |" + "".join(ch * cw for ch in row) for row in grid]
    lines.append(f"  {0:>10} +" + "-" * (cols * cw))
    lines.append(f"              steps {t0}..{t1}" + (f" ({nsteps / cols:.1f} per column)" if cols < nsteps else ""))
    return "\n".join(lines)

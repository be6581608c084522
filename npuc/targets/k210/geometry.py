"""KPU map geometry: where a tensor sits in an AI SRAM map, and which maps a convolution can run on.

A map may be larger than the tensor it holds; :class:`Axis` tracks the window on one
spatial axis and whether the rows around it hold the pad value (see the "Map geometry"
section of :mod:`npuc.targets.k210.lower`). :func:`conv_axis` gives a layer's output axis
on an existing map, :func:`upload_axis` the smallest padded upload a layer works on.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir import Value
from .spec import MAX_IN_HEIGHT, MAX_IN_WIDTH, MIN_IN_HEIGHT, MIN_IN_WIDTH


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

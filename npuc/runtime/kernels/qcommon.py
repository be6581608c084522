"""Shared compile-time helpers of the integer kernels: per-channel requantization parameters,
code ranges, exactness bounds and scratch layout."""
from __future__ import annotations

import numpy as np

#: every integer up to 2^24 (2^53) is exact in float32 (float64)
F32_EXACT = float(2 ** 24)
F64_EXACT = float(2 ** 53)
INT_CODES = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int16))
I64 = np.dtype(np.int64)


def ro(a):
    """A read-only view (None stays None). Every array a loop only reads (inputs, weights,
    per-channel parameters, tables) is passed read-only, as the mapped constants are, so
    each numba loop compiles one specialization per dtype combination, not one more per
    writability."""
    if a is None:
        return None
    v = np.asarray(a).view()
    v.setflags(write=False)
    return v


def ro_inputs(b) -> list:
    """The binding's input views, read-only."""
    return [ro(x) for x in b.inputs]


def per_channel(v, c: int, dtype=np.int64) -> np.ndarray:
    """An attribute that is a scalar or a list of ``c`` values, as a contiguous array of ``c``."""
    a = np.asarray(v, dtype).reshape(-1)
    if a.size == 1:
        a = np.full(c, a[0], dtype)
    if a.size != c:
        raise ValueError(f"expected 1 or {c} values, got {a.size}")
    return np.ascontiguousarray(a)


def channel_count_ok(v, c: int) -> bool:
    return v is None or np.asarray(v).size in (1, c)


def rq_arrays(mult, shift, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(m, r, n)`` int64 arrays of ``c`` channels, ``r = 2^(n−1)`` (0 when n = 0)."""
    m = per_channel(mult, c)
    n = per_channel(shift, c)
    r = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), 0).astype(np.int64)
    return m, r, n


def scalar_rq(mult, shift) -> tuple[int, int, int] | None:
    """Per-tensor ``(m, r, n)`` as Python ints, or None when the attribute is not a scalar."""
    m, n = np.asarray(mult).reshape(-1), np.asarray(shift).reshape(-1)
    if m.size != 1 or n.size != 1:
        return None
    mi, ni = int(m[0]), int(n[0])
    return mi, (1 << (ni - 1)) if ni > 0 else 0, ni


def shift_ok(shift) -> bool:
    n = np.asarray(shift).reshape(-1)
    return n.size > 0 and bool(np.all((n >= 0) & (n <= 63)))


def code_amax(dtype, zp) -> int:
    """max |q − zp| over the codes of integer ``dtype``."""
    info = np.iinfo(np.dtype(dtype))
    z = int(np.asarray(zp).reshape(-1)[0]) if np.size(zp) else 0
    return max(abs(info.min - z), abs(info.max - z))


def is_int_code(dtype) -> bool:
    return np.dtype(dtype) in INT_CODES


def scalar_int(v) -> bool:
    try:
        return np.asarray(v).size == 1
    except Exception:
        return False


def align(n: int, a: int = 64) -> int:
    return (n + a - 1) // a * a


def carve(scratch: np.ndarray, parts: list[tuple[np.dtype, tuple[int, ...]]]) -> list[np.ndarray]:
    """Views of ``parts`` (dtype, shape) laid out one after another (64-byte aligned) in ``scratch``."""
    out, off = [], 0
    for dt, shape in parts:
        dt = np.dtype(dt)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        out.append(scratch[off:off + nbytes].view(dt).reshape(shape))
        off = align(off + nbytes)
    return out


def carve_bytes(parts: list[tuple[np.dtype, tuple[int, ...]]]) -> int:
    off = 0
    for dt, shape in parts:
        off = align(off + int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize)
    return off


def greedy_chunks(absw: np.ndarray, amax: int, limit: float = F32_EXACT) -> list[int] | None:
    """Split the reduction axis (axis 1 of ``absw`` (channels, K), entries |w − w_zp|) into
    contiguous chunks ``[k0 = 0, k1, ..., kJ = K]`` such that in every chunk and channel
    ``amax · Σ |w|`` ≤ ``limit``: then every partial sum of a chunk's dot products, in any
    order, is an integer of magnitude ≤ limit. None when one term alone exceeds it."""
    k = absw.shape[1]
    bounds = [0]
    run = np.zeros(absw.shape[0], np.float64)
    for i in range(k):
        col = absw[:, i].astype(np.float64) * amax
        if np.any(col > limit):
            return None
        if np.any(run + col > limit):
            bounds.append(i)
            run = col.copy()
        else:
            run += col
    bounds.append(k)
    return bounds

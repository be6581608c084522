"""Numba loops of the fused activation epilogue: :func:`act_row` (activation codes ``ACT_*``
of :func:`npuc.runtime.kernels._numba.parse_activation`), bias + activation, add + activation.

Plain Python; :func:`npuc.runtime.kernels._numba.jit` compiles a loop (and the helpers it
calls) on first use, with the conventions described in :mod:`npuc.runtime.kernels._numba`.
"""
from __future__ import annotations

import math

import numpy as np


def act_row(arr, start, n, act, a0, a1):
    """Apply activation ``act`` in place on ``arr[start:start + n]`` (1-D float32)."""
    row = arr[max(start, 0):]
    if act == 1:
        z = np.float32(0)
        for i in range(n):
            v = row[i]
            row[i] = z if v < z else v
    elif act == 2:
        lo = np.float32(a0)
        hi = np.float32(a1)
        for i in range(n):
            v = row[i]
            v = lo if v < lo else v
            row[i] = hi if v > hi else v
    elif act == 3:
        al = np.float32(a0)
        for i in range(n):
            v = row[i]
            row[i] = v if v >= 0 else v * al
    elif act == 4:
        for i in range(n):
            v = row[i]
            if v >= 0:
                row[i] = 1.0 / (1.0 + math.exp(-v))
            else:
                e = math.exp(v)
                row[i] = e / (1.0 + e)
    elif act == 5:
        al = np.float32(a0)
        be = np.float32(a1)
        for i in range(n):
            v = row[i] * al + be
            row[i] = min(max(v, np.float32(0)), np.float32(1))
    elif act == 6:
        for i in range(n):
            v = row[i]
            t = v / np.float32(6) + np.float32(0.5)
            row[i] = v * min(max(t, np.float32(0)), np.float32(1))
    elif act == 7:
        for i in range(n):
            row[i] = math.tanh(row[i])
    elif act == 8:
        for i in range(n):
            v = row[i]
            u = a0 * v
            if u >= 0:
                s = 1.0 / (1.0 + math.exp(-u))
            else:
                e = math.exp(u)
                s = e / (1.0 + e)
            row[i] = v * s


# --------------------------------------------------------------------------- loops
def epilogue(out, P, bias, has_bias, act, a0, a1, slope):
    """Rows of ``P`` elements of the flat ``out``: ``row r = act(row r + bias[r % len(bias)])``
    in place (conv: ``out (N, M, P)`` with a bias per channel; PRelu's slope per channel
    ``slope[r % len(slope)]``)."""
    R = out.shape[0] // P
    nb = bias.shape[0]
    ns = slope.shape[0]
    for r in range(R):
        base = max(r * P, 0)
        if has_bias:
            bv = bias[r % nb]
            for i in range(P):
                out[base + i] += bv
        if act == 9:
            act_row(out, base, P, 3, float(slope[r % ns]), 0.0)
        elif act != 0:
            act_row(out, base, P, act, a0, a1)


def add_act(out, other, has_other, act, a0, a1):
    """``out = act(out + other)`` elementwise in place on flat arrays of the same length."""
    n = out.shape[0]
    if has_other:
        for i in range(n):
            out[i] += other[i]
    if act != 0:
        act_row(out, 0, n, act, a0, a1)

r"""Calibration observers: the :class:`Observer` base class, :class:`MinMaxObserver`, and
the quantizer model the range searches score candidates with (see :mod:`npuc.quant.observers`
for the methods and the guarantees every observer gives).

Target integer types
--------------------
``range(signed=, bits=, symmetric=)`` names the integer type, because the KL and MSE searches
depend on how many levels the quantizer has. The quantizer modelled here is the one of
``npuc.quant.qparams`` (re-implemented privately in :func:`quantization_mse`; nothing is
imported from it)::

    qmin, qmax = (-2^(b-1), 2^(b-1)-1) if signed else (0, 2^b-1)
    asymmetric: s = (hi - lo) / (qmax - qmin),  z = clamp(round(qmin - lo/s), qmin, qmax)
    symmetric:  s = max(|lo|, |hi|) / (2^(b-1) - 1),  z = 0 (signed) or 2^(b-1) (unsigned)
    q = clamp(round_half_even(x / s) + z, qmin, qmax),   x̂ = s · (q - z)

so uint8 asymmetric has L = 255 steps over [lo, hi], int8 symmetric 127 steps per side.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from ..errors import OptionError


# ----------------------------------------------------------------------------------------
# the quantizer (private copy; the real qparams math lives in npuc.quant.qparams)


def _check_target(signed, bits, symmetric) -> tuple[bool, int, bool]:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= bits <= 32:
        raise OptionError(f"quantization bits must be an integer in [2, 32], got {bits!r}")
    return bool(signed), int(bits), bool(symmetric)


def _qlimits(signed: bool, bits: int) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _affine(lo, hi, signed: bool, bits: int, symmetric: bool):
    """Scale and zero point (float64 arrays broadcast from lo/hi) and the code limits."""
    qmin, qmax = _qlimits(signed, bits)
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    if symmetric:
        half = (1 << (bits - 1)) - 1
        scale = np.maximum(-lo, hi) / half
        zp = np.full_like(scale, 0.0 if signed else float(1 << (bits - 1)))
    else:
        scale = (hi - lo) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zp = np.clip(np.rint(qmin - lo / safe), qmin, qmax)
    return scale, zp, qmin, qmax


def _fake_quant(x, scale, zp, qmin, qmax):
    """``s·(clamp(rint(x/s) + z) − z)``; a zero scale (all-zero range) maps everything to 0."""
    safe = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(x / safe) + zp, qmin, qmax)
    return np.where(scale > 0, (q - zp) * safe, 0.0)


def quantization_mse(x, lo, hi, signed, bits, symmetric) -> float:
    """Mean squared error of quantizing ``x`` with the clipping range ``[lo, hi]``.

    Simulates the affine quantizer described in the module docstring (range widened to
    contain 0; round half to even; clamp to the type) in float64 and returns
    ``mean((x − x̂)²)`` over the finite values of ``x`` (0.0 if there are none).
    """
    signed, bits, symmetric = _check_target(signed, bits, symmetric)
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    scale, zp, qmin, qmax = _affine(float(lo), float(hi), signed, bits, symmetric)
    err = v - _fake_quant(v, scale, zp, qmin, qmax)
    return float(np.mean(err * err))


# ----------------------------------------------------------------------------------------
# observers


class Observer(ABC):
    """Watches one tensor's values batch by batch and proposes its clipping range."""

    method: str = ""

    def __init__(self) -> None:
        self._count = 0
        self._nonfinite = 0
        self._min = math.inf
        self._max = -math.inf

    # -- data ----------------------------------------------------------------------------
    def update(self, x: np.ndarray) -> None:
        """Add one batch of the tensor's values (any shape; NaN/inf are counted and skipped)."""
        a = np.asarray(x)
        if a.dtype.kind != "f":
            a = a.astype(np.float32)
        a = a.reshape(-1)
        if a.size == 0:
            return
        mn, mx = a.min(), a.max()
        if not (np.isfinite(mn) and np.isfinite(mx)):
            ok = np.isfinite(a)
            n_ok = int(np.count_nonzero(ok))
            self._nonfinite += a.size - n_ok
            if n_ok == 0:
                return
            a = a[ok]
            mn, mx = a.min(), a.max()
        self._count += a.size
        self._min = min(self._min, float(mn))
        self._max = max(self._max, float(mx))
        self._observe(a)

    def _observe(self, a: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Subclass hook: ``a`` is a flat array of finite values; min/max are updated."""

    @property
    def count(self) -> int:
        """Number of (finite) values seen."""
        return self._count

    @property
    def nonfinite(self) -> int:
        """Number of NaN/±inf values that were ignored."""
        return self._nonfinite

    @property
    def min(self) -> float:
        """Exact minimum of the finite values seen (+inf if none)."""
        return self._min

    @property
    def max(self) -> float:
        """Exact maximum of the finite values seen (-inf if none)."""
        return self._max

    # -- result --------------------------------------------------------------------------
    def range(self, *, signed: bool, bits: int, symmetric: bool) -> tuple[float, float]:
        """The clipping range ``(lo, hi)`` for the given integer type, ``lo <= 0 <= hi``.

        ``(0.0, 0.0)`` if no finite value or only zeros were seen.
        """
        signed, bits, symmetric = _check_target(signed, bits, symmetric)
        if self._count == 0:
            return 0.0, 0.0
        lo0, hi0 = min(self._min, 0.0), max(self._max, 0.0)
        if lo0 == 0.0 and hi0 == 0.0:
            return 0.0, 0.0
        lo, hi = self._range(signed, bits, symmetric)
        lo = float(min(max(lo, lo0), 0.0))
        hi = float(max(min(hi, hi0), 0.0))
        return lo, hi

    @abstractmethod
    def _range(self, signed: bool, bits: int, symmetric: bool) -> tuple[float, float]:
        """The method's range; called with at least one non-zero finite value seen."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(count={self._count}, min={self._min:g}, "
                f"max={self._max:g})")


class MinMaxObserver(Observer):
    """Exact running min/max: ``[min(x_min, 0), max(x_max, 0)]``, no clipping."""

    method = "minmax"

    def _range(self, signed, bits, symmetric):
        return min(self._min, 0.0), max(self._max, 0.0)

"""Sliding-window geometry shared by Conv, ConvTranspose and the pools.

One place computes padding and output sizes, so the reference kernels, shape inference,
fusion passes and the fast kernels all agree. Everything here is per spatial dimension
``i`` (the dimensions after N and C) and follows the ONNX specification:

* effective (dilated) kernel: ``dk = (k - 1)·d + 1``
* ``auto_pad = NOTSET``: explicit ``pads = [b_0, b_1, ..., e_0, e_1, ...]``;
  ``out = floor((in + b + e - dk) / s) + 1``, or with ``ceil_mode``
  ``out = ceil((in + b + e - dk) / s) + 1``, minus one when that last window would start
  in the end padding (``(out - 1)·s >= in + b``), as ONNX and PyTorch specify;
* ``VALID``: no padding, ``out = floor((in - dk) / s) + 1`` (``ceil`` with ``ceil_mode``, as
  ONNX shape inference and onnxruntime do);
* ``SAME_UPPER`` / ``SAME_LOWER``: ``out = ceil(in / s)``,
  ``total = max(0, (out - 1)·s + dk - in)`` split evenly, the odd element going to the end
  (UPPER) or the beginning (LOWER); ``ceil_mode`` does not change it. (onnxruntime's pools
  ignore the dilation here; npuc follows the specification and ONNX shape inference.)

With ``ceil_mode`` the last window may run past the end padding; :attr:`WindowGeometry.extra`
is that overflow. Pools treat it as absent elements (never counted by AveragePool, -inf
for MaxPool); it is not part of ``pads``.

ConvTranspose (:func:`conv_transpose_geometry`) computes
``out = s·(in - 1) + output_padding + dk - b - e``; with ``output_shape`` given, or
``auto_pad`` SAME_* (``out = in·s``), the pads are derived from
``total = s·(in - 1) + output_padding + dk - out``: SAME_UPPER puts ``total // 2`` at the
beginning, every other mode puts ``total - total // 2`` there (onnx reference semantics).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ShapeError

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass(frozen=True)
class WindowGeometry:
    """The resolved geometry of a sliding-window op over ``len(in_shape)`` spatial dims."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    extra: tuple[int, ...]          # ceil_mode overflow past pads_end (0 without ceil_mode)

    @property
    def ndim(self) -> int:
        return len(self.in_shape)

    @property
    def pads(self) -> list[int]:
        """ONNX-style explicit pads ``[b_0, ..., b_n, e_0, ..., e_n]`` (without ``extra``)."""
        return list(self.pads_begin) + list(self.pads_end)

    @property
    def dilated_kernel(self) -> tuple[int, ...]:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))

    @property
    def padded_shape(self) -> tuple[int, ...]:
        """Extent of the padded input the windows read (including ``extra``)."""
        return tuple(b + n + e + x for b, n, e, x in
                     zip(self.pads_begin, self.in_shape, self.pads_end, self.extra))


def _ints(name: str, v, n: int, default: int) -> tuple[int, ...]:
    if v is None or (not isinstance(v, int) and len(v) == 0):
        return (default,) * n
    if isinstance(v, int):
        v = [v]
    v = tuple(int(x) for x in v)
    if len(v) != n:
        raise ShapeError(f"{name} has {len(v)} values, expected {n} (one per spatial dimension)")
    return v


def normalize_window_attrs(ndim: int, kernel: Sequence[int], strides=None, dilations=None,
                           pads=None) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Fill defaults and validate ``kernel, strides, dilations, pads`` for ``ndim`` spatial dims."""
    kernel = _ints("kernel_shape", kernel, ndim, 1)
    strides = _ints("strides", strides, ndim, 1)
    dilations = _ints("dilations", dilations, ndim, 1)
    pads = _ints("pads", pads, 2 * ndim, 0)
    if any(k < 1 for k in kernel):
        raise ShapeError(f"kernel_shape {list(kernel)} must be positive")
    if any(s < 1 for s in strides):
        raise ShapeError(f"strides {list(strides)} must be positive")
    if any(d < 1 for d in dilations):
        raise ShapeError(f"dilations {list(dilations)} must be positive")
    if any(p < 0 for p in pads):
        raise ShapeError(f"pads {list(pads)} must not be negative")
    return kernel, strides, dilations, pads


def _check_auto_pad(auto_pad: str) -> str:
    if auto_pad not in AUTO_PADS:
        raise ShapeError(f"auto_pad {auto_pad!r} is not one of {', '.join(AUTO_PADS)}")
    return auto_pad


def window_geometry(in_shape: Sequence[int], kernel: Sequence[int], strides=None, dilations=None,
                    pads=None, auto_pad: str = "NOTSET", *, ceil_mode: bool = False) -> WindowGeometry:
    """Resolve padding and output size of a Conv / pool window over spatial ``in_shape``.

    Raises :class:`ShapeError` when the attributes are inconsistent or the window does not
    fit in the padded input.
    """
    in_shape = tuple(int(x) for x in in_shape)
    n = len(in_shape)
    kernel, strides, dilations, pads = normalize_window_attrs(n, kernel, strides, dilations, pads)
    auto_pad = _check_auto_pad(auto_pad)
    out, pb, pe, extra = [], [], [], []
    for i in range(n):
        size, k, s, d = in_shape[i], kernel[i], strides[i], dilations[i]
        dk = (k - 1) * d + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-size // s)
            total = max(0, (o - 1) * s + dk - size)
            small = total // 2
            b, e = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
        else:
            b, e = (0, 0) if auto_pad == "VALID" else (pads[i], pads[n + i])
            span = size + b + e - dk
            if span < 0:
                raise ShapeError(f"the window (kernel {k}, dilation {d} → {dk}) is larger than the padded "
                                 f"input ({size} + pads {b}+{e}) in spatial dimension {i}")
            if ceil_mode:
                o = -(-span // s) + 1
                if (o - 1) * s >= size + b:   # the last window would start in the end padding
                    o -= 1
            else:
                o = span // s + 1
        out.append(o)
        pb.append(b)
        pe.append(e)
        extra.append(max(0, (o - 1) * s + dk - (size + b + e)))
    return WindowGeometry(in_shape, tuple(out), kernel, strides, dilations, tuple(pb), tuple(pe), tuple(extra))


def resolve_pads(in_shape: Sequence[int], kernel: Sequence[int], strides=None, dilations=None,
                 pads=None, auto_pad: str = "NOTSET", *, ceil_mode: bool = False) -> list[int]:
    """The explicit ONNX-style pads ``[b_0, ..., e_0, ...]`` that ``auto_pad`` stands for."""
    return window_geometry(in_shape, kernel, strides, dilations, pads, auto_pad, ceil_mode=ceil_mode).pads


def conv_output_shape(in_shape: Sequence[int], kernel: Sequence[int], strides=None, dilations=None,
                      pads=None, auto_pad: str = "NOTSET", *, ceil_mode: bool = False) -> tuple[int, ...]:
    """Spatial output shape of a Conv or pool window over spatial ``in_shape``."""
    return window_geometry(in_shape, kernel, strides, dilations, pads, auto_pad, ceil_mode=ceil_mode).out_shape


@dataclass(frozen=True)
class TransposeGeometry:
    """Resolved geometry of ConvTranspose: output position ``o`` of input ``i`` and kernel tap
    ``j`` is ``i·s + j·d - pads_begin`` (positions outside ``[0, out)`` are dropped)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    output_padding: tuple[int, ...]

    @property
    def pads(self) -> list[int]:
        return list(self.pads_begin) + list(self.pads_end)


def conv_transpose_geometry(in_shape: Sequence[int], kernel: Sequence[int], strides=None, dilations=None,
                            pads=None, auto_pad: str = "NOTSET", output_padding=None,
                            output_shape=None) -> TransposeGeometry:
    """Resolve output size and pads of ConvTranspose over spatial ``in_shape``.

    ``output_shape`` may list the spatial dims only, or all dims (N, C, spatial...)."""
    in_shape = tuple(int(x) for x in in_shape)
    n = len(in_shape)
    kernel, strides, dilations, pads = normalize_window_attrs(n, kernel, strides, dilations, pads)
    auto_pad = _check_auto_pad(auto_pad)
    opad = _ints("output_padding", output_padding, n, 0)
    for i in range(n):
        if not 0 <= opad[i] < max(strides[i], dilations[i]):
            raise ShapeError(f"output_padding {list(opad)} must be non-negative and smaller than "
                             f"max(stride, dilation) in each spatial dimension")
    if output_shape is not None and len(output_shape) > 0:
        output_shape = [int(x) for x in output_shape]
        if len(output_shape) == n + 2:
            output_shape = output_shape[2:]
        if len(output_shape) != n:
            raise ShapeError(f"output_shape {output_shape} has {len(output_shape)} values, "
                             f"expected {n} (one per spatial dimension)")
    else:
        output_shape = None
    if output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = [in_shape[i] * strides[i] for i in range(n)]
    out, pb, pe = [], [], []
    for i in range(n):
        dk = (kernel[i] - 1) * dilations[i] + 1
        full = strides[i] * (in_shape[i] - 1) + opad[i] + dk
        if output_shape is not None:
            o = output_shape[i]
            total = full - o
            small = total // 2
            b, e = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
        elif auto_pad == "VALID":
            b = e = 0
            o = full
        else:
            b, e = pads[i], pads[n + i]
            o = full - b - e
        if o < 1:
            raise ShapeError(f"output size {o} in spatial dimension {i} is not positive "
                             f"(input {in_shape[i]}, pads {b}+{e})")
        out.append(o)
        pb.append(b)
        pe.append(e)
    return TransposeGeometry(in_shape, tuple(out), kernel, strides, dilations, tuple(pb), tuple(pe), opad)


def conv_transpose_output_shape(in_shape: Sequence[int], kernel: Sequence[int], strides=None, dilations=None,
                                pads=None, auto_pad: str = "NOTSET", output_padding=None,
                                output_shape=None) -> tuple[int, ...]:
    """Spatial output shape of ConvTranspose over spatial ``in_shape``."""
    return conv_transpose_geometry(in_shape, kernel, strides, dilations, pads, auto_pad,
                                   output_padding, output_shape).out_shape

"""Numba loop kernels shared by the float kernels, compiled lazily and cached on disk.

The functions below are plain Python; :func:`jit` compiles one with
``numba.njit(cache=True, nogil=True)`` the first time a kernel is *built* (at load time),
so ``import npuc`` and compiling a model never import numba. The on-disk cache
(``__pycache__`` beside this file, or numba's user cache dir when that is read-only) makes
every later process load the machine code instead of compiling it.

Conventions, chosen so each function compiles to few specializations:

* arrays are float32 and C-contiguous (the arena views are), 4-D ``(N, C, H, W)`` for
  the spatial kernels (1-D spatial ops are run with ``H = 1``);
* integers are passed as Python ints (int64), floats as Python floats (float64);
* ``act, a0, a1`` is a fused activation epilogue (codes ``ACT_*`` from
  :func:`parse_activation`, applied by :func:`act_row`).

Layout: this module holds the activation codes, the build-time helpers (:func:`ro`,
:func:`parse_activation`, :func:`prelu_slope`) and :func:`jit`; the loops live in
:mod:`._numba_act` (activation epilogues), :mod:`._numba_conv` (im2col, window loop,
depthwise, Winograd) and :mod:`._numba_tensor` (global pools, softmax, resize, gather,
scale/shift).

No function uses ``parallel=True``: numba would start a thread pool of its own beside
OpenBLAS's. The runtime is single-threaded per op; BLAS may use its own threads.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

# the loops live in three modules by kind; every name stays importable from here
from . import _numba_act, _numba_conv, _numba_tensor
from ._numba_act import act_row, add_act, epilogue  # noqa: F401
from ._numba_conv import (depthwise_cl, im2col, im2col_s2d, window2d, window_scratch, winograd_in,  # noqa: F401
                          winograd_out)
from ._numba_tensor import (gather2d, global_avg, global_max, resize_linear2d, scale_shift,  # noqa: F401
                            softmax, softmax_last)

(ACT_NONE, ACT_RELU, ACT_CLIP, ACT_LEAKY, ACT_SIGMOID, ACT_HARDSIGMOID, ACT_HARDSWISH, ACT_TANH, ACT_SWISH,
 ACT_PRELU) = range(10)

def ro(a: np.ndarray) -> np.ndarray:
    """A read-only view: constant arguments (weights, biases, tables) are always passed
    read-only, as the mapped constants are, so each loop compiles one specialization."""
    v = a.view()
    v.setflags(write=False)
    return v


def parse_activation(attrs: dict[str, Any]) -> tuple[int, float, float] | None:
    """The fused activation of a node from its ``activation`` attribute, as ``(act, a0, a1)``.

    The attribute is ``{"op": NAME, **params}`` (see :mod:`npuc.ops.epilogue`; a bare name
    is accepted too); absent or None means no activation. Fused here: Relu, Clip
    (``min``/``max``, either may be absent), LeakyRelu (``alpha``), Sigmoid, HardSigmoid
    (``alpha``, ``beta``), HardSwish, Tanh, Swish (``alpha``), and PRelu (``ACT_PRELU``: the
    kernel takes the per-channel slope from :func:`prelu_slope`). Anything else returns
    None: the kernel then declines the node.
    """
    a = attrs.get("activation")
    if a is None:
        return ACT_NONE, 0.0, 0.0
    if isinstance(a, str):
        a = {"op": a}
    if not isinstance(a, dict):
        return None
    name = a.get("op")

    def num(key, default):
        v = a.get(key)
        return float(default if v is None else np.asarray(v).reshape(-1)[0])

    if name == "Relu":
        return ACT_RELU, 0.0, 0.0
    if name == "Clip":
        return ACT_CLIP, num("min", -np.inf), num("max", np.inf)
    if name == "LeakyRelu":
        return ACT_LEAKY, num("alpha", 0.01), 0.0
    if name == "Sigmoid":
        return ACT_SIGMOID, 0.0, 0.0
    if name == "HardSigmoid":
        return ACT_HARDSIGMOID, num("alpha", 0.2), num("beta", 0.5)
    if name == "HardSwish":
        return ACT_HARDSWISH, 0.0, 0.0
    if name == "Tanh":
        return ACT_TANH, 0.0, 0.0
    if name == "Swish":
        return ACT_SWISH, num("alpha", 1.0), 0.0
    if name == "PRelu":
        return ACT_PRELU, 0.0, 0.0
    return None


def prelu_slope(attrs: dict[str, Any], out_shape, channel_axis: int = 1) -> np.ndarray | None:
    """The fused PRelu slope as one float32 value per channel (axis ``channel_axis`` of the
    output), or None when it varies along another axis. Without a fused PRelu: ``[0]``."""
    a = attrs.get("activation")
    if not isinstance(a, dict) or a.get("op") != "PRelu":
        return np.zeros(1, np.float32)
    slope = np.asarray(a.get("slope"), np.float32)
    rank = len(out_shape)
    if slope.ndim > rank:
        return None
    full = slope.reshape((1,) * (rank - slope.ndim) + slope.shape)
    m = out_shape[channel_axis]
    for ax, d in enumerate(full.shape):
        if d != 1 and ax != channel_axis:
            return None
    per = full.reshape(-1)
    if per.size not in (1, m):
        return None
    return np.ascontiguousarray(np.broadcast_to(per, (m,)), np.float32)


# --------------------------------------------------------------------------- lazy jit
_SOURCES: dict[str, Callable] = {f.__name__: f for f in (
    epilogue, add_act, im2col, im2col_s2d, window2d, depthwise_cl, winograd_in, winograd_out, global_avg, global_max, softmax,
    softmax_last, resize_linear2d, gather2d, scale_shift)}
_HELPERS = {"_tap": ("always", _numba_conv._tap), "act_row": ("never", act_row),
            "_fill_s2": ("never", _numba_conv._fill_s2), "_s2d_fill": ("never", _numba_conv._s2d_fill),
            "_wino_row": ("never", _numba_conv._wino_row)}
_JITTED: dict[str, Callable] = {}


_LOOP_MODULES = (_numba_act, _numba_conv, _numba_tensor)


def _jit_helpers():
    """Jit the helpers once and put them in place of the Python functions in every loop
    module that calls them (numba resolves a loop's globals in its own module)."""
    import numba

    for name, (inline, f) in _HELPERS.items():
        if not hasattr(f, "py_func"):
            _HELPERS[name] = (inline, numba.njit(cache=True, nogil=True, inline=inline)(f))
        for mod in _LOOP_MODULES:
            if name in vars(mod):
                vars(mod)[name] = _HELPERS[name][1]


def jit(name: str) -> Callable:
    """The compiled version of the loop kernel ``name`` (compiled or loaded from the disk
    cache on first use)."""
    f = _JITTED.get(name)
    if f is None:
        import numba

        _jit_helpers()
        f = numba.njit(cache=True, nogil=True, error_model="numpy")(_SOURCES[name])
        _JITTED[name] = f
    return f

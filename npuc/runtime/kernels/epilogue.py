"""In-place fused activations for kernel epilogues (see :mod:`npuc.ops.epilogue`).

``make_epilogue(spec, out)`` returns a closure that applies the activation to ``out`` in
place without allocating (numpy ``out=`` ufuncs, or a numba kernel for the transcendental
ones), or None when ``spec`` is None. Kernels that fuse the activation into their own
loops set ``Kernel.handles_activation``; for the others the Session chains this closure
after the kernel.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import KernelError


def make_epilogue(spec: dict | None, out: np.ndarray):
    if not spec:
        return None
    name = spec["op"]
    dt = out.dtype.type
    if name == "Relu":
        z = dt(0)
        return lambda: np.maximum(out, z, out=out)
    if name == "Clip":
        lo, hi = spec.get("min"), spec.get("max")
        lo = None if lo is None else dt(lo)
        hi = None if hi is None else dt(hi)
        if lo is not None and hi is not None:
            return lambda: np.clip(out, lo, hi, out=out)
        if lo is not None:
            return lambda: np.maximum(out, lo, out=out)
        if hi is not None:
            return lambda: np.minimum(out, hi, out=out)
        return None
    if name == "PRelu":
        slope = np.broadcast_to(np.asarray(spec["slope"], out.dtype), out.shape)
        return _numba_unary(out, "prelu", slope)
    if name == "LeakyRelu":
        return _numba_unary(out, "leaky", dt(spec.get("alpha", 0.01)))
    if name == "Sigmoid":
        return _numba_unary(out, "sigmoid", dt(0))
    if name == "HardSigmoid":
        a, b = dt(spec.get("alpha", 0.2)), dt(spec.get("beta", 0.5))

        def run():
            np.multiply(out, a, out=out)
            np.add(out, b, out=out)
            np.clip(out, 0, 1, out=out)
        return run
    if name == "HardSwish":
        return _numba_unary(out, "hardswish", dt(0))
    if name == "Swish":
        return _numba_unary(out, "swish", dt(spec.get("alpha", 1.0)))
    if name == "Tanh":
        return lambda: np.tanh(out, out=out)
    if name == "Mish":
        return _numba_unary(out, "mish", dt(0))
    if name == "Gelu":
        return _numba_unary(out, "gelu_tanh" if spec.get("approximate") == "tanh" else "gelu", dt(0))
    if name == "Elu":
        return _numba_unary(out, "elu", dt(spec.get("alpha", 1.0)))
    if name == "Selu":
        a, g = spec.get("alpha", 1.6732632423543772), spec.get("gamma", 1.0507009873554805)
        f = _numba_unary(out, "elu", dt(a))

        def run():
            f()
            np.multiply(out, dt(g), out=out)
        return run
    if name == "Softplus":
        return lambda: np.logaddexp(out, dt(0), out=out)
    # any other registered activation: reference semantics (allocates)
    from ...ops.epilogue import apply_activation

    def run():
        np.copyto(out, apply_activation(out, spec))
    return run


_KERNELS = {}


def _numba_unary(out: np.ndarray, kind: str, param):
    if not out.flags.c_contiguous:
        raise KernelError("fused activation needs a contiguous output")
    flat = out.reshape(-1)
    if kind == "prelu":
        # materialized once at load time: a per-element slope the loop can index
        slope = np.ascontiguousarray(np.broadcast_to(param, out.shape)).reshape(-1)
        fn = _get("prelu")
        return lambda: fn(flat, slope)
    fn = _get(kind)
    return lambda: fn(flat, param)


def _get(kind: str):
    if kind in _KERNELS:
        return _KERNELS[kind]
    import numba

    jit = numba.njit(cache=True, fastmath=False)
    if kind == "prelu":
        @jit
        def k(x, s):
            for i in range(x.size):
                if x[i] < 0:
                    x[i] = x[i] * s[i]
    elif kind == "leaky":
        @jit
        def k(x, a):
            for i in range(x.size):
                if x[i] < 0:
                    x[i] = x[i] * a
    elif kind == "sigmoid":
        @jit
        def k(x, _):
            for i in range(x.size):
                v = x[i]
                if v >= 0:
                    x[i] = 1.0 / (1.0 + math.exp(-v))
                else:
                    e = math.exp(v)
                    x[i] = e / (1.0 + e)
    elif kind == "swish":
        @jit
        def k(x, a):
            for i in range(x.size):
                v = x[i]
                t = a * v
                if t >= 0:
                    x[i] = v / (1.0 + math.exp(-t))
                else:
                    e = math.exp(t)
                    x[i] = v * e / (1.0 + e)
    elif kind == "hardswish":
        @jit
        def k(x, _):
            for i in range(x.size):
                v = x[i]
                x[i] = v * min(max(v / 6.0 + 0.5, 0.0), 1.0)
    elif kind == "mish":
        @jit
        def k(x, _):
            for i in range(x.size):
                v = x[i]
                sp = max(v, 0.0) + math.log1p(math.exp(-abs(v)))
                x[i] = v * math.tanh(sp)
    elif kind == "gelu":
        @jit
        def k(x, _):
            for i in range(x.size):
                v = x[i]
                x[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))
    elif kind == "gelu_tanh":
        @jit
        def k(x, _):
            for i in range(x.size):
                v = x[i]
                x[i] = 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    elif kind == "elu":
        @jit
        def k(x, a):
            for i in range(x.size):
                if x[i] <= 0:
                    x[i] = a * math.expm1(x[i])
    else:
        raise KernelError(f"no fused activation kernel {kind!r}")
    _KERNELS[kind] = k
    return k

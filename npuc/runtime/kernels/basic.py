"""Allocation-free kernels for views, elementwise ops and activations (numpy ``out=``)."""
from __future__ import annotations

import numpy as np

from ...ops.registry import ops_with_flag
from .base import Binding, Kernel, register_kernel


class _Alias(Kernel):
    alias = True

    def build(self, b: Binding):
        return None


for _op in sorted(ops_with_flag("view")):
    register_kernel(type(f"Alias{_op}", (_Alias,), {"op": _op, "name": f"alias_{_op.lower()}"}))


class ConcatInPlace(Kernel):
    """A Concat whose inputs were placed in their slices of the output by the planner:
    nothing to do at run time. Chosen by the lowering, never by ``select_kernel``."""

    op, name = "Concat", "concat_in_place"

    def supports(self, node) -> bool:
        return False

    def build(self, b: Binding):
        return None


CONCAT_IN_PLACE = register_kernel(ConcatInPlace)()
_ = CONCAT_IN_PLACE


_BINARY_UFUNC = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum, "Min": np.minimum,
                 "Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
                 "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or,
                 "Xor": np.logical_xor}


class _Binary(Kernel):
    inplace_input = 0
    ufunc = None

    def supports(self, node) -> bool:
        return len(node.inputs) == 2 and all(v is not None for v in node.inputs)

    def build(self, b: Binding):
        f, (x, y), out = self.ufunc, b.inputs, b.outputs[0]
        if x.shape == out.shape and y.shape != out.shape:
            def run():
                f(x, y, out=out)
        else:
            xb = np.broadcast_to(x, out.shape)
            yb = np.broadcast_to(y, out.shape)

            def run():
                f(xb, yb, out=out)
        return run


for _op, _f in _BINARY_UFUNC.items():
    register_kernel(type(f"Binary{_op}", (_Binary,), {"op": _op, "name": f"binary_{_op.lower()}",
                                                      "ufunc": staticmethod(_f)}))


@register_kernel
class DivFloat(_Binary):
    op, name = "Div", "binary_div_float"
    ufunc = staticmethod(np.divide)

    def supports(self, node):
        return super().supports(node) and node.outputs[0].dtype.kind == "f"


_UNARY_UFUNC = {"Abs": np.abs, "Neg": np.negative, "Sqrt": np.sqrt, "Exp": np.exp, "Log": np.log,
                "Floor": np.floor, "Ceil": np.ceil, "Sign": np.sign, "Sin": np.sin, "Cos": np.cos,
                "Tanh": np.tanh, "Not": np.logical_not, "Round": np.rint}


class _Unary(Kernel):
    inplace_input = 0
    ufunc = None

    def supports(self, node):
        return node.outputs[0].dtype.kind in "fb"

    def build(self, b: Binding):
        f, x, out = self.ufunc, b.inputs[0], b.outputs[0]

        def run():
            f(x, out=out)
        return run


for _op, _f in _UNARY_UFUNC.items():
    register_kernel(type(f"Unary{_op}", (_Unary,), {"op": _op, "name": f"unary_{_op.lower()}",
                                                    "ufunc": staticmethod(_f)}))


@register_kernel
class Relu(Kernel):
    op, name, inplace_input = "Relu", "relu", 0

    def build(self, b):
        x, out = b.inputs[0], b.outputs[0]
        zero = out.dtype.type(0)

        def run():
            np.maximum(x, zero, out=out)
        return run


@register_kernel
class ClipKernel(Kernel):
    op, name, inplace_input = "Clip", "clip", 0

    def supports(self, node):
        return all(v is None or v.is_const for v in node.inputs[1:])

    def build(self, b):
        x, out = b.inputs[0], b.outputs[0]
        lo = b.inputs[1] if len(b.inputs) > 1 else None
        hi = b.inputs[2] if len(b.inputs) > 2 else None
        lo = None if lo is None else out.dtype.type(lo)
        hi = None if hi is None else out.dtype.type(hi)
        if lo is not None and hi is not None:
            def run():
                np.clip(x, lo, hi, out=out)
        elif lo is not None:
            def run():
                np.maximum(x, lo, out=out)
        elif hi is not None:
            def run():
                np.minimum(x, hi, out=out)
        else:
            def run():
                np.copyto(out, x)
        return run


@register_kernel
class SigmoidKernel(Kernel):
    """σ(x) = 1 / (1 + e^(−x)), computed in place in the output (exp overflow gives 0/1)."""

    op, name, inplace_input = "Sigmoid", "sigmoid", 0

    def supports(self, node):
        return node.outputs[0].dtype.kind == "f"

    def build(self, b):
        x, out = b.inputs[0], b.outputs[0]

        def run():
            with np.errstate(over="ignore"):
                np.negative(x, out=out)
                np.exp(out, out=out)
                np.add(out, 1, out=out)
                np.reciprocal(out, out=out)
        return run


@register_kernel
class IdentityCopy(Kernel):
    """Identity/Dropout that could not alias (e.g. an output that is also an input)."""

    op, name = "Identity", "identity_copy"

    def supports(self, node):
        return False  # the alias kernel handles Identity; kept for explicit selection

    def build(self, b):
        x, out = b.inputs[0], b.outputs[0]

        def run():
            np.copyto(out, x)
        return run

"""Kernel interface: compile-time choice and packing, load-time binding to arena views.

A :class:`Kernel` implements one registry op (or one case of it):

* ``supports(node)`` (compile time, IR node): can this kernel run the node?
* ``prepare(node)`` (compile time): returns a :class:`Prepared` with constant inputs
  re-packed into the layout the kernel consumes (stored that way in the file, never
  rearranged at load), extra attributes, and the scratch bytes the kernel needs;
* ``build(b)`` (load time): given views of its inputs, outputs and scratch (all made once,
  over the arena and the mapped constants), return a closure that computes the op into the
  output views and allocates nothing, or None when the op needs no work (an alias).

Kernels register per op in preference order; the first that supports a node wins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ...errors import KernelError


@dataclass
class Prepared:
    packed: dict[int, np.ndarray] = field(default_factory=dict)   # input slot -> packed constant
    attrs: dict[str, Any] = field(default_factory=dict)           # extra attrs stored with the op
    scratch: int = 0                                              # scratch bytes


@dataclass
class Binding:
    """What ``Kernel.build`` sees at load time."""

    name: str
    op: str
    attrs: dict[str, Any]
    inputs: list[np.ndarray | None]
    outputs: list[np.ndarray]
    scratch: np.ndarray | None
    threads: int = 1


class Kernel:
    op: str = ""
    name: str = ""
    #: output may be the same buffer as input ``inplace_input`` (elementwise in-place)
    inplace_input: int | None = None
    #: output is a view of input 0 (no work at run time)
    alias: bool = False
    #: applies a fused ``activation`` attribute itself (else the Session chains the
    #: generic in-place epilogue of :mod:`npuc.runtime.kernels.epilogue` after it)
    handles_activation: bool = False

    def supports(self, node) -> bool:
        return True

    def prepare(self, node) -> Prepared:
        return Prepared()

    def build(self, b: Binding) -> Callable[[], None] | None:
        raise NotImplementedError


_KERNELS: dict[str, list[Kernel]] = {}
_BY_NAME: dict[str, Kernel] = {}


def register_kernel(kernel_cls):
    """Class decorator: register a kernel (earlier registrations are preferred)."""
    k = kernel_cls()
    if not k.op or not k.name:
        raise ValueError(f"{kernel_cls.__name__} needs op and name")
    if k.name in _BY_NAME:
        raise ValueError(f"kernel {k.name} registered twice")
    _KERNELS.setdefault(k.op, []).append(k)
    _BY_NAME[k.name] = k
    return kernel_cls


def _ensure_loaded():
    from . import _all  # noqa: F401


def select_kernel(node) -> Kernel:
    _ensure_loaded()
    for k in _KERNELS.get(node.op, []):
        if k.supports(node):
            return k
    return REFERENCE


def kernel_by_name(name: str) -> Kernel:
    _ensure_loaded()
    if name == REFERENCE.name:
        return REFERENCE
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KernelError(f"kernel {name!r} is not known to this npuc; recompile the model") from None


def kernels_for(op: str) -> list[Kernel]:
    _ensure_loaded()
    return list(_KERNELS.get(op, []))


class ReferenceKernel(Kernel):
    """Runs the registry's numpy reference kernel and copies into the output views.

    Used for ops that have no fast kernel yet; it allocates temporaries per run."""

    op = "*"
    name = "reference"
    handles_activation = True  # the registry's run() applies it

    def build(self, b: Binding):
        from ...ops.registry import get_op

        opdef = get_op(b.op)
        ins, outs, attrs = b.inputs, b.outputs, b.attrs

        def run():
            res = opdef.run(ins, attrs)
            for o, r in zip(outs, res):
                np.copyto(o, np.asarray(r).reshape(o.shape), casting="unsafe")

        return run


REFERENCE = ReferenceKernel()

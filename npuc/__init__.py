"""npuc: a neural-network compiler for edge AI accelerators.

Public API::

    npuc.compile("model.onnx", "model.npuc", input_shapes={"input": [1, 3, 224, 224]})
    sess = npuc.load("model.npuc")
    outputs = sess.run({"input": x})

The names are resolved lazily, so ``import npuc.errors`` (or any one stage) does not load
the whole compiler, and importing npuc has no side effects.
"""
from __future__ import annotations

import importlib

from .errors import NpucError

__version__ = "0.1.0"

_LAZY = {
    "compile": ("npuc.api", "compile"),
    "load": ("npuc.api", "load"),
    "CompileReport": ("npuc.api", "CompileReport"),
    "Session": ("npuc.runtime.session", "Session"),
    "TensorSpec": ("npuc.runtime.session", "TensorSpec"),
}


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'npuc' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["CompileReport", "NpucError", "Session", "TensorSpec", "compile", "load", "__version__"]

"""The one error hierarchy of npuc.

Every error npuc raises on purpose is a subclass of :class:`NpucError`. Messages name the
file, node or tensor at fault and say what to do about it.
"""
from __future__ import annotations


class NpucError(Exception):
    """Base class of every error npuc raises on purpose."""


class ImportError_(NpucError):
    """A model file could not be imported (bad file, unsupported op, unknown dimension)."""


class UnsupportedOpError(ImportError_):
    """The model uses ops npuc does not implement; ``unsupported`` lists all of them."""

    def __init__(self, message: str, unsupported: list[tuple[str, str, int]] | None = None):
        super().__init__(message)
        #: list of (op_type, node_name, opset)
        self.unsupported = unsupported or []


class ShapeError(NpucError):
    """A shape could not be inferred or is inconsistent."""


class GraphError(NpucError):
    """The IR violates one of its invariants (raised by the verifier)."""


class OptionError(NpucError):
    """An option given to compile/run/CLI has an invalid value."""


class FormatError(NpucError):
    """A .npuc file is truncated, corrupted, of another version, or not a .npuc file."""


class InputError(NpucError):
    """Inputs given to Session.run do not match the model's signature."""


class MemoryPlanError(NpucError):
    """Memory planning failed (e.g. a pool's capacity is exceeded)."""


class KernelError(NpucError):
    """No kernel can run a node, or a kernel failed while running."""


ModelImportError = ImportError_

__all__ = [
    "NpucError",
    "ModelImportError",
    "UnsupportedOpError",
    "ShapeError",
    "GraphError",
    "OptionError",
    "FormatError",
    "InputError",
    "MemoryPlanError",
    "KernelError",
]

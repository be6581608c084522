"""Frontends: the only modules that import model-format packages (onnx, tflite)."""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelImportError


def load_model(path, *, input_shapes=None):
    """Import a model file into a :class:`~npuc.ir.Graph`, choosing the frontend by suffix."""
    p = Path(path)
    if not p.exists():
        raise ModelImportError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        from .onnx import import_onnx

        return import_onnx(p, input_shapes=input_shapes)
    if suffix == ".tflite":
        try:
            from .tflite import import_tflite
        except ImportError as e:  # pragma: no cover - depends on installation
            raise ModelImportError(f"{p}: the TFLite frontend is not available ({e})") from e
        return import_tflite(p, input_shapes=input_shapes)
    raise ModelImportError(f"{p}: unknown model format {suffix!r}; npuc imports .onnx and .tflite files")

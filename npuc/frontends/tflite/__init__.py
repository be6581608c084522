"""TFLite frontend: ``import_tflite(path, *, input_shapes=None) -> Graph``.

The flatbuffer is read with the ``tflite`` package's generated schema code; see
``docs/tflite.md`` for the supported ops, the layout handling and the limits.
"""
from .importer import import_tflite

__all__ = ["import_tflite"]

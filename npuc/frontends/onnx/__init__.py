"""ONNX frontend."""
from .importer import import_onnx

__all__ = ["import_onnx"]

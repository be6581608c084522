"""ONNX converters for reduce ops."""

"""ONNX converters for tensor ops."""

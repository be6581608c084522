"""ONNX converters for nn ops."""

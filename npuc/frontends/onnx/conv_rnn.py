"""ONNX converters for rnn ops."""

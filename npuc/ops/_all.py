"""Imports every op module once so that each registers its ops."""
from . import elementwise, nn, quant, reduce, rnn, tensor  # noqa: F401

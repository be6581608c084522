"""Imports every op module once so that each registers its ops."""
from . import elementwise, nn, reduce, rnn, tensor  # noqa: F401

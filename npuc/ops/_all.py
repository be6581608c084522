"""Imports every op module once so that each registers its ops."""
from . import elementwise  # noqa: F401

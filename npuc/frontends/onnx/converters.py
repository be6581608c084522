"""Imports every converter module so that each registers its converters."""
from . import conv_basic  # noqa: F401

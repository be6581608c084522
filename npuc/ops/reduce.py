"""reduce ops (see the module docstring once written)."""

"""Caches: in-process LRU bounded in bytes, the tiered cache with a shared Redis layer, and
files derived from model weights.

Import from the modules; the package imports nothing itself, so modules of different
packages may import each other without a cycle through a package."""

__all__ = ["local", "model_files", "tiered"]

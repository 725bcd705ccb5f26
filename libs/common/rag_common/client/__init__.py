"""Calling another internal service: channels, replicas with ejection, hedging, and the
embedding client that two services share.

Import from the modules; the package imports nothing itself, so modules of different
packages may import each other without a cycle through a package."""

__all__ = ["channel", "embedding", "endpoints", "hedging"]

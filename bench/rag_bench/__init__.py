"""Benchmarks: the four services end to end against the same pipeline in one process."""

"""Health: dependency probes, operating signals judged against thresholds, process usage,
and the verdict HealthDetailsService reports.

Import from the modules; the package imports nothing itself, so modules of different
packages may import each other without a cycle through a package."""

__all__ = ["details", "probes", "process", "servicer", "signals", "verdict"]

"""What a service tells its operators: JSON logs, Prometheus metrics, OpenTelemetry traces,
and the plain counters core objects keep for them.

Import from the modules; the package imports nothing itself, so modules of different
packages may import each other without a cycle through a package."""

__all__ = ["logs", "metrics", "stats", "tracing"]

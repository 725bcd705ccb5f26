"""Developer scripts (code generation helpers, README tables)."""

"""Developer scripts (code generation helpers, the docs' generated tables)."""

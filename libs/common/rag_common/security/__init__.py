"""Who is calling: identities and roles, the suite's signed internal credentials, TLS files,
and the audit log of writes and refusals.

Import from the modules; the package imports nothing itself, so modules of different
packages may import each other without a cycle through a package."""

__all__ = ["audit", "credentials", "identity", "tls"]

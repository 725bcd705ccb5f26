"""Serving a service: the host and its bootstrap, the interceptor, and the guards every call
passes (keyless share, fair use, busy shedding, stalled streams).

The interceptor's parts (decoding, request_scope, outcomes, plumbing) are its own business.

Import from the modules; the package imports nothing itself, so modules of different
packages may import each other without a cycle through a package."""

__all__ = ["busy_shedding", "fair_use", "host", "interceptor", "keyless", "stall_guard"]

"""Vendor adapters."""

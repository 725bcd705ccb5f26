"""A conversion's failure as the sandbox's child reports it: a reason name and a message,
both plain strings, so they cross the process boundary as they are."""

from __future__ import annotations


class ConversionError(Exception):
    """A document that cannot be converted; `reason` names a `Reason` member."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self):
        """Both fields, so it crosses the pipe from the child whole."""
        return type(self), (self.reason, self.message)

"""The one error taxonomy: each error knows its gRPC status code name and a stable reason.

The core raises these; the server interceptor turns them into `google.rpc.Status` with one
`ErrorInfo`, and the client helpers turn a status from another service back into the same
class, so an error keeps its meaning across hops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rag_common.reasons import Reason

if TYPE_CHECKING:
    from rag_common.security.identity import Identity

ERROR_DOMAIN = "rag.v1"


class RagError(Exception):
    """Base of every error a caller may see; `code` names a `grpc.StatusCode` member."""

    code = "INTERNAL"
    default_reason = Reason.INTERNAL

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(RagError):
    """The request is malformed; `field` names the offending field (for example `top_k`)."""

    code = "INVALID_ARGUMENT"
    default_reason = Reason.INVALID_ARGUMENT

    def __init__(self, field: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(f"{field}: {message}", reason=reason, metadata={"field": field})
        self.field = field


class Unauthenticated(RagError):
    """No credentials, or credentials that match no known caller."""

    code = "UNAUTHENTICATED"
    default_reason = Reason.UNAUTHENTICATED


class PermissionDenied(RagError):
    """The caller is known but its roles do not allow the call; `caller` is who it is (for
    the audit log, never for the reply)."""

    code = "PERMISSION_DENIED"
    default_reason = Reason.PERMISSION_DENIED

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        caller: Identity | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.caller = caller

    @classmethod
    def role_required(cls, role: str, caller: Identity | None) -> PermissionDenied:
        """The refusal of a caller whose roles do not include `role`."""
        return cls(
            f"this call needs the '{role}' role",
            reason=Reason.ROLE_REQUIRED,
            metadata={"required_role": role},
            caller=caller,
        )


class NotFound(RagError):
    """The named thing does not exist."""

    code = "NOT_FOUND"
    default_reason = Reason.NOT_FOUND


class ResourceExhausted(RagError):
    """Rate limited or shed under load; the caller may retry later (after `retry_after_s`,
    sent as a `google.rpc.RetryInfo`, when known)."""

    code = "RESOURCE_EXHAUSTED"
    default_reason = Reason.RESOURCE_EXHAUSTED

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_s = retry_after_s


class Unavailable(RagError):
    """A dependency is down or the service is not ready; retrying may succeed."""

    code = "UNAVAILABLE"
    default_reason = Reason.UNAVAILABLE


class FailedPrecondition(RagError):
    """The call is valid but cannot work in this deployment (e.g. a backup of a server store)."""

    code = "FAILED_PRECONDITION"
    default_reason = Reason.FAILED_PRECONDITION


class DeadlineExceeded(RagError):
    """The request's time budget ran out."""

    code = "DEADLINE_EXCEEDED"
    default_reason = Reason.DEADLINE_EXCEEDED


class Unimplemented(RagError):
    """The service has no such method: a replica of an older release."""

    code = "UNIMPLEMENTED"
    default_reason = Reason.UNIMPLEMENTED


class Internal(RagError):
    """A fault of ours; the message sent to the caller never says more than this."""

    code = "INTERNAL"
    default_reason = Reason.INTERNAL


ERRORS_BY_CODE: dict[str, type[RagError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        ResourceExhausted,
        Unavailable,
        FailedPrecondition,
        DeadlineExceeded,
        Unimplemented,
        Internal,
    )
}

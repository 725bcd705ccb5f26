"""Encode errors as `google.rpc.Status` with one `ErrorInfo`, and decode them on the way back.

grpcio-status (gRPC's reference mapping) puts the status into trailers and reads it back,
checking that it agrees with the call's own code and message.
"""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from rag_common.errors import (
    ERROR_DOMAIN,
    ERRORS_BY_CODE,
    InvalidArgument,
    RagError,
    ResourceExhausted,
    Unavailable,
)
from rag_common.reasons import Reason

M = TypeVar("M", bound=Message)


def status_code(error: RagError) -> grpc.StatusCode:
    """The gRPC status code that `error` stands for."""
    return grpc.StatusCode[error.code]


# An error travels in trailers, which peers refuse past 8 KiB: a message or a value that
# echoes a caller's input is cut to these lengths, so every error reply can be sent.
MAX_MESSAGE_CHARS = 1024
MAX_METADATA_CHARS = 256


def encode(error: RagError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """Return (code, message, trailing metadata) that carry `error` as a rich status."""
    status = rpc_status.to_status(_rich_status(error))
    return status.code, status.details, status.trailing_metadata


def to_bytes(error: RagError) -> bytes:
    """`error` as a serialized rich status: what one part of a batch call failed with."""
    return _rich_status(error).SerializeToString()


def from_bytes(data: bytes, *, dependency: str) -> RagError:
    """The error a serialized rich status from `dependency` stands for (see `decode`)."""
    try:
        status = status_pb2.Status.FromString(data)
    except DecodeError:
        status = status_pb2.Status(code=grpc.StatusCode.UNKNOWN.value[0])
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    return _error(
        code, status.message, _first(status.details, error_details_pb2.ErrorInfo), dependency
    )


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _rich_status(error: RagError) -> status_pb2.Status:
    code = status_code(error)
    metadata = {
        _cut(key, MAX_METADATA_CHARS): _cut(value, MAX_METADATA_CHARS)
        for key, value in error.metadata.items()
    }
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    details = [_packed(info)]
    if isinstance(error, ResourceExhausted) and error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(
        code=code.value[0], message=_cut(error.message, MAX_MESSAGE_CHARS), details=details
    )


def _packed(message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def retry_delay(rpc_error: grpc.aio.AioRpcError) -> float | None:
    """Seconds the `google.rpc.RetryInfo` of a failed call asks to wait, if it has one."""
    info = _detail(rpc_error, error_details_pb2.RetryInfo)
    return None if info is None else info.retry_delay.ToNanoseconds() / 1e9


def error_info(rpc_error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The `ErrorInfo` inside a failed call's rich status, if it carries one."""
    return _detail(rpc_error, error_details_pb2.ErrorInfo)


def _detail(rpc_error: grpc.aio.AioRpcError, kind: type[M]) -> M | None:
    """The first detail of type `kind` in the call's rich status; None without one, or with
    one that does not parse or disagrees with the call's own status (a peer's bug)."""
    try:
        status = rpc_status.from_call(rpc_error)
    except (ValueError, DecodeError):
        return None
    return _first(status.details, kind) if status is not None else None


def _first(details, kind: type[M]) -> M | None:
    for detail in details:
        found = kind()
        if detail.Unpack(found):
            return found
    return None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode(rpc_error: grpc.aio.AioRpcError, *, dependency: str) -> RagError:
    """Turn a failed call to `dependency` back into the error class it stands for.

    A rich status keeps its code, message, reason and metadata. A bare one (from gRPC itself:
    connection refused, deadline passed, load shed) keeps its code, not its text, and names
    the dependency; codes the taxonomy does not model count as the dependency unavailable.
    """
    return _error(rpc_error.code(), rpc_error.details() or "", error_info(rpc_error), dependency)


def _error(
    code: grpc.StatusCode,
    details: str,
    info: error_details_pb2.ErrorInfo | None,
    dependency: str,
) -> RagError:
    if code is grpc.StatusCode.UNAUTHENTICATED:
        # The dependency refused *our* credentials (a key or certificate that differs
        # between services): the deployment's fault, never the caller's, so the caller
        # must not be told its own key is wrong.
        return Unavailable(
            f"{dependency} refused this service's credentials",
            reason=Reason.DEPENDENCY_AUTH_FAILED,
            metadata={"dependency": dependency},
        )
    cls = ERRORS_BY_CODE.get(code.name, Unavailable)
    if info is None:
        if cls is InvalidArgument:
            return InvalidArgument("request", f"{dependency} rejected the request")
        reason = Reason.DEPENDENCY_UNAVAILABLE if cls is Unavailable else None
        return cls(
            f"{dependency} failed: {code.name.lower()}",
            reason=reason,
            metadata={"dependency": dependency},
        )
    if cls is InvalidArgument:
        field = info.metadata.get("field", "request")
        return InvalidArgument(field, details.removeprefix(f"{field}: "), reason=info.reason)
    return cls(details or info.reason, reason=info.reason, metadata=dict(info.metadata))

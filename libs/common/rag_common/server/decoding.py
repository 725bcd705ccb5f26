"""Decode tolerance: a request that does not parse ends as INVALID_ARGUMENT, like any bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.message import DecodeError

from rag_common.errors import InvalidArgument


class _Undecodable:
    """Stands for a request message that did not parse (see `tolerant`)."""


_UNDECODABLE = _Undecodable()


def tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize`, returning a marker for bytes that do not parse instead of raising."""
    # grpc turns a deserializer's exception into UNKNOWN "Unexpected <DecodeError>" and an
    # ERROR log with a traceback, for any caller, key or not. A marker instead lets the
    # call end as INVALID_ARGUMENT like any other bad input.
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError:
            return _UNDECODABLE

    return decode


def decoded(request: Any) -> Any:
    """The request, or INVALID_ARGUMENT if it did not parse."""
    if request is _UNDECODABLE:
        raise InvalidArgument("request", "not a valid protobuf message for this method")
    return request


async def decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Each request of a stream as `decoded` gives it."""
    async for request in requests:
        yield decoded(request)

"""Calls straight to an internal service, signed as the suite's own services sign them.

Tests reach internal ports the way only the suite may: with a credential made from the
test key (`TEST_KEY`). `Signed` is metadata for a call on behalf of a tenant; a channel
from `signed_channel` adds a service credential to every call that has none.
"""

from __future__ import annotations

import grpc

from rag_common.credentials import CREDENTIAL_KEY, Credentials
from rag_common.identity import Identity

TEST_KEY = "test-identity-key-that-is-long-enough-0123456789"


def credentials(service: str = "tests") -> Credentials:
    """Credentials signed with the test key, as `service`."""
    return Credentials(TEST_KEY, service)


class Signed:
    """Metadata for a call to `audience` for `identity`, signed anew whenever a call reads
    it: tokens live a minute, and a module's constants outlive that."""

    def __init__(self, audience: str, identity: Identity | None = None) -> None:
        self.audience = audience
        self.identity = identity

    def __iter__(self):
        return iter(credentials().metadata(self.audience, self.identity))


class _Signing:
    def __init__(self, audience: str) -> None:
        self._audience = audience

    def _signed(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = list(details.metadata or ())
        if not any(key == CREDENTIAL_KEY for key, _ in metadata):
            metadata += Signed(self._audience)
        return details._replace(metadata=grpc.aio.Metadata(*metadata))


# grpc.aio files an interceptor under the first kind of call it handles only: one class each.
class _SignUnary(_Signing, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._signed(details), request)


class _SignServerStream(_Signing, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._signed(details), request)


class _SignClientStream(_Signing, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await continuation(self._signed(details), request_iterator)


def signed_channel(address: str, audience: str) -> grpc.aio.Channel:
    """A channel to an internal service whose every call carries a credential."""
    signing = [kind(audience) for kind in (_SignUnary, _SignServerStream, _SignClientStream)]
    return grpc.aio.insecure_channel(address, interceptors=signing)

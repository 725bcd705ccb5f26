"""Calls straight to an internal service, signed as the suite's own services sign them.

Tests reach internal ports the way only the suite may: with a credential made from the
test key (`TEST_KEY`) for the method called. A channel from `signed_channel` adds one to
every call that has none, on behalf of the identity named by `Signed` metadata if any.
"""

from __future__ import annotations

import grpc

from rag_common.security.credentials import CREDENTIAL_KEY, Credentials
from rag_common.security.identity import Identity

TEST_KEY = "test-identity-key-that-is-long-enough-0123456789"


def credentials(service: str = "tests") -> Credentials:
    """Credentials signed with the test key, as `service`."""
    return Credentials(TEST_KEY, service)


_ON_BEHALF_OF = "x-test-on-behalf-of"  # read by a signed channel, never sent


class Signed:
    """Metadata for a call on behalf of `identity`, through a channel from `signed_channel`:
    it mints the credential for the method called, as the suite's clients do."""

    def __init__(self, audience: str, identity: Identity | None = None) -> None:
        self.audience = audience
        self.identity = identity

    def __iter__(self):
        identity = self.identity
        if identity is None:
            return iter(())
        roles = ",".join(sorted(identity.roles))
        return iter([(_ON_BEHALF_OF, f"{identity.principal}|{identity.tenant}|{roles}")])


def _on_behalf_of(value: str) -> Identity:
    principal, tenant, roles = value.split("|")
    return Identity(principal, tenant, frozenset(filter(None, roles.split(","))))


class _Signing:
    def __init__(self, audience: str) -> None:
        self._audience = audience

    def _signed(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = list(details.metadata or ())
        if any(key == CREDENTIAL_KEY for key, _ in metadata):
            return details  # the test made its own, to see it refused
        identity = None
        for key, value in metadata:
            if key == _ON_BEHALF_OF:
                identity = _on_behalf_of(value)
        metadata = [(k, v) for k, v in metadata if k != _ON_BEHALF_OF]
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        metadata += credentials().metadata(self._audience, identity, method=method)
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

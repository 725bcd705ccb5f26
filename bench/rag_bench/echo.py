"""A bare gRPC echo server in its own process: the yardstick for a cache-hit Query.

It answers /bench.Echo/Echo with a fixed reply of the size of a real cached QueryResponse,
with no interceptor, no auth and no work, so the difference to a cache hit is what the
query service itself costs; over TLS, the difference to plaintext is what TLS costs a round
trip, whatever the service does.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc


def main() -> None:
    """`python -m rag_bench.echo PORT REPLY_BYTES [CERT KEY CA]`: with the three files, over
    TLS, asking the client for its certificate (mTLS), as the services do."""
    port, reply_size = int(sys.argv[1]), int(sys.argv[2])
    tls = [Path(p).read_bytes() for p in sys.argv[3:6]]
    reply = b"x" * reply_size

    async def echo(request: bytes, context) -> bytes:
        return reply

    async def serve() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        if tls:
            cert, key, ca = tls
            credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=ca, require_client_auth=True
            )
            server.add_secure_port(f"127.0.0.1:{port}", credentials)
        else:
            server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


if __name__ == "__main__":
    main()

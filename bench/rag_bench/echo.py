"""A bare gRPC echo server in its own process: the yardstick for a cache-hit Query.

It answers /bench.Echo/Echo with a fixed reply of the size of a real cached QueryResponse,
with no interceptor, no auth and no work, so the difference to a cache hit is what the
query service itself costs.
"""

from __future__ import annotations

import asyncio
import sys

import grpc


def main() -> None:
    """`python -m rag_bench.echo PORT REPLY_BYTES`"""
    port, reply_size = int(sys.argv[1]), int(sys.argv[2])
    reply = b"x" * reply_size

    async def echo(request: bytes, context) -> bytes:
        return reply

    async def serve() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


if __name__ == "__main__":
    main()

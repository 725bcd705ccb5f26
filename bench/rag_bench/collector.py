"""A local OTLP/gRPC trace receiver for the traced bench run: it takes spans as an
OpenTelemetry Collector's receiver does, counts them, and drops them.

    python -m rag_bench.collector PORT COUNT_FILE

Run as its own process, so its CPU is not the services' nor the load driver's (in a
cluster the collector runs on other machines). After each export it writes the spans
received so far to COUNT_FILE, which the bench reads to show the spans did arrive.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc


class _Receiver(pb_grpc.TraceServiceServicer):
    """Counts the spans of each export request."""

    def __init__(self, count_file: Path) -> None:
        self.count_file = count_file
        self.spans = 0

    def Export(self, request: pb.ExportTraceServiceRequest, context):
        """Count the request's spans; accept them all."""
        self.spans += sum(
            len(scope.spans) for spans in request.resource_spans for scope in spans.scope_spans
        )
        self.count_file.write_text(str(self.spans))
        return pb.ExportTraceServiceResponse()


@contextmanager
def running(port: int, count_file: Path):
    """A collector process on 127.0.0.1:`port` for the duration of the block."""
    count_file.write_text("0")
    process = subprocess.Popen(
        [sys.executable, "-m", "rag_bench.collector", str(port), str(count_file)]
    )
    try:
        time.sleep(1.0)  # listening before the first span is sent; a late one is retried
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    """`python -m rag_bench.collector PORT COUNT_FILE`."""
    port, count_file = int(sys.argv[1]), Path(sys.argv[2])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_TraceServiceServicer_to_server(_Receiver(count_file), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()

"""The bench's targets table and its local trace collector: a figure says whether it met
its target, and spans sent by the real OTLP exporter are counted as they arrive."""

from __future__ import annotations

import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from rag_bench import collector, targets
from rag_cli.launcher import free_port


def test_a_figure_meets_its_target_in_the_stated_direction():
    assert targets.Row("CPU beyond the model", 4.2, 4.5, at_most=True, unit=" ms").met
    assert not targets.Row("CPU beyond the model", 4.6, 4.5, at_most=True).met
    assert targets.Row("throughput ratio", 0.55, 0.55, at_most=False).met
    assert not targets.Row("throughput ratio", 0.54, 0.55, at_most=False).met
    line = targets.Row("internal RPCs per question, c32", 2.4, 1.5, at_most=True, unit="").line()
    assert "2.40" in line and "<= 1.5" in line and line.endswith("MISSED")


def test_the_collector_counts_the_spans_an_otlp_exporter_sends(tmp_path):
    port, count = free_port(), tmp_path / "spans"
    with collector.running(port, count):
        provider = TracerProvider()
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("bench-test")
        for n in range(7):
            with tracer.start_as_current_span(f"question {n}"):
                pass
        provider.shutdown()  # flushes the batch
        deadline = time.monotonic() + 10
        while count.read_text() != "7" and time.monotonic() < deadline:
            time.sleep(0.05)
    assert count.read_text() == "7"

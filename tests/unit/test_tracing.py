"""Trace settings as the OTEL_* variables give them, and log lines joined to their spans."""

from __future__ import annotations

import io
import json
import logging

import pytest

from rag_common.settings import ServiceSettings
from rag_common.telemetry import tracing
from rag_common.telemetry.logs import JsonFormatter


def test_none_installs_nothing_and_costs_nothing():
    assert tracing.tracer_provider("none", "rag-query") is None
    assert tracing.tracer_provider("", "rag-query") is None
    assert not tracing.enabled()  # nothing in the test process set a provider
    with tracing.client_span("/rag.v1.RetrievalService/Retrieve") as metadata:
        assert metadata == []  # no traceparent to send
    with tracing.server_span("/rag.v1.QueryService/Query", {"traceparent": "00-" + "1" * 49}):
        assert tracing.current_ids() is None
    with tracing.span("cache.answer", hit=True) as span:
        assert not span.is_recording()
    assert tracing.current_ids() is None


def test_console_writes_one_json_line_per_span_with_the_service_name():
    out = io.StringIO()
    provider = tracing.tracer_provider("console", "rag-query", out=out)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent"):
        with tracing.span("cache.answer", hit=False, skipped=None):  # the global API's
            pass
        with tracer.start_as_current_span("child") as child:
            tracing.annotate(child, hits=3, providers=["a", "b"])
            tracing.event("degraded", reason="no_context")
    provider.shutdown()
    lines = out.getvalue().splitlines()
    spans = {s["name"]: s for s in map(json.loads, lines)}
    assert set(spans) == {"parent", "child"}  # the global API records nothing: no provider
    child = spans["child"]
    assert child["resource"]["attributes"]["service.name"] == "rag-query"
    assert child["parent_id"] == spans["parent"]["context"]["span_id"]
    assert child["attributes"] == {"rag.hits": 3, "rag.providers": ["a", "b"]}
    assert child["events"][0]["attributes"] == {"rag.reason": "no_context"}


@pytest.mark.parametrize(
    ("sampler", "ratio", "description"),
    [
        ("parentbased_always_on", 1.0, "ParentBased{root:AlwaysOnSampler"),
        ("parentbased_traceidratio", 0.1, "ParentBased{root:TraceIdRatioBased{0.1}"),
        ("always_off", 1.0, "AlwaysOffSampler"),
    ],
)
def test_the_sampler_is_the_one_otel_traces_sampler_names(monkeypatch, sampler, ratio, description):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", str(ratio))
    settings = ServiceSettings()
    provider = tracing.tracer_provider(
        settings.traces_exporter,
        "rag-query",
        sampler=settings.traces_sampler,
        sampler_ratio=settings.traces_sampler_arg,
        out=io.StringIO(),
    )
    assert provider.sampler.get_description().startswith(description)
    provider.shutdown()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_TRACES_EXPORTER", "zipkin"), ("OTEL_TRACES_SAMPLER", "sometimes")],
)
def test_an_unknown_exporter_or_sampler_is_refused_at_start(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        ServiceSettings()


def test_a_log_line_written_inside_a_span_carries_its_ids():
    provider = tracing.tracer_provider("console", "rag-query", out=io.StringIO())
    formatter = JsonFormatter("query")
    record = logging.makeLogRecord({"msg": "generated", "levelname": "INFO"})
    with provider.get_tracer("test").start_as_current_span("call") as span:
        inside = json.loads(formatter.format(record))
        context = span.get_span_context()
    outside = json.loads(formatter.format(record))
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in outside
    provider.shutdown()


def test_a_server_span_fails_only_for_the_servers_own_errors():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for code in ("OK", "INVALID_ARGUMENT", "UNAVAILABLE"):
        with tracer.start_as_current_span(code):
            tracing.call_ended(code)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {name: s.attributes["rpc.grpc.status_code"] for name, s in spans.items()} == {
        "OK": 0,
        "INVALID_ARGUMENT": 3,
        "UNAVAILABLE": 14,
    }
    # A caller's mistake is not this server failing; a dependency down is.
    assert [n for n, s in spans.items() if s.status.status_code == StatusCode.ERROR] == [
        "UNAVAILABLE"
    ]


@pytest.mark.parametrize("sampled", [True, False])
def test_a_dropped_trace_makes_no_spans_and_goes_on_unsampled_downstream(monkeypatch, sampled):
    from opentelemetry.sdk.trace import TracerProvider, sampling
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    root = sampling.ALWAYS_ON if sampled else sampling.ALWAYS_OFF
    provider = TracerProvider(sampler=sampling.ParentBased(root))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_installed", [provider.get_tracer("test")])
    with tracing.server_span("/rag.v1.QueryService/Query", {}):
        trace_id, server_span_id = tracing.current_ids()
        with tracing.span("cache.answer", hit=False):
            inner_ids = tracing.current_ids()
        with tracing.client_span("/rag.v1.RetrievalService/Retrieve") as metadata:
            _version, sent_trace, parent, flags = dict(metadata)["traceparent"].split("-")
    names = [span.name for span in exporter.get_finished_spans()]
    # The service called continues the same trace, with the same decision.
    assert sent_trace == trace_id
    assert int(flags, 16) & 1 == sampled  # W3C's sampled flag
    if sampled:
        assert names == [
            "cache.answer",
            "/rag.v1.RetrievalService/Retrieve",
            "/rag.v1.QueryService/Query",
        ]
        assert inner_ids[1] != server_span_id and parent != server_span_id
    else:
        assert names == []
        # No span was made below the server's: log lines carry its ids, and so does the call.
        assert inner_ids == (trace_id, server_span_id)
        assert parent == server_span_id
    provider.shutdown()

"""`rag advise`: each rule on metrics as the services export them, healthy and not."""

from __future__ import annotations

from rag_cli.advise import Metrics, advise


def query(exact=0, semantic=0, miss=0, p95=0.1, embed_s=1.0, total_s=10.0, cpu=0.5) -> str:
    return f"""
# HELP rag_cache_requests_total Cache lookups by layer and result.
# TYPE rag_cache_requests_total counter
rag_cache_requests_total{{service="query",layer="answer",result="exact_hit"}} {exact}
rag_cache_requests_total{{service="query",layer="answer",result="semantic_hit"}} {semantic}
rag_cache_requests_total{{service="query",layer="answer",result="miss"}} {miss}
# HELP rag_health_signal Each health signal over its sliding window.
# TYPE rag_health_signal gauge
rag_health_signal{{service="query",signal="p95_latency_s"}} {p95}
rag_health_signal{{service="query",signal="cpu"}} {cpu}
# HELP rag_query_stage_duration_seconds Time per stage.
# TYPE rag_query_stage_duration_seconds histogram
rag_query_stage_duration_seconds_bucket{{service="query",stage="embed",le="+Inf"}} 100
rag_query_stage_duration_seconds_sum{{service="query",stage="embed"}} {embed_s}
rag_query_stage_duration_seconds_count{{service="query",stage="embed"}} 100
rag_query_stage_duration_seconds_bucket{{service="query",stage="total",le="+Inf"}} 100
rag_query_stage_duration_seconds_sum{{service="query",stage="total"}} {total_s}
rag_query_stage_duration_seconds_count{{service="query",stage="total"}} 100
"""


def generation(providers: dict[str, tuple[int, float]], cpu=0.5) -> str:
    lines = [
        "# HELP rag_llm_answers_total Answers written.",
        "# TYPE rag_llm_answers_total counter",
    ]
    for name, (answers, _) in providers.items():
        lines.append(
            f'rag_llm_answers_total{{service="generation",provider="{name}",tenant="a"}} {answers}'
        )
    lines += ["# HELP rag_llm_cost_usd_total Cost.", "# TYPE rag_llm_cost_usd_total counter"]
    for name, (_, cost) in providers.items():
        lines.append(
            f'rag_llm_cost_usd_total{{service="generation",provider="{name}",tenant="a"}} {cost}'
        )
    lines += [
        "# HELP rag_health_signal Signals.",
        "# TYPE rag_health_signal gauge",
        f'rag_health_signal{{service="generation",signal="cpu"}} {cpu}',
    ]
    return "\n".join(lines) + "\n"


def embedding(cpu=0.5, batches=100, texts=120, queue=40) -> str:
    return f"""
# HELP rag_health_signal Signals.
# TYPE rag_health_signal gauge
rag_health_signal{{service="embedding",signal="cpu"}} {cpu}
# HELP rag_embedding_batch_size Texts per call of the model.
# TYPE rag_embedding_batch_size histogram
rag_embedding_batch_size_bucket{{service="embedding",lane="query",le="+Inf"}} {batches}
rag_embedding_batch_size_count{{service="embedding",lane="query"}} {batches}
rag_embedding_batch_size_sum{{service="embedding",lane="query"}} {texts}
rag_embedding_batch_size_count{{service="embedding",lane="document"}} 1000
rag_embedding_batch_size_sum{{service="embedding",lane="document"}} 32000
# HELP rag_embedding_queue_depth Texts waiting for a batch.
# TYPE rag_embedding_queue_depth gauge
rag_embedding_queue_depth{{service="embedding",lane="query"}} {queue}
rag_embedding_queue_depth{{service="embedding",lane="document"}} 500
"""


def rules(*scrapes: tuple[str, str]) -> dict:
    return {a.rule: a for a in advise(Metrics.parse(scrapes))}


BALANCED = generation({"openai": (100, 0.10), "local": (100, 0.08)})


def test_a_healthy_suite_gets_no_advice():
    found = rules(
        ("query", query(exact=40, semantic=20, miss=60)),
        ("generation", BALANCED),
        ("embedding", embedding()),
    )
    assert found == {}


def test_a_low_hit_rate_advises_widening_the_semantic_cache_with_its_numbers():
    found = rules(("query", query(exact=10, semantic=5, miss=185)))
    advice = found["cache_hit_rate"]
    assert "semantic cache" in advice.message
    assert advice.evidence["hit rate"].startswith("7.5%")
    assert advice.evidence["answers"] == "200"


def test_too_few_answers_say_nothing_about_the_hit_rate():
    assert "cache_hit_rate" not in rules(("query", query(exact=0, miss=30)))


def test_a_provider_costing_more_than_its_traffic_share_is_named_with_the_cheaper_one():
    costly = generation({"openai": (50, 0.90), "local": (150, 0.01)})
    advice = rules(("generation", costly))["provider_cost"]
    assert "'openai'" in advice.message and "'local'" in advice.message
    assert advice.evidence["cost share"] == "98.9%"
    assert advice.evidence["traffic share"] == "25.0%"


def test_idle_replicas_are_counted_and_one_fewer_is_advised():
    found = rules(
        ("embedding", embedding(cpu=0.12)),
        ("embedding", embedding(cpu=0.08)),
        ("embedding", embedding(cpu=0.20)),
    )
    advice = found["idle_cpu"]
    assert advice.message.startswith("embedding")
    assert "run 2 replicas instead of 3" in advice.message
    assert advice.evidence["CPU per replica (last minute)"] == "12%, 8%, 20%"


def test_one_busy_replica_keeps_the_service_off_the_idle_list():
    found = rules(("embedding", embedding(cpu=0.1)), ("embedding", embedding(cpu=0.6)))
    assert "idle_cpu" not in found


def test_a_slow_p95_explained_by_embedding_advises_more_embedding_capacity():
    found = rules(
        ("query", query(miss=100, p95=3.2, embed_s=6.0, total_s=10.0)),
        ("embedding", embedding(batches=100, texts=130, queue=55)),
    )
    advice = found["slow_embedding"]
    assert advice.evidence["embedding share of pipeline time"] == "60%"
    assert advice.evidence["mean batch size"] == "1.3"
    assert advice.evidence["query p95 (last minute)"].startswith("3.20 s")


def test_a_slow_p95_that_embedding_does_not_explain_is_not_blamed_on_it():
    found = rules(("query", query(miss=100, p95=3.2, embed_s=1.0, total_s=10.0)))
    assert "slow_embedding" not in found

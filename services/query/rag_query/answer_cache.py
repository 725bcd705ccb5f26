"""The exact answer cache: same tenant, corpus version, normalised question and options."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from rag_common.cache.tiered import TieredCache
from rag_common.domain import ScoredChunk
from rag_common.shared_redis import tenant_tag
from rag_query.models import Answer, GeneratedText, Question, Timings


def answer_scope(tenant: str, version: str, question: Question) -> tuple:
    """Everything but the question's wording that changes the answer. The budget is left
    out: it changes how long an answer may take, not what it says (and degraded answers are
    never stored)."""
    options = question.options
    return (
        tenant,
        version,
        options.top_k,
        repr(options.conditions),
        repr(options.score_threshold),
        options.max_tokens,
        options.provider,
        options.search_mode,
        repr(options.rerank),
    )


def answer_key(scope: tuple, question: Question) -> str:
    """The exact cache key: the tenant's tag (so a tenant's answers can be found and
    erased), then the scope and the normalised question, hashed."""
    parts = [*map(str, scope), question.normalized]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"{tenant_prefix(scope[0])}{digest}"


def tenant_prefix(tenant: str) -> str:
    """What every cached answer key of `tenant` starts with (the tenant hashed, not named)."""
    return f"answer:{tenant_tag(tenant)}:"


_PLACE_FIELDS = ("page", "section")
_SOURCE_FIELDS = {f.name for f in dataclasses.fields(ScoredChunk)} - set(_PLACE_FIELDS)


class AnswerCache:
    """Answers as compact JSON in a TieredCache."""

    def __init__(self, cache: TieredCache) -> None:
        self.cache = cache

    async def get(self, key: str) -> Answer | None:
        """The cached answer, marked as coming from the exact cache."""
        [raw] = await self.cache.get_many([key])
        if raw is None:
            return None
        data = json.loads(raw)
        # Where each source sits (page, section) travels apart from the sources, which a
        # replica of the previous version reads field by field; fields a later version may
        # add are left out rather than refused.
        places = data.get("places") or [(0, "")] * len(data["sources"])
        return Answer(
            text=data["text"],
            sources=[
                ScoredChunk(
                    **{k: v for k, v in s.items() if k in _SOURCE_FIELDS},
                    page=page,
                    section=section,
                )
                for s, (page, section) in zip(data["sources"], places, strict=True)
            ],
            generated=GeneratedText(
                **{**data["generated"], "cited_sources": tuple(data["generated"]["cited_sources"])}
            ),
            timings=Timings(),
            cache="exact",
        )

    async def forget_tenant(self, tenant: str) -> int:
        """Delete every cached answer of `tenant`."""
        return await self.cache.forget(tenant_prefix(tenant))

    async def put(self, key: str, answer: Answer) -> None:
        """Store a whole answer (callers never store degraded or partial ones)."""
        generated = _fields(answer.generated)
        # Which providers failed says something of that request, not of the answer (and a
        # replica of the previous version could not read the field).
        del generated["failed_providers"]
        data = {
            "text": answer.text,
            "sources": [
                {k: v for k, v in _fields(s).items() if k not in _PLACE_FIELDS}
                | {"metadata": dict(s.metadata)}
                for s in answer.sources
            ],
            "places": [(s.page, s.section) for s in answer.sources],
            "generated": generated,
        }
        await self.cache.set_many({key: json.dumps(data, separators=(",", ":")).encode()})


def _fields(value: Any) -> dict[str, Any]:
    """A dataclass's fields, one level deep: `dataclasses.asdict` copies every value
    recursively, which was 2 % of the query service's CPU at concurrency 32."""
    return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}

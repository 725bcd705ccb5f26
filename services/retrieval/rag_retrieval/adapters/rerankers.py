"""Rerankers people run: text-embeddings-inference's /rerank, the Cohere-style /v1/rerank
(Cohere, vLLM, Jina, Infinity), and a sentence-transformers CrossEncoder in this process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from rag_common.errors import Unavailable
from rag_common.reasons import Reason

log = logging.getLogger(__name__)


class _HttpReranker:
    """One HTTP client to a rerank server; every failure is Unavailable(RERANKER_FAILED)."""

    name = "http"

    def __init__(self, url: str, *, api_key: str = "", timeout_s: float = 10.0) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        # The stage's deadline bounds each call; this timeout only bounds a stuck connect.
        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            reply = await self._http.post(path, json=body)
            reply.raise_for_status()
            return reply.json()
        except (httpx.HTTPError, ValueError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            log.warning(
                "reranker call failed",
                extra={"reranker": self.name, "status": status, "error": type(exc).__name__},
            )
            raise Unavailable("the reranker failed", reason=Reason.RERANKER_FAILED) from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


def _by_index(pairs: Sequence[tuple[int, float]], count: int) -> list[float]:
    """Scores back in the order of the texts sent; servers return them best first."""
    scores: list[float | None] = [None] * count
    for index, score in pairs:
        if not 0 <= index < count:
            raise Unavailable(
                "the reranker returned an unknown index", reason=Reason.RERANKER_FAILED
            )
        scores[index] = float(score)
    if any(s is None for s in scores):
        raise Unavailable("the reranker left texts unscored", reason=Reason.RERANKER_FAILED)
    return scores  # type: ignore[return-value]


class TeiReranker(_HttpReranker):
    """Hugging Face text-embeddings-inference: POST /rerank {query, texts} -> [{index, score}]."""

    name = "tei"

    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """One score per text, in order."""
        body = {"query": query, "texts": list(texts), "truncate": True}
        reply = await self._post("/rerank", body)
        try:
            return _by_index([(int(r["index"]), r["score"]) for r in reply], len(texts))
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(self.name) from exc


class CohereReranker(_HttpReranker):
    """The Cohere rerank API, also served by vLLM, Jina and Infinity: POST /v1/rerank
    {model, query, documents} -> {results: [{index, relevance_score}]}."""

    name = "cohere"

    def __init__(self, url: str, *, model: str, api_key: str = "", timeout_s: float = 10.0) -> None:
        super().__init__(url, api_key=api_key, timeout_s=timeout_s)
        self._model = model

    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """One score per text, in order."""
        body = {
            "model": self._model,
            "query": query,
            "documents": list(texts),
            "top_n": len(texts),
        }
        reply = await self._post("/v1/rerank", body)
        try:
            pairs = [(int(r["index"]), r["relevance_score"]) for r in reply["results"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(self.name) from exc
        return _by_index(pairs, len(texts))


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder, on one worker thread."""

    name = "cross-encoder"

    def __init__(self, path: Path, *, batch_size: int = 32) -> None:
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(str(path), device="cpu", local_files_only=True)
        self._batch_size = batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cross-encoder")

    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """One score per text, in order."""
        pairs = [(query, text) for text in texts]
        loop = asyncio.get_running_loop()
        try:
            scores = await loop.run_in_executor(
                self._executor,
                lambda: self._model.predict(
                    pairs, batch_size=self._batch_size, show_progress_bar=False
                ),
            )
        except RuntimeError as exc:
            log.error("cross-encoder failed", exc_info=exc)
            raise Unavailable("the reranker failed", reason=Reason.RERANKER_FAILED) from exc
        return [float(s) for s in scores]

    async def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _malformed(name: str) -> Unavailable:
    log.warning("reranker reply malformed", extra={"reranker": name})
    return Unavailable("the reranker's reply could not be read", reason=Reason.RERANKER_FAILED)

"""Embedding servers over HTTP as the service's model: an OpenAI-compatible /v1/embeddings
(OpenAI, vLLM, Ollama, Infinity, TEI's OpenAI route) and text-embeddings-inference's /embed.

The service's own batching, cache and lanes stay in front: a remote model is called with the
batches the batcher forms, from the lane's thread. Each call has a timeout; a failure the
server may get over (a refused connection, a timeout, 429, 5xx) is tried again after a
jittered, growing wait (a 429's Retry-After honoured), up to `attempts`; the lanes share one
circuit breaker, so a server that is down costs callers an instant UNAVAILABLE, not a wait.
A 4xx that says the request itself is wrong is the caller's, and counts against nothing.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from rag_common.breaker import CircuitBreaker, calling
from rag_common.errors import InvalidArgument, Unavailable
from rag_common.reasons import Reason
from rag_embedding.embedder import Purpose

log = logging.getLogger(__name__)

_RETRIED = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_WAIT_S = 4.0


class RemoteEmbeddings:
    """An embedding server as an EncoderModel; subclasses speak its wire format."""

    path = ""

    def __init__(
        self,
        url: str,
        *,
        model: str = "",
        api_key: str = "",
        timeout_s: float = 10.0,
        attempts: int = 3,
        breaker: CircuitBreaker | None = None,
        max_sequence_length: int = 8192,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self._attempts = attempts
        self.breaker = breaker or CircuitBreaker("embedding-server")
        self.name = model
        self.max_sequence_length = max_sequence_length
        self._describe()
        # The dimension is what the server returns: one text tells.
        self.dimension = len(self.encode(["dimension probe"], Purpose.QUERY)[0])
        log.info("remote model ready", extra={"model": self.name, "dimension": self.dimension})

    def encode(self, texts: Sequence[str], purpose: Purpose) -> list[list[float]]:
        """One L2-normalised vector per text, in order; blocking."""
        with calling(self.breaker):
            vectors = self._vectors(self._post(self._body(list(texts))), len(texts))
        return [_normalised(v) for v in vectors]

    def _describe(self) -> None:
        """Learn what the server says of its model (TEI does); nothing by default."""

    def _body(self, texts: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def _vectors(self, reply: Any, count: int) -> list[list[float]]:
        raise NotImplementedError

    def _post(self, body: dict[str, Any]) -> Any:
        for attempt in range(1, self._attempts + 1):
            try:
                reply = self._http.post(self.path, json=body)
            except httpx.HTTPError as exc:  # refused, reset, timed out
                if attempt == self._attempts:
                    raise _unavailable(f"{type(exc).__name__}") from exc
                time.sleep(_backoff(attempt))
                continue
            if reply.status_code < 400:
                try:
                    return reply.json()
                except ValueError as exc:
                    raise _unavailable("a reply that is not JSON") from exc
            if reply.status_code not in _RETRIED:
                if reply.status_code in (400, 413, 422):
                    # Something in the texts themselves (too long, empty): the caller's.
                    raise InvalidArgument(
                        "texts", f"the embedding server refused them: {reply.text[:200]}"
                    )
                raise _unavailable(f"HTTP {reply.status_code}")
            if attempt == self._attempts:
                raise _unavailable(f"HTTP {reply.status_code} after {attempt} attempts")
            time.sleep(_retry_after(reply) or _backoff(attempt))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class OpenAIEmbeddings(RemoteEmbeddings):
    """POST /v1/embeddings {model, input: [texts]} -> {data: [{index, embedding}]}."""

    path = "/v1/embeddings"

    def _body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.name, "input": texts, "encoding_format": "float"}

    def _vectors(self, reply: Any, count: int) -> list[list[float]]:
        try:
            data = sorted(reply["data"], key=lambda item: int(item["index"]))
            vectors = [[float(x) for x in item["embedding"]] for item in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise _unavailable("a reply in no format it should have") from exc
        return _checked(vectors, count)


class TeiEmbeddings(RemoteEmbeddings):
    """text-embeddings-inference: GET /info names the model; POST /embed {inputs} -> [[...]]."""

    path = "/embed"

    def _describe(self) -> None:
        try:
            info = self._http.get("/info").json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _unavailable("GET /info failed") from exc
        self.name = self.name or str(info.get("model_id", "tei"))
        self.max_sequence_length = int(info.get("max_input_length") or self.max_sequence_length)

    def _body(self, texts: list[str]) -> dict[str, Any]:
        return {"inputs": texts, "normalize": True, "truncate": True}

    def _vectors(self, reply: Any, count: int) -> list[list[float]]:
        try:
            vectors = [[float(x) for x in vector] for vector in reply]
        except (TypeError, ValueError) as exc:
            raise _unavailable("a reply in no format it should have") from exc
        return _checked(vectors, count)


def _checked(vectors: list[list[float]], count: int) -> list[list[float]]:
    if len(vectors) != count or len({len(v) for v in vectors}) > 1 or not vectors[0]:
        raise _unavailable(f"{len(vectors)} vectors for {count} texts, or of unequal lengths")
    return vectors


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _backoff(attempt: int) -> float:
    """Full jitter: anywhere up to 0.2 s doubled per attempt, so retries do not align."""
    return random.uniform(0, min(_MAX_WAIT_S, 0.2 * 2 ** (attempt - 1)))


def _retry_after(reply: httpx.Response) -> float | None:
    try:
        return min(_MAX_WAIT_S, float(reply.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _unavailable(cause: str) -> Unavailable:
    log.warning("embedding server call failed", extra={"cause": cause})
    return Unavailable(
        f"the embedding server failed: {cause}", reason=Reason.EMBEDDING_SERVER_FAILED
    )

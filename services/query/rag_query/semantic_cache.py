"""The semantic answer cache: a question close enough in meaning gets a cached answer.

Close in embedding space is not enough: "capital of France" and "capital of Germany", or
"a string to a number" and "a number to a string", embed within a few hundredths of each
other. So a candidate must pass two tests: cosine similarity at or above the threshold, and
the question guard (`question_guard.same_question`): the same numbers, negations and words
(up to plurals, verb endings and common synonyms) in the same roles. The guard makes the
cache conservative by design; a miss costs one pipeline run, a false hit gives a user the
wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rag_query.question_guard import same_question

GUARDED_CANDIDATES = 8  # the most similar cached questions the guard looks at


@dataclass(frozen=True)
class SemanticHit:
    """A cached question close enough to the asked one."""

    answer_key: str
    question: str
    similarity: float


@dataclass
class _Entry:
    vector: np.ndarray
    question: str
    answer_key: str
    expires: float  # wall-clock time, so replicas agree on it


class SharedEntries:
    """Semantic entries in Redis, one list per scope: float32 vector bytes plus a JSON head.

    Best effort, like every Redis use here: a failure reads as no shared entries.
    """

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def entries(self, scope: Hashable) -> list[_Entry]:
        """Entries every replica added under `scope`."""
        try:
            raw = await self._client.lrange(self._key(scope), 0, -1)
        except (RedisError, OSError):
            return []
        return [self._decode(item) for item in raw]

    async def append(self, scope: Hashable, entry: _Entry, max_entries: int, ttl_s: float) -> None:
        """Add an entry; keep the newest `max_entries`; the list expires with its entries."""
        key = self._key(scope)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.rpush(key, self._encode(entry))
                pipe.ltrim(key, -max_entries, -1)
                pipe.expire(key, int(ttl_s) + 1)
                await pipe.execute()
        except (RedisError, OSError):
            pass

    @staticmethod
    def _key(scope: Hashable) -> str:
        digest = hashlib.sha256(repr(scope).encode()).hexdigest()[:32]
        return f"rag:semantic:{digest}"

    @staticmethod
    def _encode(entry: _Entry) -> bytes:
        head = json.dumps([entry.question, entry.answer_key, entry.expires]).encode()
        return len(head).to_bytes(4, "big") + head + entry.vector.astype(np.float32).tobytes()

    @staticmethod
    def _decode(raw: bytes) -> _Entry:
        size = int.from_bytes(raw[:4], "big")
        question, answer_key, expires = json.loads(raw[4 : 4 + size])
        vector = np.frombuffer(raw[4 + size :], dtype=np.float32)
        return _Entry(vector, question, answer_key, expires)


class SemanticCache:
    """Recent questions per scope (tenant, corpus version, options), searched by cosine.

    Bounded per scope (oldest dropped), in all (the least recently used scope goes first:
    one per tenant, corpus version and options, so old versions' scopes go before anything
    in use) and by TTL (expired entries purged on each lookup). With `shared` (Redis),
    entries added by any replica are found by all of them.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.7,
        ttl_s: float = 3600.0,
        max_per_scope: int = 2000,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.time,
        shared: SharedEntries | None = None,
    ) -> None:
        self.threshold = threshold
        self._ttl_s = ttl_s
        self._max_per_scope = max_per_scope
        self._max_entries = max_entries
        self._clock = clock
        self._scopes: OrderedDict[Hashable, list[_Entry]] = OrderedDict()
        # Each scope's vectors stacked, with the entry list they were stacked from.
        self._matrices: dict[Hashable, tuple[list[_Entry], np.ndarray]] = {}
        self._total = 0  # entries over all scopes
        self._shared = shared

    async def find(self, scope: Hashable, question: str, vector: list[float]) -> SemanticHit | None:
        """Like `lookup`, after taking in what other replicas added to the shared store."""
        if self._shared is not None:
            known = {e.answer_key for e in self._live(scope)}
            fresh = [
                entry
                for entry in await self._shared.entries(scope)
                if entry.answer_key not in known and entry.expires > self._clock()
            ]
            if fresh:
                self._store(scope, self._live(scope) + fresh)
        return self.lookup(scope, question, vector)

    async def remember(
        self, scope: Hashable, question: str, vector: list[float], answer_key: str
    ) -> None:
        """Like `add`, and into the shared store too."""
        entry = self.add(scope, question, vector, answer_key)
        if self._shared is not None:
            await self._shared.append(scope, entry, self._max_per_scope, self._ttl_s)

    def lookup(self, scope: Hashable, question: str, vector: list[float]) -> SemanticHit | None:
        """The closest cached question that passes both tests, if any."""
        entries = self._live(scope)
        if not entries:
            return None
        query = _unit(vector)
        similarities = self._matrix(scope, entries) @ query
        # The guard is judged on the closest few only: questions written from one template
        # are all similar, and guarding each of thousands would cost more than the pipeline.
        for index in np.argsort(-similarities)[:GUARDED_CANDIDATES]:
            similarity = float(similarities[index])
            if similarity < self.threshold:
                return None
            entry = entries[index]
            if same_question(question, entry.question):
                return SemanticHit(entry.answer_key, entry.question, similarity)
        return None

    def add(self, scope: Hashable, question: str, vector: list[float], answer_key: str) -> _Entry:
        """Remember a question whose answer is stored under `answer_key`."""
        entry = _Entry(_unit(vector), question, answer_key, self._clock() + self._ttl_s)
        self._store(scope, [*self._live(scope), entry])
        return entry

    def __len__(self) -> int:
        return self._total

    def _live(self, scope: Hashable) -> list[_Entry]:
        entries = self._scopes.get(scope)
        if not entries:
            return []
        now = self._clock()
        if any(e.expires <= now for e in entries):
            entries = [e for e in entries if e.expires > now]
            self._store(scope, entries)
        else:
            self._scopes.move_to_end(scope)  # used: the last to be evicted
        return entries

    def _matrix(self, scope: Hashable, entries: list[_Entry]) -> np.ndarray:
        """The scope's vectors as one matrix, stacked again only when its entries change."""
        cached = self._matrices.get(scope)
        if cached is None or cached[0] is not entries:
            cached = (entries, np.stack([e.vector for e in entries]))
            self._matrices[scope] = cached
        return cached[1]

    def _store(self, scope: Hashable, entries: list[_Entry]) -> None:
        """Make `entries` the scope's (newest kept), most recently used, within every bound."""
        entries = entries[-self._max_per_scope :]
        self._total += len(entries) - len(self._scopes.pop(scope, ()))
        self._matrices.pop(scope, None)
        if entries:
            self._scopes[scope] = entries
        while self._total > self._max_entries and len(self._scopes) > 1:
            evicted_scope, evicted = self._scopes.popitem(last=False)
            self._matrices.pop(evicted_scope, None)
            self._total -= len(evicted)


def _unit(vector: list[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm else array

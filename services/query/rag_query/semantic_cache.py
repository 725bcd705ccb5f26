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

from rag_common.shared_redis import delete_matching, tenant_tag
from rag_query.question_guard import same_question

GUARDED_CANDIDATES = 8  # the most similar cached questions the guard looks at


@dataclass(frozen=True)
class SemanticHit:
    """A cached question close enough to the asked one."""

    answer_key: str
    question: str
    similarity: float


@dataclass(frozen=True)
class _Entry:
    question: str
    answer_key: str
    expires: float  # wall-clock time, so replicas agree on it


class _Scope:
    """One scope's entries, oldest first, with their unit vectors as rows of one matrix.

    The matrix grows in place (doubling), so adding an entry or dropping the oldest copies
    nothing else: a lookup costs one matrix-vector product however full the scope is.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self._vectors = np.empty((16, width), dtype=np.float32)
        self._entries: list[_Entry | None] = []  # row i's entry; None once dropped
        self._first = 0  # rows before it are dropped
        self.answer_keys: set[str] = set()
        self.shared_cursor = ""  # the last shared-store id taken in ("" before any)

    def __len__(self) -> int:
        return len(self._entries) - self._first

    @property
    def matrix(self) -> np.ndarray:
        """The live entries' vectors, oldest first."""
        return self._vectors[self._first : len(self._entries)]

    def entry(self, index: int) -> _Entry:
        """The live entry of matrix row `index`."""
        return self._entries[self._first + index]

    def add(self, entry: _Entry, vector: np.ndarray) -> None:
        """Append an entry (its answer key not already here)."""
        if len(self._entries) == len(self._vectors):
            self._make_room()
        self._vectors[len(self._entries)] = vector
        self._entries.append(entry)
        self.answer_keys.add(entry.answer_key)

    def drop_oldest(self, count: int) -> None:
        """Forget the `count` oldest entries."""
        for row in range(self._first, self._first + count):
            self.answer_keys.discard(self._entries[row].answer_key)
            self._entries[row] = None
        self._first += count

    def expired(self, now: float) -> int:
        """How many of the oldest entries have expired. Entries expire in the order they were
        added (one TTL for all); one from another replica's clock that is out of order waits
        for the older ones, and a lookup never serves it expired."""
        count = 0
        while self._first + count < len(self._entries):
            if self._entries[self._first + count].expires > now:
                break
            count += 1
        return count

    def _make_room(self) -> None:
        live = len(self)
        if live * 2 > len(self._vectors):
            grown = np.empty((2 * len(self._vectors), self.width), dtype=np.float32)
            grown[:live] = self.matrix
            self._vectors = grown
        else:  # half the rows are dropped ones: move the live ones to the front
            self._vectors[:live] = self.matrix.copy()
        self._entries = self._entries[self._first :]
        self._first = 0


_STREAMS = "rag:semantic-stream:"


class SharedEntries:
    """Semantic entries in Redis, one stream per scope: float32 vector bytes plus a JSON head.

    A replica reads only what was added since it last looked (XRANGE after its cursor), so
    a lookup costs one small round trip however many entries the scope holds. Best effort,
    like every Redis use here: a failure reads as nothing new.
    """

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def added_since(
        self, scope: Hashable, cursor: str
    ) -> tuple[list[tuple[_Entry, np.ndarray]], str]:
        """Entries every replica added under `scope` after `cursor`, and the new cursor."""
        try:
            raw = await self._client.xrange(self._key(scope), f"({cursor}" if cursor else "-")
        except (RedisError, OSError):
            return [], cursor
        if not raw:
            return [], cursor
        last_id = raw[-1][0]
        new_cursor = last_id.decode() if isinstance(last_id, bytes) else last_id
        return [self._decode(fields[b"e"]) for _, fields in raw], new_cursor

    async def append(
        self, scope: Hashable, entry: _Entry, vector: np.ndarray, max_entries: int, ttl_s: float
    ) -> None:
        """Add an entry; keep about the newest `max_entries`; the stream expires with them."""
        key = self._key(scope)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xadd(key, {"e": self._encode(entry, vector)}, maxlen=max_entries)
                pipe.expire(key, int(ttl_s) + 1)
                await pipe.execute()
        except (RedisError, OSError):
            pass

    async def forget_tenant(self, tenant: str) -> int:
        """Delete every shared entry of `tenant`'s scopes."""
        return await delete_matching(self._client, f"{_STREAMS}{tenant_tag(tenant)}:*")

    @staticmethod
    def _key(scope: Hashable) -> str:
        # Scopes start with the tenant: its tag first, so a tenant's streams can be erased.
        digest = hashlib.sha256(repr(scope).encode()).hexdigest()[:32]
        return f"{_STREAMS}{tenant_tag(scope[0])}:{digest}"

    @staticmethod
    def _encode(entry: _Entry, vector: np.ndarray) -> bytes:
        head = json.dumps([entry.question, entry.answer_key, entry.expires]).encode()
        return len(head).to_bytes(4, "big") + head + vector.astype(np.float32).tobytes()

    @staticmethod
    def _decode(raw: bytes) -> tuple[_Entry, np.ndarray]:
        size = int.from_bytes(raw[:4], "big")
        question, answer_key, expires = json.loads(raw[4 : 4 + size])
        return _Entry(question, answer_key, expires), np.frombuffer(raw[4 + size :], np.float32)


class SemanticCache:
    """Recent questions per scope (tenant, corpus version, options), searched by cosine.

    Bounded per scope (oldest dropped), in all (the least recently used scope goes first:
    one per tenant, corpus version and options, so old versions' scopes go before anything
    in use) and by TTL (expired entries dropped on each lookup). With `shared` (Redis),
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
        self._scopes: OrderedDict[Hashable, _Scope] = OrderedDict()
        self._total = 0  # entries over all scopes
        self._shared = shared

    async def find(self, scope: Hashable, question: str, vector: list[float]) -> SemanticHit | None:
        """Like `lookup`, after taking in what other replicas added to the shared store."""
        if self._shared is not None:
            known = self._scopes.get(scope)
            cursor = known.shared_cursor if known else ""
            fresh, cursor = await self._shared.added_since(scope, cursor)
            now = self._clock()
            for entry, entry_vector in fresh:
                if entry.expires > now:
                    self._add(scope, entry, entry_vector)
            if scope in self._scopes:
                self._scopes[scope].shared_cursor = cursor
        return self.lookup(scope, question, vector)

    async def remember(
        self, scope: Hashable, question: str, vector: list[float], answer_key: str
    ) -> None:
        """Like `add`, and into the shared store too."""
        entry = self.add(scope, question, vector, answer_key)
        if self._shared is not None:
            await self._shared.append(scope, entry, _unit(vector), self._max_per_scope, self._ttl_s)

    def lookup(self, scope: Hashable, question: str, vector: list[float]) -> SemanticHit | None:
        """The closest cached question that passes both tests, if any."""
        entries = self._live(scope)
        if entries is None:
            return None
        query = _unit(vector)
        if query.shape[0] != entries.width:
            return None
        similarities = entries.matrix @ query
        # The guard is judged on the closest few only: questions written from one template
        # are all similar, and guarding each of thousands would cost more than the pipeline.
        count = min(GUARDED_CANDIDATES, len(similarities))
        closest = np.argpartition(-similarities, count - 1)[:count]
        now = self._clock()
        for index in closest[np.argsort(-similarities[closest])]:
            similarity = float(similarities[index])
            if similarity < self.threshold:
                return None
            entry = entries.entry(index)
            if entry.expires > now and same_question(question, entry.question):
                return SemanticHit(entry.answer_key, entry.question, similarity)
        return None

    def add(self, scope: Hashable, question: str, vector: list[float], answer_key: str) -> _Entry:
        """Remember a question whose answer is stored under `answer_key`."""
        entry = _Entry(question, answer_key, self._clock() + self._ttl_s)
        self._add(scope, entry, _unit(vector))
        return entry

    def __len__(self) -> int:
        return self._total

    def _add(self, scope: Hashable, entry: _Entry, vector: np.ndarray) -> None:
        """Add within every bound; the scope becomes the most recently used."""
        entries = self._scopes.get(scope)
        if entries is not None and entries.width != vector.shape[0]:
            self._drop_scope(scope)  # another model's vectors: none compare with these
            entries = None
        if entries is None:
            entries = self._scopes[scope] = _Scope(vector.shape[0])
        elif entry.answer_key in entries.answer_keys:
            return  # read back from the shared store, or answered twice at once
        self._scopes.move_to_end(scope)
        if len(entries) >= self._max_per_scope:
            self._drop_oldest(entries, len(entries) - self._max_per_scope + 1)
        entries.add(entry, vector)
        self._total += 1
        while self._total > self._max_entries and len(self._scopes) > 1:
            self._drop_scope(next(iter(self._scopes)))

    def _live(self, scope: Hashable) -> _Scope | None:
        """The scope's entries with the expired dropped, now the most recently used."""
        entries = self._scopes.get(scope)
        if entries is None:
            return None
        self._drop_oldest(entries, entries.expired(self._clock()))
        if not entries:
            self._drop_scope(scope)
            return None
        self._scopes.move_to_end(scope)
        return entries

    def _drop_oldest(self, entries: _Scope, count: int) -> None:
        entries.drop_oldest(count)
        self._total -= count

    async def forget_tenant(self, tenant: str) -> int:
        """Drop every entry of `tenant`'s scopes, here and in the shared streams."""
        mine = [scope for scope in self._scopes if scope[0] == tenant]
        dropped = sum(len(self._scopes[scope]) for scope in mine)
        for scope in mine:
            self._drop_scope(scope)
        if self._shared is not None:
            await self._shared.forget_tenant(tenant)
        return dropped

    def _drop_scope(self, scope: Hashable) -> None:
        self._total -= len(self._scopes.pop(scope))


def _unit(vector: list[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm else array

"""The semantic answer cache: a question close enough in meaning gets a cached answer.

Close in embedding space is not enough: "capital of France" and "capital of Germany", or
"enable X" and "disable X", embed within a few hundredths of each other. So a candidate
must pass two tests: cosine similarity at or above the threshold (0.95 by default), and a
lexical guard: both questions must use the same content words, after folding case,
plurals, contractions and a few synonyms, with the same numbers and the same negations.
The guard makes the cache conservative by design; a miss costs one pipeline run, a false
hit gives a user the wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CONTRACTIONS = {
    "what's": "what is",
    "how's": "how is",
    "where's": "where is",
    "can't": "can not",
    "won't": "will not",
    "don't": "do not",
    "doesn't": "does not",
    "isn't": "is not",
    "i'm": "i am",
    "it's": "it is",
}
# Words that frame a question without changing what it asks.
_FRAMING = frozenset(
    "a an the is are was were be do does did can could would should will shall may might "
    "i me my we our us you your it its this that these those to of for on in at by with "
    "from about please tell how what where which who whom when way steps possible there "
    "any some".split()
)
_NEGATIONS = frozenset({"not", "no", "never", "without", "none", "nothing"})
# Words that mean the same thing in a question, folded to one.
_SYNONYMS = {
    "modify": "change",
    "alter": "change",
    "purchase": "buy",
    "begin": "start",
    "commence": "start",
    "rules": "policy",
    "regulations": "policy",
}


def content_words(question: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(content words, numbers, negations) of a question, folded for comparison."""
    text = question.lower()
    for short, long in _CONTRACTIONS.items():
        text = text.replace(short, long)
    words, numbers, negations = set(), set(), set()
    for word in _WORD.findall(text):
        if word.endswith("n't"):
            negations.add("not")
            word = word[:-3]
        if word.isdigit():
            numbers.add(word)
        elif word in _NEGATIONS:
            negations.add(word)
        elif word not in _FRAMING:
            word = _SYNONYMS.get(word, word)
            words.add(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return frozenset(words), frozenset(numbers), frozenset(negations)


# Words that give the word after them a role: "convert a string *to* a number" asks the
# opposite of "a number to a string", with the very same words.
_DIRECTIONAL = frozenset(
    "to into onto from than by over under before after toward towards versus vs against "
    "per via".split()
)
_NAME = re.compile(r"(?<![.?!]\s)(?<!^)\b[A-Z][a-z]+\b")


def roles(question: str) -> tuple[frozenset[tuple[str, str]], tuple[str, ...]]:
    """Who does what to whom, as far as words show it.

    (which content word follows each directional word, the names in the order they come).
    "Who reports to Alice?" has (to, "alice"); "Who does Alice report to?" has (to, "").
    The order of names tells "Does Alice manage Bob?" from "Does Bob manage Alice?".
    """
    words = _WORD.findall(question.lower())
    pairs = set()
    for i, word in enumerate(words):
        if word in _DIRECTIONAL:
            pairs.add((word, _phrase_after(words[i + 1 :])))
    names = tuple(name.lower() for name in _NAME.findall(question))
    return frozenset(pairs), names


def _phrase_after(words: list[str]) -> str:
    """The (at most two) content words a directional word governs: "python 2", "team plan"."""
    phrase = []
    for word in words:
        if word in _DIRECTIONAL or len(phrase) == 2:
            break
        if word not in _FRAMING:
            phrase.append(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return " ".join(phrase)


def swapped_roles(a: str, b: str) -> bool:
    """Whether the same words play different roles in the two questions.

    A directional word followed by one word in `a` and by another in `b` ("string to a
    number" against "number to a string"), or the same names in another order. A "to" that
    only one of them has ("the way to reset" against "how do I reset") is no conflict.
    """
    (pairs_a, names_a), (pairs_b, names_b) = roles(a), roles(b)
    only_a, only_b = pairs_a - pairs_b, pairs_b - pairs_a
    if any(word == other for word, _ in only_a for other, _ in only_b):
        return True
    return set(names_a) == set(names_b) and names_a != names_b


def same_question(a: str, b: str) -> bool:
    """The lexical guard: same content words, numbers and negations, no swapped roles."""
    return content_words(a) == content_words(b) and not swapped_roles(a, b)


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
        threshold: float = 0.95,
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
        similarities = np.stack([e.vector for e in entries]) @ query
        for index in np.argsort(-similarities):
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
        now = self._clock()
        entries = [e for e in self._scopes.get(scope, ()) if e.expires > now]
        self._store(scope, entries)
        return entries

    def _store(self, scope: Hashable, entries: list[_Entry]) -> None:
        """Make `entries` the scope's (newest kept), most recently used, within every bound."""
        entries = entries[-self._max_per_scope :]
        self._total += len(entries) - len(self._scopes.pop(scope, ()))
        if entries:
            self._scopes[scope] = entries
        while self._total > self._max_entries and len(self._scopes) > 1:
            _, evicted = self._scopes.popitem(last=False)
            self._total -= len(evicted)


def _unit(vector: list[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm else array

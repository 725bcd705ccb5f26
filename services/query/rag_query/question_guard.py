"""Whether two questions ask the same thing: the check a semantic cache hit must pass.

Embeddings place "a string to a number" and "a number to a string", or "open in winter" and
"open in summer", within a few hundredths of each other, so similarity alone cannot decide.
Two questions are the same here only if, word for word:

- they have the same numbers and the same negations;
- every content word of one is matched in the other (the same word after folding plurals
  and verb endings, or one of a few common synonyms); the only words left over may be
  light ones that frame a question without narrowing it ("usually", "way", "want");
- the matched words come in the same order, so no one swaps who does what to whom
  ("Does Bob manage Carol?", "Is a square a rectangle?");
- no directional word ("to", "from", "than", "before", ...) governs a different word in
  one than in the other ("ship to Canada" against "ship from Canada").

It errs towards a miss: a miss costs one pipeline run, a false hit a wrong answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

# A word may carry the symbols that make a name: C++, C#, .NET, Node.js, x86-64, rock'n'roll.
# A full stop joins only letters on both sides, so a sentence's own full stop is no part.
_WORD = re.compile(r"(?<![A-Za-z0-9.])\.?[A-Za-z0-9]+(?:[-'.][A-Za-z0-9]+)*(?:\+\+|#)?")
_NAME_SYMBOLS = frozenset("+#.")
_CONTRACTIONS = {
    "what's": "what is",
    "how's": "how is",
    "where's": "where is",
    "who's": "who is",
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "i'm": "i am",
    "it's": "it is",
    "i've": "i have",
    "i'd": "i would",
}
_CONTRACTION = re.compile(
    r"\b(" + "|".join(map(re.escape, _CONTRACTIONS)) + r")\b", flags=re.IGNORECASE
)
# Phrasal verbs and fixed phrases that mean one thing, folded before words are compared.
_PHRASES = {
    "turn on": "enable",
    "switch on": "enable",
    "turn off": "disable",
    "switch off": "disable",
    "sign out": "logout",
    "log out": "logout",
    "sign in": "login",
    "log in": "login",
    "get rid of": "remove",
    "look up": "find",
    "find out": "find",
    "set up": "setup",
    "back up": "backup",
    "a lot of": "many",
    "how much": "how_much",
    "how many": "how_many",
    "how long": "how_long",
    "how often": "how_often",
    "how old": "how_old",
    "what time": "when",
    "opening hours": "open",
    "opening times": "open",
    "what makes": "why",
}
# Words that frame a question without saying what it is about.
_FRAMING = frozenset(
    "a an the is are was were be been being am do does did can could would should will shall "
    "may might must i me my mine we our us you your yours it its this that these those of "
    "on in at for with about inside please tell how what where which who whom whose when why "
    "there "
    "and or if so then any some one's".split()
)
# Content-free words a paraphrase may add or drop: they never narrow what is asked.
_LIGHT = frozenset(
    "usually exactly actually really also just currently already way want need able "
    "possible like have has had get make come steps step process method go anyone someone "
    "something anything thing things item items normally typically generally basically".split()
)
_NEGATIONS = frozenset({"not", "no", "never", "without", "none", "nothing", "nobody"})
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve twenty thirty "
    "forty fifty hundred thousand million half twice once".split()
)
# Words that give the word after them a role; one direction per group.
_DIRECTIONS = {
    "to": "to",
    "into": "to",
    "onto": "to",
    "toward": "to",
    "towards": "to",
    "from": "from",
    "than": "than",
    "by": "by",
    "over": "over",
    "under": "under",
    "before": "before",
    "after": "after",
    "versus": "versus",
    "vs": "versus",
    "against": "against",
    "per": "per",
    "via": "via",
}
# After these, "to" starts an infinitive ("the way to reset"), not a destination.
_INFINITIVE_AFTER = frozenset(
    "way want wants need needs needed have has had how able like try trying going order "
    "steps what where allowed possible ought used".split()
)
# Common synonyms in questions, each group folded to its first word. General English, not
# the vocabulary of any one corpus.
_SYNONYM_GROUPS = (
    "change update modify alter switch edit",
    "remove delete erase",
    "start begin commence launch",
    "stop halt",
    "create make",
    "fix repair",
    "restart reboot",
    "buy purchase",
    "price cost charge fee",
    "get obtain acquire receive",
    "find locate search",
    "show display list see view check",
    "big large",
    "small little",
    "fast quick rapid speedy",
    "nearest closest",
    "colleague coworker co-worker",
    "child kid",
    "photo picture image",
    "folder directory",
    "package parcel",
    "delivery shipping",
    "allowed permitted",
    "increase raise",
    "reduce lower decrease cut",
    "help assist",
    "job work",
    "email e-mail",
    "cancel terminate",
    "connect join link",
    "send transfer",
    "frequently often",
    "enable activate",
    "disable deactivate",
    "copy duplicate",
    "error mistake",
    "needed required",
    "recover restore",
    "rules policy regulations guidelines",
    "house home",
    "shut close",
    "depart leave",
    "unresponsive frozen hung",
    "late delayed",
    "differ difference",
    "extra additional",
    "handle deal",
    "setup schedule arrange",
)


def _stem(word: str) -> str:
    """Fold plurals and verb endings: "days" and "day", "opening" and "open" compare equal."""
    if word.endswith("'s"):
        word = word[:-2]
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + keep
            break
    else:
        if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
            word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # "shipp" (shipping) and "ship"
    return word[:-1] if len(word) > 3 and word.endswith("e") else word  # "hire", "hired"


_SYNONYMS = {
    _stem(word): _stem(group.split()[0]) for group in _SYNONYM_GROUPS for word in group.split()
}


@dataclass(frozen=True)
class _Word:
    """One word of a question as the guard compares it."""

    key: str  # what it is compared by
    raw: str  # as written, lower case


@functools.lru_cache(maxsize=4096)  # a cached question is compared again and again
def _words(question: str) -> tuple[_Word, ...]:
    text = _CONTRACTION.sub(lambda m: _CONTRACTIONS[m.group(0).lower()], question)
    words: list[_Word] = []
    for token in _WORD.findall(text):
        lower = token.lower()
        if lower.endswith("n't"):
            words.append(_Word("not", "not"))
            lower = lower[:-3]
        # An acronym, a version, a code or a name with symbols is compared exactly: HTTP is
        # not HTTPS, and C++ is neither C nor C#.
        exact = (
            (token.isupper() and len(token) > 1)
            or any(c.isdigit() for c in token)
            or any(c in _NAME_SYMBOLS for c in token)
        )
        words.append(_Word(lower if exact else _SYNONYMS.get(_stem(lower), _stem(lower)), lower))
    return tuple(_fold_phrases(words))


def _fold_phrases(words: list[_Word]) -> list[_Word]:
    folded: list[_Word] = []
    i = 0
    while i < len(words):
        for length in (3, 2):
            phrase = " ".join(w.raw for w in words[i : i + length])
            if phrase in _PHRASES:
                meaning = _PHRASES[phrase]
                key = _SYNONYMS.get(_stem(meaning), _stem(meaning))
                folded.append(_Word(key, meaning))
                i += length
                break
        else:
            folded.append(words[i])
            i += 1
    return folded


def _is_content(word: _Word) -> bool:
    return not (
        word.raw in _FRAMING
        or word.raw in _DIRECTIONS
        or word.raw in _NEGATIONS
        or word.raw.isdigit()
        or word.raw in _NUMBER_WORDS
    )


def _numbers(words: Sequence[_Word]) -> list[str]:
    return sorted(w.raw for w in words if w.raw.isdigit() or w.raw in _NUMBER_WORDS)


def _negations(words: Sequence[_Word]) -> int:
    return sum(w.raw in _NEGATIONS for w in words)


def _directed(words: Sequence[_Word]) -> set[tuple[str, str]]:
    """(direction, the content words it governs), for each directional word."""
    pairs = set()
    for i, word in enumerate(words):
        direction = _DIRECTIONS.get(word.raw)
        if direction is None:
            continue
        if direction == "to" and i > 0 and words[i - 1].raw in _INFINITIVE_AFTER:
            continue
        governed = []
        for after in words[i + 1 :]:
            if after.raw in _DIRECTIONS or after.raw in _MODIFIER_PREPOSITIONS:
                break  # "to a group in Linux" governs "group"
            if len(governed) == 2:
                break
            counts = after.raw.isdigit() or after.raw in _NUMBER_WORDS
            if counts or (_is_content(after) and after.raw not in _LIGHT):
                governed.append(after.key)  # "to Python 3", not just "to Python"
        pairs.add((direction, " ".join(governed)))
    return pairs


def _directions_conflict(a: Sequence[_Word], b: Sequence[_Word]) -> bool:
    """One direction governing different words, or one word under different directions.
    A directional phrase only one question has ("the way to reset") is no conflict."""
    pairs_a, pairs_b = _directed(a), _directed(b)
    only_a, only_b = pairs_a - pairs_b, pairs_b - pairs_a
    return any(da == db or (ga and ga == gb) for da, ga in only_a for db, gb in only_b)


@dataclass(frozen=True)
class _Alignment:
    """Content words of `a` matched in `b`, in `a`'s order, and those left unmatched."""

    pairs: list[tuple[int, int]]  # (position in a, position in b)
    unmatched: list[_Word]


def _aligned(a: Sequence[_Word], b: Sequence[_Word]) -> _Alignment:
    content_b = [(i, w) for i, w in enumerate(b) if _is_content(w)]
    used: set[int] = set()
    pairs, unmatched = [], []
    for at, word in enumerate(a):
        if not _is_content(word):
            continue
        match = next((i for i, w in content_b if w.key == word.key and i not in used), None)
        if match is None:
            unmatched.append(word)
        else:
            used.add(match)
            pairs.append((at, match))
    unmatched.extend(w for i, w in content_b if i not in used)
    return _Alignment(pairs, unmatched)


_MODIFIER_PREPOSITIONS = frozenset({"in", "of", "on", "for", "at", "inside"})
_PASSIVE_HELPERS = frozenset({"is", "are", "was", "were", "be", "been", "get", "got", "have"})


def _same_roles(a: Sequence[_Word], b: Sequence[_Word], pairs: list[tuple[int, int]]) -> bool:
    """Whether the matched words keep their roles: the same order, or an order changed
    only in ways that keep who does what to whom.

    Allowed: one word moved out of or into a prepositional phrase ("a group in Linux",
    "a Linux group"), and the passive ("what is included in the plan", "what does the plan
    include"). A swap of two arguments ("Is a square a rectangle?") is neither.
    """
    positions = [j for _, j in pairs]
    if positions == sorted(positions):
        return True
    if _passive_turned_active(a, b, pairs):
        return True
    # Moved from "a group in Linux" to "a Linux group": after a preposition in one, right
    # before another content word, which it modifies, in the other; the rest in order.
    for k, (i, j) in enumerate(pairs):
        rest = positions[:k] + positions[k + 1 :]
        if rest == sorted(rest) and (
            (_after_preposition(a, i) and _modifies_next(b, j))
            or (_after_preposition(b, j) and _modifies_next(a, i))
        ):
            return True
    return False


def _after_preposition(words: Sequence[_Word], at: int) -> bool:
    """Whether the word at `at` ends a phrase like "in Linux" or "of my own"."""
    for before in reversed(words[max(0, at - 3) : at]):
        if before.raw in _MODIFIER_PREPOSITIONS:
            return True
        if _is_content(before):
            return False
    return False


def _modifies_next(words: Sequence[_Word], at: int) -> bool:
    """Whether the word at `at` stands right before a content word: "Linux" in "Linux user"."""
    return at + 1 < len(words) and _is_content(words[at + 1]) and words[at + 1].raw not in _LIGHT


def _passive_turned_active(a: Sequence[_Word], b: Sequence[_Word], pairs) -> bool:
    """One question has a matched participle after "is", "get" or "have" ("is included",
    "get it renewed") where the other has the plain verb: the same event, other voice."""
    for i, j in pairs:
        for words, at, other, other_at in ((a, i, b, j), (b, j, a, i)):
            if words[at].raw.endswith("ed") and not other[other_at].raw.endswith("ed"):
                if any(w.raw in _PASSIVE_HELPERS for w in words[:at]):
                    return True
    return False


def same_question(a: str, b: str) -> bool:
    """Whether `a` and `b` ask the same thing (see the module's docstring)."""
    words_a, words_b = _words(a), _words(b)
    if _numbers(words_a) != _numbers(words_b):
        return False
    if _negations(words_a) % 2 != _negations(words_b) % 2:
        return False
    if _directions_conflict(words_a, words_b):
        return False
    alignment = _aligned(words_a, words_b)
    if not alignment.pairs:
        return False
    # Words left over are allowed only when they are light ones.
    if any(w.raw not in _LIGHT for w in alignment.unmatched):
        return False
    return _same_roles(words_a, words_b, alignment.pairs)

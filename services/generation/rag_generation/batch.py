"""Several answers for one caller at once: each under its own time limit, each handed over
the moment it is written, so a quick answer never waits for a slow one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from rag_common.breaker import counts_as_failure
from rag_common.context import tighter_deadline
from rag_common.errors import DeadlineExceeded, InvalidArgument, RagError
from rag_generation.generator import Generator
from rag_generation.models import Generation, GenerationRequest

MAX_BATCH_ANSWERS = 32
# Which answer of the batch (its index) and how it ended.
Outcome = tuple[int, Generation | RagError]


@dataclass(frozen=True)
class BatchItem:
    """One answer to write, and the seconds it may take (None: the call's own deadline)."""

    request: GenerationRequest
    timeout_s: float | None


async def answers_as_written(
    generator: Generator, items: Sequence[BatchItem]
) -> AsyncIterator[list[Outcome]]:
    """The outcomes finished since the last group, group by group. The service's own
    failures (every provider down) wait for the rest: when every answer failed so, the
    first is raised, so the caller's breaker sees what a single answer would show it."""
    if not 1 <= len(items) <= MAX_BATCH_ANSWERS:
        raise InvalidArgument(
            "items", f"must hold 1 to {MAX_BATCH_ANSWERS} answers, not {len(items)}"
        )
    answers = {
        asyncio.create_task(_answer(generator, item)): index for index, item in enumerate(items)
    }
    failures: list[tuple[int, RagError]] = []
    try:
        pending = set(answers)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished = []
            for answer in done:
                index, result = answers[answer], answer.result()
                if isinstance(result, RagError) and counts_as_failure(result):
                    failures.append((index, result))
                else:
                    finished.append((index, result))
            if finished:
                yield finished
        if len(failures) == len(answers):
            raise failures[0][1]
        if failures:
            yield list(failures)
    finally:
        for answer in answers:
            answer.cancel()


async def _answer(generator: Generator, item: BatchItem) -> Generation | RagError:
    """One answer under its own time limit, or the error it alone ended with."""
    limit = (
        tighter_deadline(item.timeout_s)
        if item.timeout_s is not None
        else contextlib.nullcontext(None)
    )
    try:
        with limit as seconds:
            async with asyncio.timeout(seconds):
                return await generator.generate(item.request)
    except TimeoutError:
        return DeadlineExceeded("this answer's time ran out")
    except RagError as exc:
        return exc

"""Conversion in a child process with memory, CPU-time, wall-time and output limits.

A parser fed a hostile file (a decompression bomb, a PDF of millions of objects, endless
nesting) can run out of memory, loop, or crash in native code. Each conversion runs in a
process of its own, forked from a server process that has the parsers imported (so a fork
costs milliseconds, not the imports): the kernel ends it past its memory or CPU time, the
parent kills it past its wall time, and it runs at a lower priority, so the service's own
process and its other tenants' questions never share its fate or wait for its CPU.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import resource
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection

from rag_common.errors import InvalidArgument, Unavailable
from rag_common.reasons import Reason
from rag_query.conversion import media
from rag_query.conversion.converters import PARSERS, Converted, convert
from rag_query.conversion.errors import ConversionError

# Below the questions' priority, as the embedding service's bulk lane is.
NICENESS = 10


@dataclass(frozen=True)
class Limits:
    """What one conversion may use."""

    memory_bytes: int = 1024 * 1024 * 1024
    cpu_s: float = 20.0
    wall_s: float = 30.0
    max_chars: int = 1_000_000
    concurrent: int = 2


class Sandbox:
    """Converts documents in child processes, `limits.concurrent` at a time."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(
            ["__main__", *_main_by_name(), *PARSERS, "rag_query.conversion.preload"]
        )
        self._slots = asyncio.Semaphore(limits.concurrent)

    async def convert(self, content: bytes, media_type: str, *, field: str) -> Converted:
        """`content` as text; INVALID_ARGUMENT naming `field` with the reason it was refused."""
        if media_type in media.TEXT_TYPES:  # decoding needs no sandbox
            return _refused_as(field, lambda: convert(content, media_type, self.limits.max_chars))
        async with self._slots:
            outcome = await asyncio.to_thread(self._run, content, media_type)
        if isinstance(outcome, ConversionError):
            raise _invalid(field, outcome)
        return outcome

    def _run(self, content: bytes, media_type: str) -> Converted | ConversionError:
        receiving, sending = self._context.Pipe(duplex=False)
        child = self._context.Process(
            target=_child, args=(sending, content, media_type, self.limits), daemon=True
        )
        try:
            child.start()
        except OSError as exc:
            raise Unavailable(f"could not start a conversion: {exc}") from None
        sending.close()
        try:
            if receiving.poll(self.limits.wall_s):
                return receiving.recv()
        except EOFError:
            pass  # it died without a word: killed by the kernel, or crashed
        finally:
            receiving.close()
            if child.is_alive():
                child.kill()
            child.join()
        return _died(child.exitcode, self.limits)


def _main_by_name() -> list[str]:
    """The main module's name when each child runs it again: a program started as `python -m
    pkg.tool` paid its imports on every file (0.15 s; 27 PDF pages/s sandboxed, not 300).
    Imported once in the fork server, it costs a child nothing. A `pkg.__main__` is never run
    again, and is not imported: it runs its program at import."""
    name = getattr(sys.modules["__main__"].__spec__, "name", None) or ""
    return [name] if name and not name.endswith("__main__") else []


def _child(
    connection: Connection, content: bytes, media_type: str, limits: Limits
) -> None:  # pragma: no cover - runs in the child process
    """The child's whole life: limits first, then the conversion, then one message."""
    os.nice(NICENESS)
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    cpu = max(1, math.ceil(limits.cpu_s))  # the kernel counts whole seconds
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    try:
        outcome: Converted | ConversionError = convert(content, media_type, limits.max_chars)
    except ConversionError as exc:
        outcome = exc
    except MemoryError:
        outcome = ConversionError("DOCUMENT_TOO_COMPLEX", "it needs more memory than allowed")
    except RecursionError:
        outcome = ConversionError("DOCUMENT_TOO_COMPLEX", "it nests too deeply to be read")
    except Exception as exc:  # a parser's own error on a damaged file
        outcome = ConversionError("UNREADABLE_DOCUMENT", f"{type(exc).__name__}: {exc}"[:300])
    connection.send(outcome)
    connection.close()


def _died(exitcode: int | None, limits: Limits) -> ConversionError:
    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
        return ConversionError(
            "DOCUMENT_TOO_COMPLEX",
            f"converting it took more than {limits.cpu_s:g} s of CPU or {limits.wall_s:g} s",
        )
    return ConversionError("UNREADABLE_DOCUMENT", f"its parser crashed (exit {exitcode})")


def _invalid(field: str, error: ConversionError) -> InvalidArgument:
    return InvalidArgument(field, error.message, reason=Reason(error.reason))


def _refused_as(field: str, conversion) -> Converted:
    try:
        return conversion()
    except ConversionError as exc:
        raise _invalid(field, exc) from None

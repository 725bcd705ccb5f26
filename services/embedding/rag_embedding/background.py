"""Worker threads for bulk work that give way to interactive work on a busy CPU."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


def background_executor(name: str, niceness: int) -> ThreadPoolExecutor:
    """A one-thread pool whose thread runs `niceness` steps below normal priority (0: unchanged).

    Linux schedules each thread by its own nice value, and threads a worker starts (a model
    runtime's compute pool, say) inherit it. At nice 19 a thread gets about 1.5 % of a
    core that a normal thread also wants, and all of an idle one: bulk work still runs at
    full speed alone, and an interactive call never waits for it to hand the CPU back (at
    nice 10, a tenth, short Python work beside it still ran up to 1.5x slower at p95).
    """
    return ThreadPoolExecutor(
        max_workers=1,
        thread_name_prefix=name,
        initializer=_lower_priority,
        initargs=(niceness,),
    )


def _lower_priority(niceness: int) -> None:
    if niceness <= 0:
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(current + niceness, 19))
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: run at normal priority
        log.warning("could not lower a background thread's priority: %s", exc)

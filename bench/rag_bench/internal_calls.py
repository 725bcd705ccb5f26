"""Internal RPCs a question costs: the calls each internal service served, read from its
/metrics before and after a run (they fall as query coalesces questions under load: several
questions in one Embed, RetrieveBatch or GenerateBatch call)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

from rag_cli.advise import scrape
from rag_cli.launcher import LocalCluster

# Each internal service's methods a question calls, alone or several questions at once.
METHODS = {
    "embedding": ("Embed",),
    "retrieval": ("Retrieve", "RetrieveBatch"),
    "generation": ("Generate", "GenerateBatch"),
}
PER_QUESTION: dict[str, float] = {}  # internal calls per question, by run ("c32")
_COUNT = re.compile(
    r'^rag_request_duration_seconds_count\{[^}]*method="/rag\.v1\.\w+/(\w+)"[^}]*\} (\S+)$',
    re.MULTILINE,
)


def served(cluster: LocalCluster) -> dict[str, float]:
    """Calls served so far, by internal method."""
    totals = {method: 0.0 for methods in METHODS.values() for method in methods}
    for service, methods in METHODS.items():
        for name, count in _COUNT.findall(scrape(cluster.metrics_url(service))):
            if name in methods:
                totals[name] += float(count)
    return totals


@contextlib.contextmanager
def reported(cluster: LocalCluster, at: str, questions: int) -> Iterator[None]:
    """Print the internal calls per question of the block's `questions`."""
    before = served(cluster)
    yield
    time.sleep(0.2)  # the last calls' metrics are recorded as each call ends
    after = served(cluster)
    calls = {method: (after[method] - before[method]) / questions for method in after}
    PER_QUESTION[at] = sum(calls.values())
    print(
        f"internal RPCs per question at {at}: "
        + ", ".join(f"{method} {count:.2f}" for method, count in calls.items())
        + f" (total {sum(calls.values()):.2f})"
    )

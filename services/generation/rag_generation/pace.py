"""How fast a model on this machine reads a prompt and writes an answer, measured as it runs,
and so how much of each it can do in the time a question leaves it.

A local model on a CPU reads a few hundred tokens a second and writes a few dozen: given five
sources and 256 tokens of answer it runs out any budget of a few seconds, and the fallback then
answers after the wait. Sized to its measured pace, it gets the sources it can read and the
answer it can write in time, or it declines at once and the fallback answers without a wait.
"""

from __future__ import annotations

from dataclasses import dataclass

# A couple of sentences: below this an answer is not worth the wait.
MIN_ANSWER_TOKENS = 48
# Of the time left, what the plan spends: the pace varies with the machine's other work.
USABLE_SHARE = 0.8
_WEIGHT = 0.3  # of the newest measurement in the running average


@dataclass
class Pace:
    """Tokens a second read (prompt) and written (answer), as a running average."""

    read_per_s: float
    write_per_s: float

    def observe(self, read_tokens: int, read_s: float, written: int, write_s: float) -> None:
        """Fold one generation's timings in (parts too short to time are skipped)."""
        if read_tokens >= 16 and read_s > 0:
            self.read_per_s = _blend(self.read_per_s, read_tokens / read_s)
        if written >= 4 and write_s > 0:
            self.write_per_s = _blend(self.write_per_s, written / write_s)

    def readable_tokens(self, seconds: float) -> int:
        """Prompt tokens it can read in `seconds` and still write a short answer."""
        usable = seconds * USABLE_SHARE - MIN_ANSWER_TOKENS / self.write_per_s
        return max(0, int(usable * self.read_per_s))

    def writable_tokens(self, seconds: float, prompt_tokens: int) -> int:
        """Answer tokens it can write in `seconds` after reading `prompt_tokens`."""
        usable = seconds * USABLE_SHARE - prompt_tokens / self.read_per_s
        return max(0, int(usable * self.write_per_s))


def _blend(average: float, measured: float) -> float:
    return (1 - _WEIGHT) * average + _WEIGHT * measured

"""The figures the suite has targets for, gathered as the bench computes them and printed
together at the end of every run (and written to bench.json), each with its verdict.

The targets are those of the hop-tax work: what a cache miss costs beyond the model, the
internal calls a question makes, and what tracing, TLS and another tenant's flood may cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Row:
    """One figure of this run against its target."""

    figure: str
    value: float
    target: float
    at_most: bool  # the value must stay at or under the target (else at or over it)
    unit: str = "x"

    @property
    def met(self) -> bool:
        """Whether this run met the target."""
        return self.value <= self.target if self.at_most else self.value >= self.target

    def line(self) -> str:
        """The row as printed."""
        bound = "<=" if self.at_most else ">="
        value = f"{self.value:.2f}{self.unit}".ljust(9)
        target = f"{bound} {self.target:g}{self.unit}".ljust(10)
        return f"  {self.figure:<62} {value} {target} {'met' if self.met else 'MISSED'}"


ROWS: list[Row] = []


def record(figure: str, value: float, target: float, *, at_most: bool, unit: str = "x") -> None:
    """Note one figure of this run against its target."""
    ROWS.append(Row(figure, value, target, at_most, unit))


def table() -> str:
    """Every figure noted in this run, in the order computed."""
    header = f"  {'figure':<62} {'this run':<9} {'target':<10} verdict"
    return "\n".join(["\ntargets:", header, *(row.line() for row in ROWS)])


def as_json() -> list[dict]:
    """The rows for bench.json."""
    return [asdict(row) | {"met": row.met} for row in ROWS]

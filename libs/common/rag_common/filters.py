"""Validation of metadata filter conditions, shared by the services that accept them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag_common.domain import Condition, Operator
from rag_common.errors import InvalidArgument

# What a document's metadata key may be. A filter's key is stricter: the store reads a dot
# in a path as nesting, so "a.b" would never match a stored key "a.b", and "." or "a..b"
# are not paths at all (the store rejects them, which must not read as the store failing).
METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
FILTER_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_CONDITIONS = 16
MAX_CONDITION_VALUES = 64


def check_conditions(conditions: Sequence[Condition], field: str) -> None:
    """Raise InvalidArgument naming `field[i]...` for the first bad condition."""
    if len(conditions) > MAX_CONDITIONS:
        raise InvalidArgument(field, f"at most {MAX_CONDITIONS} conditions")
    for i, condition in enumerate(conditions):
        where = f"{field}[{i}]"
        if not FILTER_KEY.fullmatch(condition.key):
            raise InvalidArgument(f"{where}.key", "must be 1 to 64 characters from [A-Za-z0-9_-]")
        single = condition.operator in (Operator.EQUALS, Operator.NOT_EQUALS)
        count = len(condition.values)
        if single and count != 1:
            raise InvalidArgument(f"{where}.values", "this operator takes exactly one value")
        if not single and not 1 <= count <= MAX_CONDITION_VALUES:
            raise InvalidArgument(
                f"{where}.values", f"this operator takes 1 to {MAX_CONDITION_VALUES} values"
            )

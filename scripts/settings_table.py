"""Print every service setting as Markdown tables (env var, default, meaning) for the docs.

`python -m scripts.settings_table` prints what docs/configuration.md's settings section holds;
`--write` puts it there. A unit test fails when the two drift apart.
"""

from __future__ import annotations

import json
import sys

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from rag_common.settings import ServiceSettings, env_name
from rag_embedding.config import EmbeddingSettings
from rag_generation.config import GenerationSettings
from rag_query.config import QuerySettings
from rag_retrieval.config import RetrievalSettings
from scripts.doc_sections import DOCS, replace_section

SERVICES: list[type[BaseSettings]] = [
    QuerySettings,
    RetrievalSettings,
    GenerationSettings,
    EmbeddingSettings,
]
_COMMON = set(ServiceSettings.model_fields) - {"port"}


def _default(name: str, field: FieldInfo) -> str:
    if name == "data_dir":
        return "`./.rag-data`"
    default = field.get_default(call_default_factory=True)
    if hasattr(default, "get_secret_value"):
        return "(secret, empty)"
    if isinstance(default, list | dict):
        plain = [
            item.model_dump(mode="json", exclude_defaults=True)
            if isinstance(item, BaseModel)
            else item
            for item in (default if isinstance(default, list) else [default])
        ]
        return f"`{json.dumps(plain if isinstance(default, list) else default)}`"
    return f"`{default}`" if default not in ("", None) else "(empty)"


def _row(env: str, name: str, field: FieldInfo) -> str:
    return f"| `{env}` | {_default(name, field)} | {field.description or ''} |"


def tables() -> str:
    """The Markdown of the settings section."""
    lines = [
        "Every service (`<SERVICE>` is `QUERY`, `RETRIEVAL`, `GENERATION` or `EMBEDDING`):",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    lines += [
        _row(env_name(ServiceSettings, name, "RAG_<SERVICE>_"), name, field)
        for name, field in ServiceSettings.model_fields.items()
        if name in _COMMON
    ]
    for cls in SERVICES:
        lines += [
            "",
            f"{cls.__name__.removesuffix('Settings')} service:",
            "",
            "| variable | default | meaning |",
            "| --- | --- | --- |",
        ]
        lines += [
            _row(env_name(cls, name), name, field)
            for name, field in cls.model_fields.items()
            if name not in _COMMON
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        replace_section("settings", tables(), DOCS / "configuration.md")
    else:
        print(tables())

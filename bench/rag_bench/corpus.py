"""A synthetic corpus and questions about it, the same on every run."""

from __future__ import annotations

import random

_SUBJECTS = [
    "the billing service",
    "the mobile app",
    "the data warehouse",
    "the search index",
    "the payment gateway",
    "the login page",
    "the export job",
    "the audit log",
    "the mail relay",
    "the backup system",
    "the VPN",
    "the build farm",
]
_VERBS = [
    "stores",
    "rotates",
    "encrypts",
    "replicates",
    "compresses",
    "validates",
    "archives",
    "indexes",
    "throttles",
    "monitors",
]
_OBJECTS = [
    "invoices",
    "session tokens",
    "customer records",
    "daily snapshots",
    "audit events",
    "access keys",
    "usage metrics",
    "shipping labels",
    "error reports",
    "price lists",
]
_WHEN = [
    "every night",
    "every hour",
    "on the first of each month",
    "after each deploy",
    "when a user signs in",
    "before each release",
    "twice a day",
    "on demand",
]


def documents(count: int, seed: int = 7) -> list[tuple[str, str]]:
    """`count` (id, text) pairs of about 400 characters each (one chunk per document)."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        sentences = [
            f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} "
            f"{rng.choice(_OBJECTS)} {rng.choice(_WHEN)}."
            for _ in range(6)
        ]
        docs.append((f"doc-{i:05d}", f"Runbook entry {i}. " + " ".join(sentences)))
    return docs


def questions(count: int, seed: int = 11) -> list[str]:
    """`count` questions phrased like a user would ask about the corpus."""
    rng = random.Random(seed)
    # Numbered, so no two are the same question (the answer cache must not hit by chance).
    return [
        f"How often does {rng.choice(_SUBJECTS)} {rng.choice(_VERBS).rstrip('s')} "
        f"{rng.choice(_OBJECTS)} (case {i})?"
        for i in range(count)
    ]

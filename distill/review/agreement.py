"""How much the samples of one input agree: a cheap signal of which answers to read first.

When the teacher answers the same input several times, an answer the other samples disagree with is more
often wrong. Two JSON objects agree on the share of their keys whose values match (after the engine's
normalisation); two texts agree fully when they are equal after normalisation, else by the cosine of their
character bigrams (the engine's echo measure). A record's agreement is its mean over the other samples.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from distill.engine.filters import bigram_cosine, normalise


def _as_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _canonical(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return normalise(text)


def similarity(a: str, b: str) -> float:
    """0–1: how far two answers to the same input say the same thing."""
    object_a, object_b = _as_object(a), _as_object(b)
    if object_a is not None and object_b is not None:
        keys = set(object_a) | set(object_b)
        if not keys:
            return 1.0
        same = sum(
            1
            for key in keys
            if key in object_a and key in object_b and _canonical(object_a[key]) == _canonical(object_b[key])
        )
        return same / len(keys)
    if normalise(a) == normalise(b):
        return 1.0
    return bigram_cosine(a, b)


def agreements(answers: Sequence[str]) -> list[float | None]:
    """Each answer's mean similarity to the others; None when there is no other."""
    if len(answers) < 2:
        return [None] * len(answers)
    pair: dict[tuple[int, int], float] = {}
    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            pair[i, j] = similarity(answers[i], answers[j])
    return [
        sum(pair[min(i, j), max(i, j)] for j in range(len(answers)) if j != i) / (len(answers) - 1)
        for i in range(len(answers))
    ]

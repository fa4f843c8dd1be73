"""How much the samples of one input agree: a cheap signal of which answers to read first.

When the teacher answers the same input several times, an answer the other samples disagree with is more
often wrong. Two JSON objects agree on the share of their keys whose values match (after the engine's
normalisation); two texts agree fully when they are equal after normalisation, else by the cosine of their
character bigrams (the engine's echo measure). A record's agreement is its mean over the other samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from distill.engine.filters import bigram_cosine, normalise


def _form(text: str) -> dict[str, str] | str:
    """What is compared: a JSON object's normalised field values, else the normalised text."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return {
                key: normalise(
                    field
                    if isinstance(field, str)
                    else orjson.dumps(field, option=orjson.OPT_SORT_KEYS).decode()
                )
                for key, field in value.items()
            }
    return normalise(text)


def _similarity(a: str, b: str, form_a: dict[str, str] | str, form_b: dict[str, str] | str) -> float:
    if isinstance(form_a, dict) and isinstance(form_b, dict):
        keys = form_a.keys() | form_b.keys()
        if not keys:
            return 1.0
        return sum(1 for key in keys if key in form_a and key in form_b and form_a[key] == form_b[key]) / len(
            keys
        )
    if isinstance(form_a, str) and form_a == form_b:
        return 1.0
    return bigram_cosine(a, b)


def similarity(a: str, b: str) -> float:
    """0–1: how far two answers to the same input say the same thing."""
    return _similarity(a, b, _form(a), _form(b))


def agreements(answers: Sequence[str]) -> list[float | None]:
    """Each answer's mean similarity to the others; None when there is no other."""
    count = len(answers)
    if count < 2:
        return [None] * count
    forms: list[Any] = [_form(answer) for answer in answers]
    totals = [0.0] * count
    for i in range(count):
        for j in range(i + 1, count):
            value = _similarity(answers[i], answers[j], forms[i], forms[j])
            totals[i] += value
            totals[j] += value
    return [total / (count - 1) for total in totals]

"""The demo's judge: a reference-based rubric, because no strong judge model exists offline.

It reads the judge prompt the evaluator sends (the question, the reference answer, the answer to grade). A
JSON reference (a structured task, the bundled contracts) is compared field by field: ``10 × (fields of the
reference the answer gets right) / (fields of the reference)``, values compared after width, space and
number normalisation; an answer that is not JSON gets 0. A text reference is compared by word overlap:
``10 × F1`` of the answer's words (characters, for Chinese) against the reference's. It is a rubric, not a
model: it never rewards fluent reasoning with wrong values. The report says so wherever its scores appear.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from distill.engine.parsing import answer_of
from distill.evaluator.metrics import normalise as normalise_value

# Labels of the seed's judge prompt: "问题:…\n参考答案:…\n待评估答案:…\n只输出0到10的分数:".
REFERENCE_LABELS = ("参考答案:", "参考答案:", "Reference answer:")
CANDIDATE_LABELS = ("待评估答案:", "待评估答案:", "Answer to evaluate:")
_CLOSING = re.compile(r"\n\s*(只输出|请只输出|Output only|Reply with only)[^\n]*\s*$", re.IGNORECASE)


def find_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (after a CoT answer marker when there is one), or None."""
    text = answer_of(text)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def normalise(value: Any) -> str:
    """A field's value as the rubric compares it: width-, space- and number-format-insensitive."""
    return normalise_value(value, ["nfkc", "whitespace", "number"]) or ""


def agreeing_fields(reference: dict[str, Any], candidate: dict[str, Any]) -> int:
    return sum(
        1
        for field in reference
        if field in candidate and normalise(candidate[field]) == normalise(reference[field])
    )


def score(reference: dict[str, Any], candidate_text: str) -> float:
    """0–10: the share of the reference's fields the candidate answer gets right, times ten."""
    candidate = find_json_object(candidate_text)
    if candidate is None or not reference:
        return 0.0
    return round(10.0 * agreeing_fields(reference, candidate) / len(reference), 1)


_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]|[^\W_]+")


def words(text: str) -> Counter[str]:
    """The words of ``text`` (each Chinese character is one), folded for width and case."""
    return Counter(_WORD.findall(normalise_value(text, ["nfkc", "casefold"]) or ""))


def text_score(reference: str, candidate_text: str) -> float:
    """0–10: ten times the F1 of the answer's words against the reference's (word overlap)."""
    want, got = words(reference), words(answer_of(candidate_text))
    common = sum((want & got).values())
    if not common:
        return 0.0
    precision, recall = common / sum(got.values()), common / sum(want.values())
    return round(10.0 * 2 * precision * recall / (precision + recall), 1)


def _section(prompt: str, labels: tuple[str, ...], stop_labels: tuple[str, ...]) -> str | None:
    for label in labels:
        start = prompt.rfind(label)
        if start == -1:
            continue
        rest = prompt[start + len(label) :]
        ends = [rest.find(stop) for stop in stop_labels if stop in rest]
        return rest[: min(ends)] if ends else rest
    return None


def judge_reply(prompt: str) -> str | None:
    """The judge's reply (a bare number) for a judge prompt, or None when ``prompt`` is not one."""
    reference_text = _section(prompt, REFERENCE_LABELS, CANDIDATE_LABELS)
    candidate_text = _section(prompt, CANDIDATE_LABELS, ())
    if reference_text is None or candidate_text is None:
        return None
    candidate_text = _CLOSING.sub("", candidate_text)
    reference = find_json_object(reference_text)
    value = score(reference, candidate_text) if reference else text_score(reference_text, candidate_text)
    return f"{value:g}"

"""The demo's judge: a reference-based field-agreement score, because no strong judge model exists offline.

It reads the judge prompt the evaluator sends (the question, the reference answer, the answer to grade),
parses both answers as the task's JSON and scores ``10 × (fields that agree) / 5``. It is a rubric, not a
model: it never rewards good reasoning with a wrong value, and an answer that is not the required JSON gets
0. The report says so wherever this judge's scores appear.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from distill.engine.parsing import answer_of
from distill.pipeline.contract_parts import FIELDS

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


def normalise(field: str, value: Any) -> str:
    """Compare values the way the task defines them: width-, space- and (for 金额) separator-insensitive."""
    text = unicodedata.normalize("NFKC", str(value)).strip()
    text = re.sub(r"\s+", " ", text)
    if field == "金额":
        text = text.replace(",", "").removesuffix("元").strip()
        text = re.sub(r"\.0+$", "", text)
    return text


def agreeing_fields(reference: dict[str, Any], candidate: dict[str, Any]) -> int:
    return sum(
        1
        for field in FIELDS
        if field in candidate
        and normalise(field, candidate[field]) == normalise(field, reference.get(field, ""))
    )


def score(reference: dict[str, Any], candidate_text: str) -> float:
    """0–10: the share of the five fields the candidate answer gets right, times ten."""
    candidate = find_json_object(candidate_text)
    if candidate is None:
        return 0.0
    return round(10.0 * agreeing_fields(reference, candidate) / len(FIELDS), 1)


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
    reference = find_json_object(reference_text)
    if reference is None or not any(field in reference for field in FIELDS):
        return None
    candidate_text = _CLOSING.sub("", candidate_text)
    value = score(reference, candidate_text)
    return f"{value:g}"

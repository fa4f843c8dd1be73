"""Task metrics: field precision/recall/F1 and format compliance for structured answers, exact match for text.

An answer is parsed as a JSON object — fenced in ```json, after a 【答案】 marker, or with prose around it — and
each required field's value is normalised (NFKC folds full-width letters and punctuation, case, whitespace,
and per field e.g. ``number`` or ``date``) before it is compared with the reference.

Counting, micro-averaged over every (item, field): a right value is a true positive; a wrong value is a false
positive *and* a false negative (something wrong was asserted, and the right value is missing); a missing
value is a false negative; a value where the reference has none is a false positive. Keys outside the
required fields are ignored. Compliance: with an answer schema, the final answer is valid JSON that satisfies
it (``evaluator.answer_schema``); without one, the answer parses as a JSON object that has every required field.

A task whose references are text has no fields: its answers are scored by exact match after normalisation
(and by the judge).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from distill.engine.parsing import answer_of
from distill.evaluator.answer_schema import STRING_NORMALISERS, AnswerSchema

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_EDGE_PUNCT = " \t\n.,;:!?。,;:!?、\"'“”‘’「」『』()()[]【】<>《》"
_CURRENCY = re.compile(r"(人民币|rmb|cny|usd|元整|元|¥|￥|\$|yuan)", re.IGNORECASE)
_DATE = re.compile(r"^(\d{4})\s*(?:[-/.年])\s*(\d{1,2})\s*(?:[-/.月])\s*(\d{1,2})\s*日?$")
# Dates written out in English: "March 5, 2024", "5 March 2024", "Mar 5 2024", "5th of March, 2024".
_ENGLISH_DATE_FORMATS = ("%B %d %Y", "%d %B %Y", "%b %d %Y", "%d %b %Y")
_ORDINAL = re.compile(r"(\d)(?:st|nd|rd|th)\b|\bof\b|,", re.IGNORECASE)


def _number(text: str) -> str:
    bare = _CURRENCY.sub("", text).replace(",", "").replace(" ", "")
    try:
        value = Decimal(bare)
    except InvalidOperation:
        return text
    if not value.is_finite():
        return text
    return format(value.normalize(), "f") if value != value.to_integral() else str(int(value))


def _date(text: str) -> str:
    match = _DATE.match(text.strip())
    if not match:
        return _english_date(text)
    try:
        return dt.date(*(int(part) for part in match.groups())).isoformat()
    except ValueError:
        return text


def _english_date(text: str) -> str:
    bare = " ".join(_ORDINAL.sub(r"\1", text).split())
    for pattern in _ENGLISH_DATE_FORMATS:
        try:
            return dt.datetime.strptime(bare, pattern).date().isoformat()
        except ValueError:
            continue
    return text


NORMALISER_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "nfkc": lambda text: unicodedata.normalize("NFKC", text),
    "casefold": str.casefold,
    "whitespace": lambda text: " ".join(text.split()),
    "no_space": lambda text: "".join(text.split()),
    "strip_punct": lambda text: text.strip(_EDGE_PUNCT),
    "number": _number,
    "date": _date,
}


def normalise(value: Any, normalisers: Sequence[str]) -> str | None:
    """The comparable form of one field value; None when it is absent or empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        parts = [normalise(item, normalisers) for item in value]
        text = json.dumps(sorted(part for part in parts if part), ensure_ascii=False)
        return text if text != "[]" else None
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    for name in normalisers:
        text = NORMALISER_FUNCTIONS[name](text)
    return text if text.strip() else None


def _objects_in(text: str) -> Iterable[dict[str, Any]]:
    decoder = json.JSONDecoder()
    for start in (match.start() for match in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def parse_answer_object(text: str, required: Sequence[str] = ()) -> dict[str, Any] | None:
    """The JSON object an answer gives, or None. With several, the one holding most required fields."""
    answer = answer_of(text)
    candidates = [block for block in _FENCE.findall(answer)] + [answer]
    best: dict[str, Any] | None = None
    best_hits = -1
    for candidate in candidates:
        for value in _objects_in(candidate):
            hits = sum(1 for name in required if name in value)
            if hits > best_hits:
                best, best_hits = value, hits
        if best is not None and best_hits == len(required):
            break
    return best


@dataclass
class FieldCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: FieldCounts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def scores(self) -> dict[str, float | None]:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
        # 2TP / (2TP + FP + FN): the harmonic mean of P and R, and 0 (not undefined) when nothing was predicted.
        denominator = 2 * self.tp + self.fp + self.fn
        f1 = 2 * self.tp / denominator if denominator else None
        return {"precision": precision, "recall": recall, "f1": f1}


@dataclass
class ItemFields:
    """One answer against its reference: counts per field, and whether the answer is compliant."""

    answered: bool
    parsed: bool
    compliant: bool
    per_field: dict[str, FieldCounts] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)


class FieldScorer:
    """Compares answers with structured references over ``fields``, each with its normalisers.

    With an answer ``schema``, compliance is the schema's (valid JSON that satisfies it), and each field is
    normalised by its type in the schema unless ``field_normalisers`` names it.
    """

    def __init__(
        self,
        fields: Sequence[str],
        normalisers: Sequence[str],
        field_normalisers: dict[str, list[str]] | None = None,
        schema: AnswerSchema | None = None,
    ) -> None:
        self.fields = list(fields)
        self.schema = schema
        by_type = schema.field_normalisers() if schema is not None else {}
        chosen = {**by_type, **(field_normalisers or {})}
        self._normalisers = {name: list(chosen.get(name, normalisers)) for name in self.fields}

    def compare(self, reference: dict[str, Any], answer_text: str | None) -> ItemFields:
        answer = parse_answer_object(answer_text, self.fields) if answer_text else None
        result = ItemFields(answered=answer_text is not None, parsed=answer is not None, compliant=False)
        if self.schema is not None:
            result.compliant = self.schema.complies(answer_text)
        elif answer is not None:
            result.compliant = all(name in answer for name in self.fields)
        for name in self.fields:
            counts = FieldCounts()
            want = normalise(reference.get(name), self._normalisers[name])
            got = normalise(answer.get(name), self._normalisers[name]) if answer is not None else None
            if got is not None and got == want:
                counts.tp = 1
            else:
                counts.fp = int(got is not None)
                counts.fn = int(want is not None)
                if got is not None or want is not None:
                    result.wrong.append(name)
            result.per_field[name] = counts
        return result


def summarise(results: Sequence[ItemFields], fields: Sequence[str]) -> dict[str, Any]:
    """Micro-averaged P/R/F1, per-field F1 and compliance; an item with no answer counts as all missed."""
    total = FieldCounts()
    per_field = {name: FieldCounts() for name in fields}
    compliant = parsed = 0
    for result in results:
        compliant += result.compliant
        parsed += result.parsed
        for name, counts in result.per_field.items():
            total.add(counts)
            per_field[name].add(counts)
    n = len(results)
    missing = sum(1 for result in results if not result.answered)
    return {
        **total.scores(),
        "tp": total.tp,
        "fp": total.fp,
        "fn": total.fn,
        "format_compliance": compliant / n if n else None,
        "parse_rate": parsed / n if n else None,
        "answers": n - missing,
        "no_answer": missing,
        "per_field_f1": {name: counts.scores()["f1"] for name, counts in per_field.items()},
    }


def exact_match(
    reference: str, answer_text: str | None, normalisers: Sequence[str] = STRING_NORMALISERS
) -> bool:
    """The final answer equals the reference after normalisation (width, case, whitespace, edge punctuation)."""
    if answer_text is None:
        return False
    got = normalise(answer_of(answer_text), normalisers)
    return got is not None and got == normalise(reference, normalisers)


def summarise_exact(matches: Sequence[bool], answered: int) -> dict[str, Any]:
    """The exact-match rate over every item; an item with no answer counts as a miss."""
    n = len(matches)
    return {
        "exact_match": sum(matches) / n if n else None,
        "matches": sum(matches),
        "answers": answered,
        "no_answer": n - answered,
    }


def required_fields(references: Iterable[dict[str, Any] | None], configured: list[str] | None) -> list[str]:
    """The configured field list, or the references' keys in order of first appearance."""
    if configured:
        return list(configured)
    names: dict[str, None] = {}
    for reference in references:
        for key in reference or {}:
            names.setdefault(key, None)
    return list(names)

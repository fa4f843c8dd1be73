"""The judge: the seed's grading prompt, and reading a number (or a preference) out of what a judge says.

The seed falls back to 5.0 when ``Double.parseDouble`` fails, which quietly drags every average towards the
middle. Here a reply that holds no single clear score in 0–10 is a *missing* score, with the reason kept
(``empty``, ``no_number``, ``ambiguous``, ``out_of_range``) so the report can count them.

Pairwise mode asks the judge twice with the two answers swapped; if the two verdicts disagree the item is a
tie (position bias cancelled, not rewarded).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from distill.endpoint import normalise_base_url

# The seed's prompt, verbatim: "问题:%s\n参考答案:%s\n待评估答案:%s\n只输出0到10的分数:".
SCORE_TEMPLATE = "问题:{question}\n参考答案:{reference}\n待评估答案:{answer}\n只输出0到10的分数:"
PAIRWISE_TEMPLATE = (
    "问题:{question}\n参考答案:{reference}\n回答A:{first}\n回答B:{second}\n"
    "对照参考答案,哪个回答更好?只输出A、B或平局:"
)

EMPTY, NO_NUMBER, AMBIGUOUS, OUT_OF_RANGE = "empty", "no_number", "ambiguous", "out_of_range"

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_FRACTION = re.compile(_NUMBER + r"\s*(?:/|out\s+of|满分)\s*(10|100)\b", re.IGNORECASE)
_LABELLED = re.compile(
    r"(?:score|rating|grade|分数|得分|评分|打分|分值)\s*(?:is|of|为|是|[:=])?\s*\**\s*" + _NUMBER,
    re.IGNORECASE,
)
_POINTS = re.compile(_NUMBER + r"\s*(?:分|points?\b)", re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)
_EN_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# Number words count only when they are the whole reply ("Eight.", "Score: eight"): in prose, "one" is a word.
_EN_WORD = re.compile(
    r"^(?:score|rating)?\s*[:=]?\s*(" + "|".join(_EN_WORDS) + r")\s*(?:out\s+of\s+ten|points?)?[.!]?$",
    re.IGNORECASE,
)
_ZH_DIGITS = {
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
    "十": 10,
}
# Likewise for Chinese numerals: "八分" is a score, "十分准确" ("very accurate") is not.
_ZH_WORD = re.compile(r"^(?:分数|得分|评分)?\s*[:=]?\s*([零一二两三四五六七八九十])\s*分?[。.!]?$")


@dataclass(frozen=True, slots=True)
class ParsedScore:
    value: float | None
    problem: str | None = None  # why value is None


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "")
    return text.replace("*", "").replace("`", "").strip()


def _distinct(values: list[float]) -> list[float]:
    return sorted(set(values))


def _checked(value: float) -> ParsedScore:
    return ParsedScore(value) if 0.0 <= value <= 10.0 else ParsedScore(None, OUT_OF_RANGE)


def parse_score(text: str | None) -> ParsedScore:
    """A 0–10 score from a judge's reply ("8", "8.5", "8/10", "分数:8", "Score: 7", "eight"), else why not."""
    clean = _clean(text or "")
    if not clean:
        return ParsedScore(None, EMPTY)
    fraction = _FRACTION.search(clean)
    if fraction:
        return _checked(float(fraction.group(1)) * 10.0 / float(fraction.group(2)))
    for pattern in (_LABELLED, _POINTS):
        found = _distinct([float(match) for match in pattern.findall(clean)])
        if len(found) == 1:
            return _checked(found[0])
        if len(found) > 1:
            return ParsedScore(None, AMBIGUOUS)
    numbers = _distinct([float(match) for match in _ANY_NUMBER.findall(clean)])
    if len(numbers) == 1:
        return _checked(numbers[0])
    if len(numbers) > 1:
        return ParsedScore(None, AMBIGUOUS)
    words = {_EN_WORDS.index(word.lower()) for word in _EN_WORD.findall(clean)}  # at most one
    words |= {_ZH_DIGITS[word] for word in _ZH_WORD.findall(clean)}
    if len(words) == 1:
        return ParsedScore(float(words.pop()))
    return ParsedScore(None, AMBIGUOUS if words else NO_NUMBER)


TIE = "tie"
_TIE_WORDS = re.compile(r"平局|平手|相同|一样|差不多|\btie\b|\bequal\b|\bdraw\b", re.IGNORECASE)
_LETTER = re.compile(r"(?<![A-Za-z])([AB])(?![A-Za-z])")


def parse_preference(text: str | None) -> str | None:
    """ "A", "B" or ``TIE`` from a pairwise verdict; None when it names neither or both."""
    clean = _clean(text or "")
    if _TIE_WORDS.search(clean):
        return TIE
    letters = set(_LETTER.findall(clean))
    return letters.pop() if len(letters) == 1 else None


def combine_orders(teacher_first: str | None, student_first: str | None) -> tuple[str, bool] | None:
    """Both orders' verdicts → (outcome, whether the orders disagree), or None when a verdict is missing.

    The outcome is "teacher", "student" or ``TIE``, and a tie whenever the orders disagree. They disagree when
    their plain verdicts differ: (A, A) is position bias, and (tie, A) or (A, tie) is one order naming a winner
    the other did not.
    """
    if teacher_first is None or student_first is None:
        return None
    first = {"A": "teacher", "B": "student", TIE: TIE}[teacher_first]
    second = {"A": "student", "B": "teacher", TIE: TIE}[student_first]
    return (first, False) if first == second else (TIE, True)


def score_prompt(question: str, reference: str, answer: str) -> str:
    return SCORE_TEMPLATE.format(question=question, reference=reference, answer=answer)


def pairwise_prompt(question: str, reference: str, first: str, second: str) -> str:
    return PAIRWISE_TEMPLATE.format(question=question, reference=reference, first=first, second=second)


def judges_itself(judge_base_url: str, judge_model: str, teacher_base_url: str, teacher_model: str) -> bool:
    """True when the judge is the teacher itself: it would grade its own answers (self-preference)."""
    return (
        normalise_base_url(judge_base_url) == normalise_base_url(teacher_base_url)
        and judge_model == teacher_model
    )

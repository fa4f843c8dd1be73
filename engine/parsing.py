"""Split a chain-of-thought answer into its thinking and its final answer.

Two formats:
- the teacher's, asked for by the prompt templates: 【思考过程】…【最终答案】… (or [Thinking]…[Final Answer]…);
- the dataset's `full_output`, as in the seed: ``【思考】{thinking}\\n\\n【答案】{output}`` — what a student trained
  "with thinking" writes, so the evaluator splits student output with `split_full_output`.
"""

from __future__ import annotations

import re

FULL_THINKING = "【思考】"
FULL_ANSWER = "【答案】"

# Exact Chinese markers first (the default template), then the English template's, matched leniently
# because English-speaking teachers vary case and spacing, then the dataset's own short markers.
_COT_PATTERNS = (
    (re.compile(re.escape("【思考过程】")), re.compile(re.escape("【最终答案】"))),
    (
        re.compile(r"\[\s*thinking\s*\]", re.IGNORECASE),
        re.compile(r"\[\s*final\s+answer\s*\]", re.IGNORECASE),
    ),
    (re.compile(re.escape(FULL_THINKING)), re.compile(re.escape(FULL_ANSWER))),
)


def parse_cot(text: str) -> tuple[str, str] | None:
    """(thinking, answer), both stripped, or None when the text lacks a start or an answer marker.

    The thinking runs from the first start marker to the first answer marker after it; the answer is
    everything after that. Text before the start marker (a preamble) is dropped, as in the seed.
    """
    # Fast path for the default template's markers: two str.find calls, no regex.
    start = text.find("【思考过程】")
    if start != -1:
        answer = text.find("【最终答案】", start + 6)
        if answer != -1:
            return text[start + 6 : answer].strip(), text[answer + 6 :].strip()
    for start_pattern, answer_pattern in _COT_PATTERNS:
        start = start_pattern.search(text)
        if start is None:
            continue
        answer = answer_pattern.search(text, start.end())
        if answer is None:
            continue
        return text[start.end() : answer.start()].strip(), text[answer.end() :].strip()
    return None


def format_full_output(thinking: str, answer: str) -> str:
    """The seed's merged training target: ``【思考】{thinking}\\n\\n【答案】{answer}``."""
    return f"{FULL_THINKING}{thinking}\n\n{FULL_ANSWER}{answer}"


def split_full_output(full: str) -> tuple[str, str] | None:
    """Inverse of `format_full_output`: (thinking, answer) or None without a 【答案】 marker.

    A missing 【思考】 part is allowed (thinking is then ""), since a student may skip straight to the answer.
    """
    answer_at = full.find(FULL_ANSWER)
    if answer_at == -1:
        return None
    head = full[:answer_at]
    thinking_at = head.find(FULL_THINKING)
    thinking = head[thinking_at + len(FULL_THINKING) :] if thinking_at != -1 else ""
    return thinking.strip(), full[answer_at + len(FULL_ANSWER) :].strip()


def answer_of(text: str) -> str:
    """The final answer in a student's or teacher's reply: after the answer marker if any, else all of it."""
    split = split_full_output(text)
    if split is not None:
        return split[1]
    parsed = parse_cot(text)
    return parsed[1] if parsed is not None else text.strip()
